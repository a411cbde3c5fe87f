// Profiles one proxy-wasm module in Node's V8 behind the fake host of host.mjs: ns per request,
// the host calls a request makes (with bytes) and the wasm functions by self time.
// See bench/README.md ("Profiling inside V8"). Usage:
//   node bench/profile/run.mjs --input INPUT.json --wasm dist/brickgate.wasm --mode warm
//        [--requests 20000] [--batches 10] [--warmup 5000] [--profile-requests 20000]
//        [--top 30] [--interval-us 50] [--cpuprofile FILE]
// INPUT.json comes from bench/profile/prepare.py (configuration, token and headers per mode).

import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Session } from 'node:inspector';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { ProxyWasmHost } from './host.mjs';

const ROOT_CONTEXT = 1;
const ACTIONS = ['Continue', 'Pause'];

function parseArgs(argv) {
  const args = { requests: 20000, batches: 10, warmup: 5000, 'profile-requests': 20000, 'count-requests': 1000, top: 30, 'interval-us': 50 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) && !['input', 'wasm', 'mode', 'cpuprofile'].includes(key)) throw new Error(`unknown option ${argv[i]}`);
    args[key] = typeof args[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  for (const required of ['input', 'wasm', 'mode']) if (!args[required]) throw new Error(`--${required} is required`);
  // Bounded: the loops below never run more than this many requests each.
  for (const key of ['requests', 'warmup', 'profile-requests', 'count-requests']) {
    if (!(args[key] >= 0 && args[key] <= 1_000_000)) throw new Error(`--${key} must be 0..1000000`);
  }
  return args;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

class Harness {
  // `headerSets`: one header list per request, cycled (cold modes: a token each).
  constructor(host, headerSets) {
    this.host = host;
    this.headerSets = headerSets;
    this.sent = 0;
    this.exports = host.instance.exports;
    this.nextId = ROOT_CONTEXT + 1;
    this.actions = new Map();
  }

  start(vmConfigSize, pluginConfigSize) {
    const e = this.exports;
    if (!e.proxy_abi_version_0_2_1) throw new Error('the module does not export proxy_abi_version_0_2_1');
    e._initialize?.();
    e.proxy_on_context_create(ROOT_CONTEXT, 0);
    if (!e.proxy_on_vm_start(ROOT_CONTEXT, vmConfigSize)) throw new Error('proxy_on_vm_start returned false');
    if (!e.proxy_on_configure(ROOT_CONTEXT, pluginConfigSize)) throw new Error('proxy_on_configure returned false (the module refused its configuration; its log is above)');
  }

  // One request as Envoy drives it: create, request headers (end of stream), done, log, delete.
  // The request-header callback's host calls are counted apart (stats swapped in and out).
  request(rhStats, restStats, timer) {
    const e = this.exports, h = this.host, id = this.nextId++;
    const headers = this.headerSets[this.sent++ % this.headerSets.length];
    h.beginStream(headers);
    h.stats = restStats.stats; h.details = restStats.details;
    e.proxy_on_context_create(id, ROOT_CONTEXT);
    h.stats = rhStats.stats; h.details = rhStats.details;
    const t0 = timer ? performance.now() : 0;
    const action = e.proxy_on_request_headers(id, headers.length, 1);
    if (timer) timer.ns += (performance.now() - t0) * 1e6;
    h.stats = restStats.stats; h.details = restStats.details;
    e.proxy_on_done(id);
    e.proxy_on_log(id);
    e.proxy_on_delete(id);
    this.actions.set(action, (this.actions.get(action) ?? 0) + 1);
    return action;
  }

  run(count, rhStats, restStats, timer) {
    for (let i = 0; i < count; i++) this.request(rhStats, restStats, timer);
  }
}

const newStats = () => ({ stats: new Map(), details: new Map() });

function statsTable(title, { stats, details }, requests) {
  const lines = [`${title} (per request, averaged over ${requests}):`, `  ${'host call'.padEnd(70)} ${'calls'.padStart(7)} ${'bytes in'.padStart(9)} ${'bytes out'.padStart(9)}`];
  const row = (name, s, indent) => `  ${(indent + name).padEnd(70)} ${(s.calls / requests).toFixed(2).padStart(7)} ${(s.bytesIn / requests).toFixed(1).padStart(9)} ${(s.bytesOut / requests).toFixed(1).padStart(9)}`;
  const names = [...stats.keys()].sort();
  let calls = 0, bytesIn = 0, bytesOut = 0;
  for (const name of names) {
    const s = stats.get(name);
    calls += s.calls; bytesIn += s.bytesIn; bytesOut += s.bytesOut;
    lines.push(row(name, s, ''));
    for (const [key, d] of [...details.entries()].filter(([k]) => k.startsWith(`${name} `)).sort()) {
      lines.push(row(key.slice(name.length + 1), d, '    '));
    }
  }
  if (names.length === 0) lines.push('  (none)');
  lines.push(row('total', { calls, bytesIn, bytesOut }, ''));
  lines.push('  (bytes in: read from wasm memory by the host; bytes out: written into it, via proxy_on_memory_allocate for data)');
  return lines.join('\n');
}

// Rust symbols (legacy and v0) through binutils' c++filt; the hash suffixes are dropped.
function demangle(names) {
  const result = spawnSync('c++filt', [], { input: names.join('\n'), encoding: 'utf8' });
  const out = result.status === 0 ? result.stdout.split('\n') : names;
  return names.map((_, i) => (out[i] ?? names[i]).replace(/::h[0-9a-f]{16}$/, '').replace(/\[[0-9a-f]{16}\]/g, ''));
}

function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const groups = new Map(); // wasm function name → µs
  const others = new Map(); // JS or native frame → µs
  const kinds = new Map();
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    const { functionName, url } = callFrame;
    const kind = url.startsWith('wasm://') ? 'wasm' : url.endsWith('host.mjs') ? 'host (host.mjs imports)' : url.endsWith('run.mjs') ? 'harness (run.mjs)' : functionName.startsWith('(') ? functionName : 'other JS / native';
    kinds.set(kind, (kinds.get(kind) ?? 0) + us);
    const key = kind === 'wasm' ? (functionName || '(anonymous wasm)') : `${functionName || '(anonymous)'} [${url.split('/').at(-1) || 'native'}:${callFrame.lineNumber + 1}]`;
    const target = kind === 'wasm' ? groups : others;
    target.set(key, (target.get(key) ?? 0) + us);
  }
  return { kinds, wasm: groups, others, self, byId };
}

function profileReport(profile, requests, top, streamMedianNs) {
  const { kinds, wasm, others, self, byId } = selfTimes(profile);
  const total = [...kinds.values()].reduce((a, b) => a + b, 0);
  const wasmTotal = kinds.get('wasm') ?? 0;
  const lines = [`CPU profile: ${requests} requests (full stream), ${profile.samples.length} samples, ${(total / 1000).toFixed(1)} ms sampled`];
  lines.push('  self time by kind:');
  for (const [kind, us] of [...kinds].sort((a, b) => b[1] - a[1])) {
    lines.push(`    ${kind.padEnd(28)} ${(1000 * us / requests).toFixed(0).padStart(7)} ns/request ${(100 * us / total).toFixed(1).padStart(6)}%`);
  }
  lines.push(`  in-wasm share of the sampled stream: ${(100 * wasmTotal / total).toFixed(1)}% → about ${(streamMedianNs * wasmTotal / total).toFixed(0)} ns of the unprofiled whole-stream median`);
  lines.push('  top 10 JS/native frames by self time (the fake host and Node, not the module):');
  for (const [name, us] of [...others].sort((a, b) => b[1] - a[1]).slice(0, 10)) {
    lines.push(`    ${(1000 * us / requests).toFixed(0).padStart(6)} ns  ${name}`);
  }
  const ranked = [...wasm].sort((a, b) => b[1] - a[1]).slice(0, top);
  const names = demangle(ranked.map(([name]) => name.replace(/^\$/, '')));
  lines.push(`  top ${ranked.length} wasm functions by self time (% of wasm self time; ns per request):`);
  ranked.forEach(([, us], i) => {
    lines.push(`  ${String(i + 1).padStart(3)}. ${(100 * us / wasmTotal).toFixed(1).padStart(5)}% ${(1000 * us / requests).toFixed(0).padStart(6)} ns  ${names[i]}`);
  });
  // Who asked: for the top functions, their self time split by the nearest caller whose name
  // is not an allocator or a copy (so dlmalloc's time lands on the code that allocated).
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const allNames = [...new Set(profile.nodes.map((n) => n.callFrame.functionName))];
  const demangledList = demangle(allNames.map((x) => x.replace(/^\$/, '')));
  const demangledAll = new Map(allNames.map((n, k) => [n, demangledList[k]]));
  const plumbing = /^(dlmalloc|dlfree|dlrealloc|malloc|free|realloc|calloc|memcpy|memmove|memset|memcmp)$|^<?(__rustc|alloc|core|std|sha2|blake3|digest|serde|serde_json|serde_core)::|^<D as digest::/;
  const isPlumbing = (name) => plumbing.test(demangledAll.get(name) ?? name);
  const callers = new Map(); // top function → caller → µs
  const topNames = new Set(ranked.slice(0, 8).map(([name]) => name));
  for (const [id, us] of self) {
    const name = byId.get(id).callFrame.functionName;
    if (!topNames.has(name)) continue;
    let p = parent.get(id);
    while (p !== undefined && (byId.get(p).callFrame.functionName === name || isPlumbing(byId.get(p).callFrame.functionName))) p = parent.get(p);
    const caller = p === undefined ? '(root)' : byId.get(p).callFrame.url.startsWith('wasm://') ? byId.get(p).callFrame.functionName : '(the host: an exported callback)';
    const m = callers.get(name) ?? new Map(); callers.set(name, m);
    m.set(caller, (m.get(caller) ?? 0) + us);
  }
  lines.push('  their callers (nearest frame outside alloc/core/std-like plumbing, hashing and serde; ns per request):');
  ranked.slice(0, 8).forEach(([name], i) => {
    const top = [...(callers.get(name) ?? [])].sort((a, b) => b[1] - a[1]).slice(0, 3);
    lines.push(`    ${names[i]}: ${top.map(([, us], j) => `${demangledAll.get(top[j][0]) ?? top[j][0]} ${(1000 * us / requests).toFixed(0)}`).join('; ')}`);
  });
  return lines.join('\n');
}

async function cpuProfile(run, intervalUs) {
  const session = new Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: intervalUs });
  await post('Profiler.start');
  run();
  const { profile } = await post('Profiler.stop');
  session.disconnect();
  return profile;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const input = JSON.parse(readFileSync(args.input, 'utf8'));
  const mode = input.modes[args.mode];
  if (!mode) throw new Error(`unknown mode ${args.mode} (have: ${Object.keys(input.modes).join(', ')})`);
  const wasm = readFileSync(args.wasm);
  const pluginConfiguration = JSON.stringify(mode.config);
  const host = new ProxyWasmHost({ pluginConfiguration, rootId: mode.root_id });
  await host.instantiate(wasm);
  const hasNames = WebAssembly.Module.customSections(host.module, 'name').length > 0;
  const out = [];
  out.push(`== mode ${args.mode}: ${args.wasm} (sha256 ${createHash('sha256').update(wasm).digest('hex').slice(0, 16)}, ${wasm.length} bytes, name section: ${hasNames ? 'yes' : 'NO: function names are indices'})`);
  out.push(`node ${process.version} (V8 ${process.versions.v8}); headers: ${mode.headers.map(([n]) => n).join(', ')}`);

  const setup = newStats();
  host.stats = setup.stats; host.details = setup.details;
  const harness = new Harness(host, mode.header_sets ?? [mode.headers]);
  harness.start(0, Buffer.byteLength(pluginConfiguration));

  // The first request (for brickgate warm: verifies the token and fills the cache).
  const first = newStats();
  const action = harness.request(first, first, null);
  out.push(`first request: ${ACTIONS[action] ?? action}, local responses ${JSON.stringify(host.localResponses.map((r) => r.status))}`);
  // forged and denied are refused with a local response (401, 403); every other mode is admitted.
  const expected = { forged: 401, denied: 403 }[args.mode];
  const refusedAsExpected = expected && action === 1 && host.localResponses.length === 1 && host.localResponses[0].status === expected;
  if (!refusedAsExpected && (expected || action !== 0 || host.localResponses.length)) {
    throw new Error(`the first request was not admitted (action ${action}, local responses ${JSON.stringify(host.localResponses)}); logs: ${JSON.stringify(host.logs.slice(-5))}`);
  }

  out.push(statsTable('host calls in the first request, all callbacks (for brickgate warm: the token cache miss)', first, 1));
  const discard = newStats();
  harness.run(args.warmup, discard, discard, null);

  const rh = newStats(), rest = newStats();
  harness.run(args['count-requests'], rh, rest, null);
  out.push(statsTable('host calls in proxy_on_request_headers', rh, args['count-requests']));
  out.push(statsTable('host calls in the rest of the stream (context_create, done, log, delete)', rest, args['count-requests']));

  // Timed: `batches` batches of requests/batches; per batch the per-request mean of the
  // on_request_headers call (performance.now() around it) and of the whole stream.
  const perBatch = Math.max(1, Math.floor(args.requests / args.batches));
  const rhNs = [], streamNs = [];
  host.counting = false;
  for (let b = 0; b < args.batches; b++) {
    const timer = { ns: 0 };
    const t0 = performance.now();
    harness.run(perBatch, discard, discard, timer);
    streamNs.push((performance.now() - t0) * 1e6 / perBatch);
    rhNs.push(timer.ns / perBatch);
  }
  let overhead = 0;
  for (let i = 0; i < 10000; i++) { const t = performance.now(); overhead += performance.now() - t; }
  overhead = overhead * 1e6 / 10000;
  const fmt = (xs) => `median ${median(xs).toFixed(0)} ns (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})`;
  out.push(`timing: ${args.batches} batches x ${perBatch} requests after ${args.warmup + args['count-requests'] + 1} warm-up requests`);
  out.push(`  proxy_on_request_headers: ${fmt(rhNs)} per request (includes ~${overhead.toFixed(0)} ns of timer)`);
  out.push(`  whole stream (create + request headers + done + log + delete): ${fmt(streamNs)} per request`);

  const profile = await cpuProfile(() => harness.run(args['profile-requests'], discard, discard, null), args['interval-us']);
  if (args.cpuprofile) writeFileSync(args.cpuprofile, JSON.stringify(profile));
  out.push(profileReport(profile, args['profile-requests'], args.top, median(streamNs)));

  const actions = [...harness.actions].map(([a, n]) => `${ACTIONS[a] ?? a}: ${n}`).join(', ');
  out.push(`actions over all ${harness.nextId - ROOT_CONTEXT - 1} requests: ${actions}; local responses in the last: ${host.localResponses.length}; http calls: ${host.httpCalls.length}`);
  const complaints = host.logs.filter(([level]) => level >= 3);
  if (complaints.length) out.push(`module warnings/errors (${complaints.length}, last): ${complaints.at(-1)[1]}`);
  console.log(out.join('\n') + '\n');
  if ([...harness.actions.keys()].some((a) => a !== 0)) process.exitCode = 1;
}

main().catch((err) => { console.error(`run.mjs: ${err.stack ?? err}`); process.exit(1); });
