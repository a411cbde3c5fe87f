// A minimal proxy-wasm ABI 0.2.1 host for profiling a wasm32-wasip1 filter in Node's V8 (the
// runtime Envoy embeds). It serves every import a proxy-wasm Rust SDK 0.2 module can have, keeps
// the state the calls need (header maps, properties, shared data, metrics) and counts, per
// import, the calls and the bytes that cross the boundary. It is ABI-generic: nothing in here
// knows brickgate's internals, only the Envoy behaviour it imitates (documented per import).

import { webcrypto, verify as cryptoVerify } from 'node:crypto';

// proxy-wasm Status (proxy-wasm-rust-sdk src/types.rs).
export const Status = { Ok: 0, NotFound: 1, BadArgument: 2, SerializationFailure: 3, ParseFailure: 4, Empty: 7, CasMismatch: 8, InternalFailure: 10 };
const BUFFER = ['http_request_body', 'http_response_body', 'downstream_data', 'upstream_data', 'http_call_response_body', 'grpc_receive_buffer', 'vm_configuration', 'plugin_configuration', 'call_data'];
const MAP = ['request_headers', 'request_trailers', 'response_headers', 'response_trailers', 'grpc_initial_metadata', 'grpc_trailing_metadata', 'http_call_response_headers', 'http_call_response_trailers'];
const METRIC = ['counter', 'gauge', 'histogram'];
const utf8 = new TextDecoder();
const encoder = new TextEncoder();

// Header map pairs: u32 count, then (u32 name_len, u32 value_len) per pair, then name\0 value\0.
export function serializePairs(pairs) {
  const encoded = pairs.map(([n, v]) => [encoder.encode(n), encoder.encode(v)]);
  let size = 4 + 8 * encoded.length;
  for (const [n, v] of encoded) size += n.length + v.length + 2;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, encoded.length, true);
  let head = 4, body = 4 + 8 * encoded.length;
  for (const [n, v] of encoded) {
    view.setUint32(head, n.length, true); view.setUint32(head + 4, v.length, true); head += 8;
    out.set(n, body); body += n.length + 1;
    out.set(v, body); body += v.length + 1;
  }
  return out;
}

export function deserializePairs(bytes) {
  if (bytes.length < 4) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  const pairs = [];
  let body = 4 + 8 * count;
  for (let i = 0; i < count; i++) {
    const nl = view.getUint32(4 + 8 * i, true), vl = view.getUint32(8 + 8 * i, true);
    const name = utf8.decode(bytes.subarray(body, body + nl)); body += nl + 1;
    const value = utf8.decode(bytes.subarray(body, body + vl)); body += vl + 1;
    pairs.push([name, value]);
  }
  return pairs;
}

// Protobuf length-delimited fields 1..n of a flat message (VerifySignatureArguments).
function protoFields(bytes) {
  const fields = {};
  let i = 0;
  const varint = () => { let v = 0, s = 0, b; do { b = bytes[i++]; v += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80); return v; };
  while (i < bytes.length) {
    const key = varint();
    if ((key & 7) !== 2) throw new Error(`wire type ${key & 7}`);
    const len = varint();
    fields[key >>> 3] = bytes.subarray(i, i + len); i += len;
  }
  return fields;
}

const HASHES = { 'sha256': 'sha256', 'sha384': 'sha384', 'sha512': 'sha512', 'sha1': 'sha1' };

// Envoy's `verify_signature` foreign function (source/extensions/common/wasm/foreign.cc):
// VerifySignatureArguments { hash_function, public_key (DER SPKI), signature, text } →
// VerifySignatureResult { result = 1 }; a real check, so a module's host self-test passes.
export function verifySignature(args) {
  try {
    const f = protoFields(args);
    const hash = HASHES[utf8.decode(f[1] ?? new Uint8Array()).toLowerCase()];
    if (!hash) return Uint8Array.of(0x08, 0x00);
    const ok = cryptoVerify(hash, f[4] ?? new Uint8Array(), { key: Buffer.from(f[2] ?? []), format: 'der', type: 'spki' }, f[3] ?? new Uint8Array());
    return Uint8Array.of(0x08, ok ? 0x01 : 0x00);
  } catch {
    return Uint8Array.of(0x08, 0x00);
  }
}

export class ProxyWasmHost {
  constructor({ pluginConfiguration = '', vmConfiguration = '', logLevel = 3, rootId = '', echoLogs = 3 } = {}) {
    this.buffers = { 6: encoder.encode(vmConfiguration), 7: encoder.encode(pluginConfiguration) };
    this.logLevel = logLevel; // Envoy `-l warning` (the benchmark's) → Warn (3)
    this.echoLogs = echoLogs; // module logs at or above this level go to stderr
    this.rootId = rootId;
    this.maps = {};           // map type → [[name, value]] of the current stream
    this.properties = new Map();
    this.sharedData = new Map(); // key → { value, cas }
    this.nextCas = 1;
    this.metrics = [];        // id - 1 → { type, name, value }
    this.httpCalls = [];
    this.nextToken = 1;
    this.localResponses = [];
    this.continued = 0;
    this.effectiveContext = 0;
    this.logs = [];
    this.counting = true;     // off while timing: the accounting is not the module's cost
    this.stats = new Map();   // import name → { calls, bytesIn, bytesOut }
    this.serialized = new WeakMap();
    this.scratch = new Map();
    this.encodings = new Map(); // header map (never mutated in place) → its ABI bytes
    this.details = new Map(); // "import detail" → { calls, bytesIn, bytesOut }
    this.instance = null;
  }

  // --- memory helpers -------------------------------------------------------------------
  // Views are rebuilt only when memory.grow replaced the buffer.
  refresh() {
    const buffer = this.instance.exports.memory.buffer;
    if (buffer !== this.buffer) { this.buffer = buffer; this.memView = new Uint8Array(buffer); this.dataView = new DataView(buffer); }
  }
  get mem() { this.refresh(); return this.memView; }
  get view() { this.refresh(); return this.dataView; }
  read(ptr, len) { const out = new Uint8Array(len); out.set(this.mem.subarray(ptr, ptr + len)); return out; }
  // A copy into a buffer reused per slot (a header map type, a property path): V8 allocates
  // typed arrays of this size off-heap, which would cost the fake host more than the call itself.
  copy(slot, ptr, len) {
    let buffer = this.scratch.get(slot);
    if (!buffer || buffer.length < len) this.scratch.set(slot, buffer = new Uint8Array(Math.max(len, 2 * (buffer?.length ?? 0))));
    buffer.set(this.mem.subarray(ptr, ptr + len));
    return buffer.subarray(0, len);
  }
  // Header values are returned as bytes; their encodings are cached (a few distinct strings).
  encoded(value) {
    let bytes = this.encodings.get(value);
    if (!bytes) {
      if (this.encodings.size > 1024) this.encodings.clear();
      this.encodings.set(value, bytes = encoder.encode(value));
    }
    return bytes;
  }
  str(ptr, len) { return utf8.decode(this.mem.subarray(ptr, ptr + len)); }
  u32(ptr, value) { this.view.setUint32(ptr, value >>> 0, true); }
  // Returned data: allocated in the module by proxy_on_memory_allocate, as Envoy does.
  give(bytes, dataPtr, sizePtr) {
    let addr = 0;
    if (bytes.length > 0) {
      addr = this.instance.exports.proxy_on_memory_allocate(bytes.length);
      if (!addr) return Status.InternalFailure;
      this.mem.set(bytes, addr);
    }
    this.u32(dataPtr, addr);
    this.u32(sizePtr, bytes.length);
    return Status.Ok;
  }

  // --- accounting -------------------------------------------------------------------------
  count(name, detail, bytesIn, bytesOut) {
    if (!this.counting) return;
    let s = this.stats.get(name);
    if (!s) this.stats.set(name, s = { calls: 0, bytesIn: 0, bytesOut: 0 });
    s.calls++; s.bytesIn += bytesIn; s.bytesOut += bytesOut;
    if (detail !== undefined) {
      const key = `${name} ${detail}`;
      let d = this.details.get(key);
      if (!d) this.details.set(key, d = { calls: 0, bytesIn: 0, bytesOut: 0 });
      d.calls++; d.bytesIn += bytesIn; d.bytesOut += bytesOut;
    }
  }
  resetStats() { this.stats.clear(); this.details.clear(); }

  // --- per stream state -------------------------------------------------------------------
  // Header maps are replaced, never mutated, so one request's headers can be shared by every
  // stream and serialized once; a map the module sets is kept as bytes until something reads it.
  beginStream(requestHeaders) {
    this.maps = { 0: requestHeaders };
    this.localResponses.length = 0;
    this.continued = 0;
  }

  mapOf(type) {
    const map = this.maps[type];
    if (map instanceof Uint8Array) return (this.maps[type] = deserializePairs(map));
    return (this.maps[type] = map ?? []);
  }
  mapBytes(type) {
    const map = this.maps[type];
    if (map instanceof Uint8Array) return map;
    const pairs = map ?? [];
    let bytes = this.serialized.get(pairs);
    if (!bytes) this.serialized.set(pairs, bytes = serializePairs(pairs));
    return bytes;
  }

  imports() {
    const h = this;
    const env = {
      proxy_log(level, ptr, len) {
        const message = h.str(ptr, len);
        h.count('proxy_log', undefined, len, 0);
        h.logs.push([level, message]);
        if (h.logs.length > 1000) h.logs.shift();
        if (level >= h.echoLogs) process.stderr.write(`[wasm log ${level}] ${message}\n`);
        return Status.Ok;
      },
      proxy_get_log_level(ret) { h.count('proxy_get_log_level', undefined, 0, 4); h.u32(ret, h.logLevel); return Status.Ok; },
      proxy_get_current_time_nanoseconds(ret) {
        h.count('proxy_get_current_time_nanoseconds', undefined, 0, 8);
        h.view.setBigUint64(ret, BigInt(Date.now()) * 1000000n, true);
        return Status.Ok;
      },
      proxy_set_tick_period_milliseconds(period) { h.count('proxy_set_tick_period_milliseconds', undefined, 0, 0); h.tickPeriod = period; return Status.Ok; },
      proxy_get_buffer_bytes(type, start, max, dataPtr, sizePtr) {
        const buffer = h.buffers[type];
        if (!buffer) { h.count('proxy_get_buffer_bytes', BUFFER[type], 0, 0); return Status.NotFound; }
        const slice = buffer.subarray(start, start + max);
        h.count('proxy_get_buffer_bytes', BUFFER[type], 0, slice.length);
        return h.give(slice, dataPtr, sizePtr);
      },
      proxy_set_buffer_bytes(type, start, size, dataPtr, dataSize) {
        const data = h.read(dataPtr, dataSize);
        h.count('proxy_set_buffer_bytes', BUFFER[type], dataSize, 0);
        const old = h.buffers[type] ?? new Uint8Array();
        const out = new Uint8Array(old.length - Math.min(size, old.length - start) + data.length);
        out.set(old.subarray(0, start)); out.set(data, start); out.set(old.subarray(start + size), start + data.length);
        h.buffers[type] = out;
        return Status.Ok;
      },
      proxy_get_header_map_pairs(type, dataPtr, sizePtr) {
        const bytes = h.mapBytes(type);
        h.count('proxy_get_header_map_pairs', MAP[type], 0, bytes.length);
        return h.give(bytes, dataPtr, sizePtr);
      },
      proxy_set_header_map_pairs(type, dataPtr, dataSize) {
        h.count('proxy_set_header_map_pairs', MAP[type], dataSize, 0);
        h.maps[type] = h.copy(`map ${type}`, dataPtr, dataSize);
        return Status.Ok;
      },
      proxy_get_header_map_value(type, keyPtr, keyLen, dataPtr, sizePtr) {
        const key = h.str(keyPtr, keyLen).toLowerCase();
        const found = h.mapOf(type).find(([n]) => n === key);
        if (!found) { h.count('proxy_get_header_map_value', `${MAP[type]} ${key} (absent)`, keyLen, 0); return Status.NotFound; }
        const value = h.encoded(found[1]);
        h.count('proxy_get_header_map_value', `${MAP[type]} ${key}`, keyLen, value.length);
        return h.give(value, dataPtr, sizePtr);
      },
      proxy_add_header_map_value(type, keyPtr, keyLen, valuePtr, valueLen) {
        const key = h.str(keyPtr, keyLen).toLowerCase();
        h.count('proxy_add_header_map_value', `${MAP[type]} ${key}`, keyLen + valueLen, 0);
        h.maps[type] = [...h.mapOf(type), [key, h.str(valuePtr, valueLen)]];
        return Status.Ok;
      },
      proxy_replace_header_map_value(type, keyPtr, keyLen, valuePtr, valueLen) {
        const key = h.str(keyPtr, keyLen).toLowerCase();
        h.count('proxy_replace_header_map_value', `${MAP[type]} ${key}`, keyLen + valueLen, 0);
        const map = h.mapOf(type).filter(([n]) => n !== key);
        map.push([key, h.str(valuePtr, valueLen)]);
        h.maps[type] = map;
        return Status.Ok;
      },
      proxy_remove_header_map_value(type, keyPtr, keyLen) {
        const key = h.str(keyPtr, keyLen).toLowerCase();
        h.count('proxy_remove_header_map_value', `${MAP[type]} ${key}`, keyLen, 0);
        h.maps[type] = h.mapOf(type).filter(([n]) => n !== key);
        return Status.Ok;
      },
      proxy_get_property(pathPtr, pathLen, dataPtr, sizePtr) {
        const path = h.str(pathPtr, pathLen).split('\0').join('.');
        let value = h.properties.get(path);
        if (value === undefined && (path === 'plugin_root_id' || path === 'plugin_name')) value = encoder.encode(h.rootId);
        if (value === undefined) { h.count('proxy_get_property', `${path} (absent)`, pathLen, 0); return Status.NotFound; }
        h.count('proxy_get_property', path, pathLen, value.length);
        return h.give(value, dataPtr, sizePtr);
      },
      proxy_set_property(pathPtr, pathLen, valuePtr, valueLen) {
        const path = h.str(pathPtr, pathLen).split('\0').join('.');
        h.count('proxy_set_property', path, pathLen + valueLen, 0);
        h.properties.set(path, h.copy(`property ${path}`, valuePtr, valueLen));
        return Status.Ok;
      },
      proxy_get_shared_data(keyPtr, keyLen, dataPtr, sizePtr, casPtr) {
        const key = h.str(keyPtr, keyLen);
        const entry = h.sharedData.get(key);
        if (!entry) { h.count('proxy_get_shared_data', '(absent)', keyLen, 0); return Status.NotFound; }
        h.count('proxy_get_shared_data', undefined, keyLen, entry.value.length + 4);
        h.u32(casPtr, entry.cas);
        return h.give(entry.value, dataPtr, sizePtr);
      },
      proxy_set_shared_data(keyPtr, keyLen, valuePtr, valueLen, cas) {
        const key = h.str(keyPtr, keyLen);
        const entry = h.sharedData.get(key);
        h.count('proxy_set_shared_data', undefined, keyLen + valueLen, 0);
        if (cas !== 0 && entry && entry.cas !== cas) return Status.CasMismatch;
        h.sharedData.set(key, { value: h.read(valuePtr, valueLen), cas: h.nextCas++ });
        return Status.Ok;
      },
      proxy_register_shared_queue(namePtr, nameLen, ret) { h.count('proxy_register_shared_queue', undefined, nameLen, 4); h.u32(ret, 1); return Status.Ok; },
      proxy_resolve_shared_queue(vmPtr, vmLen, namePtr, nameLen, ret) { h.count('proxy_resolve_shared_queue', undefined, vmLen + nameLen, 0); return Status.NotFound; },
      proxy_dequeue_shared_queue(id, dataPtr, sizePtr) { h.count('proxy_dequeue_shared_queue', undefined, 0, 0); return Status.Empty; },
      proxy_enqueue_shared_queue(id, valuePtr, valueLen) { h.count('proxy_enqueue_shared_queue', undefined, valueLen, 0); return Status.NotFound; },
      proxy_continue_stream(type) { h.count('proxy_continue_stream', undefined, 0, 0); h.continued++; return Status.Ok; },
      proxy_close_stream(type) { h.count('proxy_close_stream', undefined, 0, 0); return Status.Ok; },
      proxy_send_local_response(status, detailsPtr, detailsLen, bodyPtr, bodyLen, headersPtr, headersLen, grpcStatus) {
        h.count('proxy_send_local_response', String(status), detailsLen + bodyLen + headersLen, 0);
        h.localResponses.push({ status, details: h.str(detailsPtr, detailsLen), body: h.str(bodyPtr, bodyLen), headers: deserializePairs(h.read(headersPtr, headersLen)) });
        return Status.Ok;
      },
      // Dispatched but never answered: the profiled path must not need the network.
      proxy_http_call(upPtr, upLen, hPtr, hLen, bPtr, bLen, tPtr, tLen, timeout, ret) {
        h.count('proxy_http_call', h.str(upPtr, upLen), upLen + hLen + bLen + tLen, 4);
        const token = h.nextToken++;
        h.httpCalls.push({ token, upstream: h.str(upPtr, upLen), headers: deserializePairs(h.read(hPtr, hLen)) });
        h.u32(ret, token);
        return Status.Ok;
      },
      proxy_grpc_call() { h.count('proxy_grpc_call', undefined, 0, 0); return Status.BadArgument; },
      proxy_grpc_stream() { h.count('proxy_grpc_stream', undefined, 0, 0); return Status.BadArgument; },
      proxy_grpc_send() { h.count('proxy_grpc_send', undefined, 0, 0); return Status.NotFound; },
      proxy_grpc_cancel() { h.count('proxy_grpc_cancel', undefined, 0, 0); return Status.NotFound; },
      proxy_grpc_close() { h.count('proxy_grpc_close', undefined, 0, 0); return Status.NotFound; },
      proxy_get_status(codePtr, dataPtr, sizePtr) {
        h.count('proxy_get_status', undefined, 0, 4);
        h.u32(codePtr, 0);
        return h.give(new Uint8Array(), dataPtr, sizePtr);
      },
      proxy_set_effective_context(id) { h.count('proxy_set_effective_context', undefined, 0, 0); h.effectiveContext = id; return Status.Ok; },
      proxy_done() { h.count('proxy_done', undefined, 0, 0); return Status.Ok; },
      proxy_call_foreign_function(namePtr, nameLen, argPtr, argLen, dataPtr, sizePtr) {
        const name = h.str(namePtr, nameLen);
        let result;
        if (name === 'verify_signature') result = verifySignature(h.read(argPtr, argLen));
        else if (name === 'declare_property') result = new Uint8Array(); // Envoy ≥1.22 has it
        else if (name === 'clear_route_cache') result = new Uint8Array(); // Envoy ≥1.33: answers nothing
        else { h.count('proxy_call_foreign_function', `${name} (unknown)`, nameLen + argLen, 0); return Status.NotFound; }
        h.count('proxy_call_foreign_function', name, nameLen + argLen, result.length);
        return h.give(result, dataPtr, sizePtr);
      },
      proxy_define_metric(type, namePtr, nameLen, ret) {
        h.count('proxy_define_metric', METRIC[type], nameLen, 4);
        h.metrics.push({ type, name: h.str(namePtr, nameLen), value: 0n });
        h.u32(ret, h.metrics.length);
        return Status.Ok;
      },
      proxy_increment_metric(id, offset) {
        const m = h.metrics[id - 1];
        h.count('proxy_increment_metric', m?.name, 0, 0);
        if (!m) return Status.NotFound;
        m.value += BigInt(offset);
        return Status.Ok;
      },
      proxy_record_metric(id, value) {
        const m = h.metrics[id - 1];
        h.count('proxy_record_metric', m?.name, 0, 0);
        if (!m) return Status.NotFound;
        m.value = BigInt.asUintN(64, BigInt(value));
        return Status.Ok;
      },
      proxy_get_metric(id, ret) {
        const m = h.metrics[id - 1];
        h.count('proxy_get_metric', m?.name, 0, 8);
        if (!m) return Status.NotFound;
        h.view.setBigUint64(ret, BigInt.asUintN(64, m.value), true);
        return Status.Ok;
      },
    };
    // WASI: an empty environment, real randomness, stdout/stderr to stderr.
    const ERRNO_SUCCESS = 0, ERRNO_BADF = 8, ERRNO_NOSYS = 52;
    const wasi = {
      random_get(ptr, len) { h.count('wasi.random_get', undefined, 0, len); webcrypto.getRandomValues(h.mem.subarray(ptr, ptr + len)); return ERRNO_SUCCESS; },
      environ_sizes_get(countPtr, sizePtr) { h.count('wasi.environ_sizes_get', undefined, 0, 8); h.u32(countPtr, 0); h.u32(sizePtr, 0); return ERRNO_SUCCESS; },
      environ_get() { h.count('wasi.environ_get', undefined, 0, 0); return ERRNO_SUCCESS; },
      args_sizes_get(countPtr, sizePtr) { h.count('wasi.args_sizes_get', undefined, 0, 8); h.u32(countPtr, 0); h.u32(sizePtr, 0); return ERRNO_SUCCESS; },
      args_get() { h.count('wasi.args_get', undefined, 0, 0); return ERRNO_SUCCESS; },
      clock_time_get(id, precision, ret) { h.count('wasi.clock_time_get', undefined, 0, 8); h.view.setBigUint64(ret, BigInt(Date.now()) * 1000000n, true); return ERRNO_SUCCESS; },
      fd_write(fd, iovs, iovsLen, nwritten) {
        if (fd !== 1 && fd !== 2) return ERRNO_BADF;
        let total = 0;
        for (let i = 0; i < iovsLen; i++) {
          const ptr = h.view.getUint32(iovs + 8 * i, true), len = h.view.getUint32(iovs + 8 * i + 4, true);
          process.stderr.write(h.read(ptr, len)); total += len;
        }
        h.count('wasi.fd_write', undefined, total, 4);
        h.u32(nwritten, total);
        return ERRNO_SUCCESS;
      },
      proc_exit(code) { throw new Error(`wasm called proc_exit(${code})`); },
      sched_yield() { return ERRNO_SUCCESS; },
    };
    return { env, wasi_snapshot_preview1: wasi };
  }

  // Instantiates with exactly the imports the module declares; an unknown one is an error.
  async instantiate(bytes) {
    const module = await WebAssembly.compile(bytes);
    const provided = this.imports();
    const imports = {};
    for (const { module: mod, name, kind } of WebAssembly.Module.imports(module)) {
      const fn = provided[mod]?.[name];
      if (kind !== 'function' || !fn) throw new Error(`unsupported import ${mod}.${name} (${kind})`);
      (imports[mod] ??= {})[name] = fn;
    }
    this.module = module;
    this.instance = await WebAssembly.instantiate(module, imports);
    return this.instance;
  }
}
