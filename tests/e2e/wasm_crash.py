"""A copy of the brickgate module whose VM really crashes on demand, for the fault tests.

The shipped module is left as built; the copy differs only at one export: its
`proxy_on_request_headers` first checks the number of request headers Envoy passes it, and
executes `unreachable` (a wasm trap: the VM is dead, exactly as after a panic) when it is at
least `CRASH_AT_HEADERS`. Every other request goes on into brickgate's own handler. A client
that sends that many headers kills the worker's VM mid-traffic, which is how the tests exercise
Envoy's `failure_policy` (FAIL_CLOSED, FAIL_RELOAD) around brickgate.

The rewrite is a few lines of wasm binary format (sections, LEB128 vectors): one function is
appended (so no existing index moves) and the export is pointed at it.
"""

from pathlib import Path

CRASH_AT_HEADERS = 64
EXPORT = "proxy_on_request_headers"


def _uleb(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


def _name(data: bytes, at: int) -> tuple[str, int]:
    size, at = _uleb(data, at)
    return data[at:at + size].decode(), at + size


def _limits(data: bytes, at: int) -> int:
    flags, at = _uleb(data, at)
    _, at = _uleb(data, at)
    if flags & 1:
        _, at = _uleb(data, at)
    return at


def _imported_functions(payload: bytes) -> int:
    count, at = _uleb(payload, 0)
    functions = 0
    for _ in range(count):
        _, at = _name(payload, at)
        _, at = _name(payload, at)
        kind = payload[at]
        at += 1
        if kind == 0:  # function: type index
            _, at = _uleb(payload, at)
            functions += 1
        elif kind == 1:  # table: reference type, limits
            at = _limits(payload, at + 1)
        elif kind == 2:  # memory: limits
            at = _limits(payload, at)
        elif kind == 3:  # global: value type, mutability
            at += 2
        elif kind == 4:  # tag
            at += 1
            _, at = _uleb(payload, at)
        else:
            raise ValueError(f"unknown import kind {kind}")
    return functions


def _vector(payload: bytes) -> tuple[int, int]:
    return _uleb(payload, 0)


def crashing_copy(source: Path, target: Path) -> Path:
    """Writes the crashing copy of `source` to `target` (see the module docstring)."""
    data = source.read_bytes()
    assert data[:8] == b"\0asm\x01\0\0\0", "not a wasm module"
    sections: list[tuple[int, bytes]] = []
    at = 8
    while at < len(data):
        section_id = data[at]
        size, body = _uleb(data, at + 1)
        sections.append((section_id, data[body:body + size]))
        at = body + size
    payload = {section_id: body for section_id, body in sections if section_id != 0}
    imported = _imported_functions(payload.get(2, b"\0"))
    defined, entries_at = _vector(payload[3])
    function_types = []
    cursor = entries_at
    for _ in range(defined):
        type_index, cursor = _uleb(payload[3], cursor)
        function_types.append(type_index)

    # The export and the function it names.
    exports, cursor = _vector(payload[7])
    rebuilt_exports = bytearray(_leb(exports))
    original = None
    for _ in range(exports):
        name, after_name = _name(payload[7], cursor)
        kind = payload[7][after_name]
        index, after = _uleb(payload[7], after_name + 1)
        if name == EXPORT and kind == 0:
            original = index
            index = imported + defined  # the appended wrapper
        rebuilt_exports += payload[7][cursor:after_name + 1] + _leb(index)
        cursor = after
    assert original is not None, f"{EXPORT} is not exported"
    wrapper_type = function_types[original - imported]

    # (context_id, num_headers, end_of_stream) -> action:
    #   if num_headers >= CRASH_AT_HEADERS { unreachable }  return original(context_id, num_headers, end_of_stream)
    code = (b"\x00"  # no locals
            + b"\x20\x01" + b"\x41" + _sleb(CRASH_AT_HEADERS) + b"\x4f"  # local.get 1; i32.const N; i32.ge_u
            + b"\x04\x40\x00\x0b"  # if (no result) unreachable end
            + b"\x20\x00\x20\x01\x20\x02" + b"\x10" + _leb(original)  # local.get 0,1,2; call original
            + b"\x0b")
    functions = _leb(defined + 1) + payload[3][entries_at:] + _leb(wrapper_type)
    bodies, bodies_at = _vector(payload[10])
    code_section = _leb(bodies + 1) + payload[10][bodies_at:] + _leb(len(code)) + code
    replaced = {3: functions, 7: bytes(rebuilt_exports), 10: code_section}

    out = bytearray(data[:8])
    for section_id, body in sections:
        body = replaced.get(section_id, body) if section_id != 0 else body
        out += bytes([section_id]) + _leb(len(body)) + body
    target.write_bytes(bytes(out))
    return target
