-- wrk script for the soak: GET <path> with `Authorization: Bearer <token>`, cycling through a
-- token file, paced to <rate> requests per second per connection group, counting every status.
-- Usage: wrk -t1 -c<C> ... -s soak.lua <url> -- <token-file> <path> <delay-ms>
-- `delay-ms` 0 runs unpaced (the measurement of the maximum).

local requests = {}
local count = 0
local next_index = 0
local delay_ms = 0
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = args[2] or "/"
  delay_ms = tonumber(args[3] or "0")
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

function delay()
  return delay_ms
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses")
    for status, n in pairs(counted) do
      io.write(string.format("STATUS %d %d\n", status, n))
    end
  end
end
