-- wrk script: GET <path> with `Authorization: Bearer <token>`, cycling through a token file.
-- Usage: wrk ... -s wrk_cycle.lua <url> -- <token-file> <path>
-- With one token in the file every request reuses it (the warm workload). Requests are built
-- once in init(), so the per-request cost on the client side is a table lookup.

local requests = {}
local count = 0
local next_index = 0

function init(args)
  local path = args[2] or "/"
  local file = assert(io.open(args[1], "r"), "cannot open token file " .. tostring(args[1]))
  for line in file:lines() do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. line })
    end
  end
  file:close()
  assert(count > 0, "no tokens in " .. args[1])
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
