// The fake host's encodings, checked against bytes written out by hand from the proxy-wasm ABI
// (not produced by host.mjs itself). Run: node --test bench/profile/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { serializePairs, deserializePairs, verifySignature } from './host.mjs';

// {":path": "/a", "x": ""}: u32 count, (u32 name_len, u32 value_len) per pair, name\0 value\0.
const PAIRS_BYTES = Uint8Array.of(
  2, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
  0x3a, 0x70, 0x61, 0x74, 0x68, 0, 0x2f, 0x61, 0, 0x78, 0, 0);

test('header map pairs serialize as the ABI lays them out', () => {
  assert.deepEqual(serializePairs([[':path', '/a'], ['x', '']]), PAIRS_BYTES);
  assert.deepEqual(serializePairs([]), Uint8Array.of(0, 0, 0, 0));
});

test('header map pairs deserialize from the ABI layout', () => {
  assert.deepEqual(deserializePairs(PAIRS_BYTES), [[':path', '/a'], ['x', '']]);
});

function field(number, bytes) {
  assert.ok(bytes.length < 0x4000);
  const len = bytes.length < 0x80 ? [bytes.length] : [(bytes.length & 0x7f) | 0x80, bytes.length >> 7];
  return Buffer.concat([Buffer.from([(number << 3) | 2, ...len]), Buffer.from(bytes)]);
}

test('verify_signature answers VerifySignatureResult { result } from a real check', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const text = Buffer.from('header.payload');
  const signature = sign('sha256', text, privateKey);
  const args = (sig) => Buffer.concat([field(1, Buffer.from('sha256')), field(2, spki), field(3, sig), field(4, text)]);
  assert.deepEqual(verifySignature(args(signature)), Uint8Array.of(0x08, 0x01));
  const altered = Buffer.from(signature); altered[0] ^= 1;
  assert.deepEqual(verifySignature(args(altered)), Uint8Array.of(0x08, 0x00));
  assert.deepEqual(verifySignature(Uint8Array.of(0xff)), Uint8Array.of(0x08, 0x00));
});
