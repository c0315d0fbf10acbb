/**
 * codec + validation: every message type and chunk frames round-trip; a table of malformed frames
 * each fails with its stable code and a message naming the field; a seeded fuzz loop checks that
 * no input bytes make decodeFrame throw anything but ProtocolError.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProtocolError } from '../../../src/errors.js';
import { decodeFrame, encodeChunk, encodeControl } from '../../../src/protocol/codec.js';
import { MAX_CHUNK_BYTES, MAX_CONTROL_BYTES, MAX_FRAME_BYTES, MAX_HANDSHAKE_FRAME_BYTES, MAX_PAGE_ENTRIES, MAX_ZCHUNK_PAYLOAD_BYTES } from '../../../src/protocol/limits.js';
import { AGENT_TO_RECEIVER, MESSAGE_CHECKS, RECEIVER_TO_AGENT } from '../../../src/protocol/messages.js';
import { parseControl, type Role } from '../../../src/protocol/validate.js';
import { FILE_ENTRY, HASH, LINK_ENTRY, MAC, NONCE_A, VALID, prng, rawChunk, rawControl, rawZchunk, withField } from './fixtures.js';

const CODES = new Set(['BAD_FRAME', 'FRAME_TOO_LARGE', 'BAD_JSON', 'BAD_MESSAGE', 'BAD_PATH', 'UNEXPECTED_MESSAGE']);

function msgOf(name: string): Record<string, unknown> {
  const found = VALID.find((v) => v.name === name);
  assert.ok(found, `fixture ${name}`);
  return found.msg as unknown as Record<string, unknown>;
}

function expectError(fn: () => unknown, code: string, mentions: string | RegExp): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ProtocolError, `expected ProtocolError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (typeof mentions === 'string') assert.ok(caught.message.includes(mentions), `"${caught.message}" should mention "${mentions}"`);
  else assert.match(caught.message, mentions);
  assert.ok(caught.message.length <= 1024, 'error messages fit an error message');
  return caught;
}

describe('round trips', () => {
  test('the fixtures cover every message type and both directions cover every type', () => {
    const covered = new Set(VALID.map((v) => v.msg.type));
    assert.deepEqual([...covered].sort(), Object.keys(MESSAGE_CHECKS).sort());
    assert.deepEqual([...new Set([...AGENT_TO_RECEIVER, ...RECEIVER_TO_AGENT])].sort(), Object.keys(MESSAGE_CHECKS).sort());
    assert.ok(AGENT_TO_RECEIVER.has('error') && RECEIVER_TO_AGENT.has('error'));
  });

  for (const { name, from, msg } of VALID) {
    test(`control: ${name}`, () => {
      const frame = encodeControl(msg);
      assert.equal(frame[0], 0x01);
      assert.deepEqual(decodeFrame(frame, from), { kind: 'control', message: msg });
      assert.deepEqual(parseControl(JSON.parse(frame.subarray(1).toString('utf8')), from), msg);
    });
  }

  const chunks: ReadonlyArray<{ name: string; id: number; offset: number; length: number }> = [
    { name: 'one byte at 0', id: 0, offset: 0, length: 1 },
    { name: 'max transfer id, offset past 2^32', id: 0xffffffff, offset: 2 ** 32 + 17, length: 100 },
    { name: 'offset near 2^53', id: 5, offset: Number.MAX_SAFE_INTEGER - 10, length: 10 },
    { name: 'max chunk', id: 6, offset: 3 * MAX_CHUNK_BYTES, length: MAX_CHUNK_BYTES },
  ];
  for (const { name, id, offset, length } of chunks) {
    test(`chunk: ${name}`, () => {
      const data = Buffer.alloc(length);
      for (let i = 0; i < length; i++) data[i] = (i * 31) & 0xff;
      const frame = encodeChunk(id, offset, data);
      assert.equal(frame.length, 13 + length);
      const decoded = decodeFrame(frame, 'agent');
      assert.equal(decoded.kind, 'chunk');
      if (decoded.kind !== 'chunk') return;
      assert.equal(decoded.transferId, id);
      assert.equal(decoded.offset, offset);
      assert.ok(decoded.data.equals(data));
      assert.equal(decoded.data.buffer, frame.buffer, 'data is a view into the frame, not a copy');
    });
  }

  test('a plain Uint8Array frame decodes like a Buffer', () => {
    const frame = encodeChunk(1, 2, Buffer.from('abc'));
    const bytes = new Uint8Array(frame.length);
    bytes.set(frame);
    const decoded = decodeFrame(bytes, 'agent');
    assert.ok(decoded.kind === 'chunk' && decoded.data.toString() === 'abc' && decoded.offset === 2);
  });

  test('a largest-size control message encodes and decodes', () => {
    const entries = Array.from({ length: MAX_PAGE_ENTRIES }, (_, i) => ({ ...FILE_ENTRY, path: `p/${i}/${Array.from({ length: 9 }, () => 'x'.repeat(200)).join('/')}` }));
    const frame = encodeControl({ type: 'manifestPage', entries, done: true });
    assert.ok(frame.length > 3_500_000 && frame.length <= 1 + MAX_CONTROL_BYTES);
    const decoded = decodeFrame(frame, 'receiver');
    assert.equal(decoded.message.type === 'manifestPage' && decoded.message.entries.length, MAX_PAGE_ENTRIES);
  });
});

describe('encoder limits', () => {
  const cases: ReadonlyArray<{ name: string; fn: () => unknown }> = [
    { name: 'transfer id over uint32', fn: () => encodeChunk(2 ** 32, 0, Buffer.from('x')) },
    { name: 'negative transfer id', fn: () => encodeChunk(-1, 0, Buffer.from('x')) },
    { name: 'empty data', fn: () => encodeChunk(1, 0, Buffer.alloc(0)) },
    { name: 'data over MAX_CHUNK_BYTES', fn: () => encodeChunk(1, 0, Buffer.alloc(MAX_CHUNK_BYTES + 1)) },
    { name: 'negative offset', fn: () => encodeChunk(1, -1, Buffer.from('x')) },
    { name: 'fractional offset', fn: () => encodeChunk(1, 0.5, Buffer.from('x')) },
    { name: 'chunk ending past 2^53-1', fn: () => encodeChunk(1, Number.MAX_SAFE_INTEGER, Buffer.from('x')) },
  { name: 'control over MAX_CONTROL_BYTES', fn: () => encodeControl({ type: 'error', code: 'X', message: 'y'.repeat(MAX_CONTROL_BYTES) }) },
  ];
  for (const { name, fn } of cases) test(name, () => assert.throws(fn, RangeError));
});

interface BadCase {
  readonly name: string;
  readonly frame: Buffer;
  readonly from?: Role;
  readonly code: string;
  readonly mentions: string | RegExp;
}

const fileBegin = msgOf('fileBegin');
const mkdir = msgOf('mkdir');
const symlink = msgOf('symlink');
const page = (entry: object): Buffer => rawControl({ type: 'manifestPage', entries: [FILE_ENTRY, entry], done: true });

const BAD_PATHS: ReadonlyArray<[string, string]> = [
  ['".." alone', '..'],
  ['inner ".."', 'a/../b'],
  ['"." segment', 'a/./b'],
  ['absolute', '/abs'],
  ['double slash', 'a//b'],
  ['trailing slash', 'a/'],
  ['NUL', 'a\0b'],
  ['256-byte segment', `a/${'x'.repeat(256)}`],
  ['256-byte segment of 2-byte characters', 'é'.repeat(128)],
  ['path over 4096 bytes', Array.from({ length: 20 }, () => 'y'.repeat(250)).join('/')],
  ['empty', ''],
  ['lone surrogate', 'a/\ud800b'],
];

const BAD: BadCase[] = [
  // framing
  { name: 'empty buffer', frame: Buffer.alloc(0), code: 'BAD_FRAME', mentions: 'empty frame' },
  { name: 'unknown kind byte', frame: Buffer.from([0x04, 0x7b, 0x7d]), code: 'BAD_FRAME', mentions: 'unknown frame kind 0x04' },
  { name: 'kind byte 0x00', frame: Buffer.from([0x00]), code: 'BAD_FRAME', mentions: 'kind 0x00' },
  { name: 'frame over MAX_FRAME_BYTES', frame: Buffer.alloc(MAX_FRAME_BYTES + 1, 0x02), code: 'FRAME_TOO_LARGE', mentions: `${MAX_FRAME_BYTES + 1} bytes` },
  { name: 'truncated chunk header', frame: Buffer.from([0x02, 0, 0, 0, 1, 0, 0]), code: 'BAD_FRAME', mentions: 'truncated header' },
  { name: 'kind byte only', frame: Buffer.from([0x02]), code: 'BAD_FRAME', mentions: 'truncated header' },
  { name: 'chunk with empty data', frame: rawChunk(1, 0, 0, 0), code: 'BAD_FRAME', mentions: 'no data' },
  { name: 'chunk over MAX_CHUNK_BYTES', frame: rawChunk(1, 0, 0, MAX_CHUNK_BYTES + 1), code: 'FRAME_TOO_LARGE', mentions: 'MAX_CHUNK_BYTES' },
  { name: 'offset over MAX_SAFE_INTEGER', frame: rawChunk(1, 0x200000, 0, 1), code: 'BAD_FRAME', mentions: 'offset' },
  { name: 'offset 2^64-1', frame: rawChunk(1, 0xffffffff, 0xffffffff, 1), code: 'BAD_FRAME', mentions: 'offset' },
  { name: 'chunk ending past 2^53-1', frame: rawChunk(1, 0x1fffff, 0xffffffff, 2), code: 'BAD_FRAME', mentions: 'offset' },
  { name: 'chunk from the receiver', frame: rawChunk(1, 0, 0, 1), from: 'receiver', code: 'UNEXPECTED_MESSAGE', mentions: 'chunk' },
  { name: 'truncated zchunk header', frame: rawChunk(1, 0, 0, 2).fill(0x03, 0, 1), code: 'BAD_FRAME', mentions: 'zchunk frame: truncated header (15 bytes, need 17)' },
  { name: 'zchunk declaring 0 bytes', frame: rawZchunk(1, 0, 0, 0, Buffer.from('x')), code: 'BAD_FRAME', mentions: 'zchunk frame: no data' },
  { name: 'zchunk declaring over MAX_CHUNK_BYTES', frame: rawZchunk(1, 0, 0, MAX_CHUNK_BYTES + 1, Buffer.from('x')), code: 'FRAME_TOO_LARGE', mentions: `zchunk frame: ${MAX_CHUNK_BYTES + 1} bytes of data` },
  { name: 'zchunk without compressed data', frame: rawZchunk(1, 0, 0, 10, Buffer.alloc(0)), code: 'BAD_FRAME', mentions: 'no compressed data' },
  { name: 'zchunk with more compressed data than a chunk holds', frame: rawZchunk(1, 0, 0, 10, Buffer.alloc(MAX_ZCHUNK_PAYLOAD_BYTES + 1)), code: 'FRAME_TOO_LARGE', mentions: 'of compressed data' },
  { name: 'zchunk offset over MAX_SAFE_INTEGER', frame: rawZchunk(1, 0x200000, 0, 1, Buffer.from('x')), code: 'BAD_FRAME', mentions: 'zchunk frame: offset' },
  { name: 'zchunk on a connection without compression', frame: rawZchunk(1, 0, 0, 10, Buffer.from('x')), code: 'UNEXPECTED_MESSAGE', mentions: 'did not negotiate compression' },
  { name: 'zchunk from the receiver', frame: rawZchunk(1, 0, 0, 10, Buffer.from('x')), from: 'receiver', code: 'UNEXPECTED_MESSAGE', mentions: 'zchunk: not a frame the receiver sends' },
  { name: 'welcome offering an unnamed method', frame: rawControl({ type: 'welcome', mac: MAC, window: 1, maxInFlight: 1, compression: [''] }), from: 'receiver', code: 'BAD_MESSAGE', mentions: 'welcome.compression[0]: expected a compression method name' },
  { name: 'welcome offering compression as a string', frame: rawControl({ type: 'welcome', mac: MAC, window: 1, maxInFlight: 1, compression: 'zstd' }), from: 'receiver', code: 'BAD_MESSAGE', mentions: 'welcome.compression' },
  { name: 'control over MAX_CONTROL_BYTES', frame: rawControl(' '.repeat(MAX_CONTROL_BYTES + 1)), code: 'FRAME_TOO_LARGE', mentions: 'MAX_CONTROL_BYTES' },
  // JSON
  { name: 'empty control body', frame: Buffer.from([0x01]), code: 'BAD_JSON', mentions: 'invalid JSON' },
  { name: 'invalid UTF-8', frame: Buffer.from([0x01, 0x7b, 0xff, 0xfe, 0x7d]), code: 'BAD_JSON', mentions: 'UTF-8' },
  { name: 'overlong UTF-8 encoding of "/"', frame: Buffer.from([0x01, 0x22, 0xc0, 0xaf, 0x22]), code: 'BAD_JSON', mentions: 'UTF-8' },
  { name: 'UTF-8 encoded surrogate', frame: Buffer.from([0x01, 0x22, 0xed, 0xa0, 0x80, 0x22]), code: 'BAD_JSON', mentions: 'UTF-8' },
  { name: 'invalid JSON', frame: rawControl('{"type":"flush",'), code: 'BAD_JSON', mentions: 'invalid JSON' },
  { name: 'byte order mark', frame: rawControl('\ufeff{"type":"manifestRequest"}'), code: 'BAD_JSON', mentions: 'invalid JSON' },
  { name: 'two JSON values', frame: rawControl('{"type":"manifestRequest"}{}'), code: 'BAD_JSON', mentions: 'invalid JSON' },
  // envelope
  { name: 'JSON array', frame: rawControl([]), code: 'BAD_MESSAGE', mentions: 'expected a JSON object, got an array' },
  { name: 'JSON number', frame: rawControl('42'), code: 'BAD_MESSAGE', mentions: 'expected a JSON object, got 42' },
  { name: 'JSON null', frame: rawControl('null'), code: 'BAD_MESSAGE', mentions: 'expected a JSON object, got null' },
  { name: 'JSON string', frame: rawControl('"hello"'), code: 'BAD_MESSAGE', mentions: 'expected a JSON object' },
  { name: 'missing type', frame: rawControl({ op: 1 }), code: 'BAD_MESSAGE', mentions: 'type: missing' },
  { name: 'type not a string', frame: rawControl({ type: 7 }), code: 'BAD_MESSAGE', mentions: 'type: expected a string, got 7' },
  { name: 'unknown type', frame: rawControl({ type: 'nope' }), code: 'BAD_MESSAGE', mentions: 'unknown message type "nope"' },
  { name: 'type "__proto__"', frame: rawControl('{"type":"__proto__"}'), code: 'BAD_MESSAGE', mentions: 'unknown message type' },
  { name: 'type "toString"', frame: rawControl({ type: 'toString' }), code: 'BAD_MESSAGE', mentions: 'unknown message type' },
  { name: 'unknown extra key', frame: rawControl(withField(fileBegin, 'extra', 1)), code: 'BAD_MESSAGE', mentions: 'fileBegin: unknown key "extra"' },
  { name: '"__proto__" key', frame: rawControl('{"type":"flush","id":1,"__proto__":{"id":2}}'), code: 'BAD_MESSAGE', mentions: 'flush: unknown key "__proto__"' },
  { name: 'unknown key in old', frame: rawControl(withField(mkdir, 'old', { kind: 'dir', hash: null, deletedAt: null, born: 1 })), code: 'BAD_MESSAGE', mentions: 'mkdir.old: unknown key "born"' },
  { name: 'bornMs in a manifest entry', frame: page({ ...FILE_ENTRY, bornMs: 5 }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[1]: unknown key "bornMs"' },
  // direction
  { name: 'hello from the agent', frame: encodeControl({ type: 'hello', protocols: [1], nonce: NONCE_A, receiverId: 'r' }), from: 'agent', code: 'UNEXPECTED_MESSAGE', mentions: 'hello: not a message the agent sends' },
  { name: 'fileBegin from the receiver', frame: rawControl(fileBegin), from: 'receiver', code: 'UNEXPECTED_MESSAGE', mentions: 'fileBegin' },
  { name: 'credit from the agent', frame: rawControl({ type: 'credit', bytes: 1 }), from: 'agent', code: 'UNEXPECTED_MESSAGE', mentions: 'credit' },
  { name: 'wrong direction wins over a bad body', frame: rawControl({ type: 'results' }), from: 'agent', code: 'UNEXPECTED_MESSAGE', mentions: 'results' },
  // paths
  ...BAD_PATHS.map(([name, path]): BadCase => ({ name: `fileBegin path: ${name}`, frame: rawControl(withField(fileBegin, 'path', path)), code: 'BAD_PATH', mentions: 'fileBegin.path: invalid path' })),
  ...BAD_PATHS.map(([name, path]): BadCase => ({ name: `manifest entry path: ${name}`, frame: page({ ...FILE_ENTRY, path }), from: 'receiver', code: 'BAD_PATH', mentions: 'manifestPage.entries[1].path: invalid path' })),
  { name: 'delete path', frame: rawControl({ type: 'delete', op: 1, path: '../etc/passwd', deletedAt: 1, old: null }), code: 'BAD_PATH', mentions: 'delete.path: invalid path "../etc/passwd": ".." segment' },
  { name: 'path not a string', frame: rawControl(withField(mkdir, 'path', ['a'])), code: 'BAD_MESSAGE', mentions: 'mkdir.path: expected a relative path string, got an array' },
  { name: 'bad path reported before other problems', frame: rawControl({ ...fileBegin, size: -1, path: '/x' }), code: 'BAD_PATH', mentions: 'fileBegin.path' },
  // fields
  { name: 'missing field', frame: rawControl(withField(fileBegin, 'hash', undefined)), code: 'BAD_MESSAGE', mentions: 'fileBegin.hash: missing' },
  { name: 'uppercase hash', frame: rawControl(withField(fileBegin, 'hash', HASH.toUpperCase())), code: 'BAD_MESSAGE', mentions: 'fileBegin.hash: expected null or an xxh64 hash' },
  { name: 'short hash', frame: rawControl(withField(fileBegin, 'hash', HASH.slice(1))), code: 'BAD_MESSAGE', mentions: 'fileBegin.hash' },
  { name: 'null hash on fileEnd', frame: rawControl({ type: 'fileEnd', op: 1, hash: null }), code: 'BAD_MESSAGE', mentions: 'fileEnd.hash: expected an xxh64 hash' },
  { name: 'fileEnd from the receiver', frame: rawControl({ type: 'fileEnd', op: 1, hash: HASH }), from: 'receiver', code: 'UNEXPECTED_MESSAGE', mentions: 'fileEnd' },
  { name: 'negative size', frame: rawControl(withField(fileBegin, 'size', -1)), code: 'BAD_MESSAGE', mentions: 'fileBegin.size: expected a non-negative safe integer, got -1' },
  { name: 'size as a string', frame: rawControl(withField(fileBegin, 'size', '12')), code: 'BAD_MESSAGE', mentions: 'fileBegin.size: expected a non-negative safe integer, got "12"' },
  { name: 'size over 2^53-1', frame: rawControl('{"type":"fileBegin","op":1,"path":"a","size":9007199254740993,"mtimeMs":1,"mode":0,"hash":"0123456789abcdef","old":null}'), code: 'BAD_MESSAGE', mentions: 'fileBegin.size' },
  { name: 'non-integer mode', frame: rawControl(withField(mkdir, 'mode', 420.5)), code: 'BAD_MESSAGE', mentions: 'mkdir.mode: expected an integer 0..0o7777' },
  { name: 'mode over 0o7777', frame: rawControl(withField(mkdir, 'mode', 0o10000)), code: 'BAD_MESSAGE', mentions: 'mkdir.mode' },
  { name: 'mtime Infinity (1e400)', frame: rawControl('{"type":"mkdir","op":1,"path":"a","mode":0,"mtimeMs":1e400,"old":null}'), code: 'BAD_MESSAGE', mentions: 'mkdir.mtimeMs: expected a safe integer' },
  { name: 'op over uint32', frame: rawControl(withField(mkdir, 'op', 2 ** 32)), code: 'BAD_MESSAGE', mentions: 'mkdir.op: expected an integer 0..4294967295' },
  { name: 'negative op', frame: rawControl(withField(mkdir, 'op', -1)), code: 'BAD_MESSAGE', mentions: 'mkdir.op' },
  { name: 'old not an object', frame: rawControl(withField(mkdir, 'old', 'dir')), code: 'BAD_MESSAGE', mentions: 'mkdir.old: expected null or an object' },
  { name: 'old file without hash', frame: rawControl(withField(mkdir, 'old', { kind: 'file', hash: null, deletedAt: null })), code: 'BAD_MESSAGE', mentions: 'mkdir.old.hash: expected an xxh64 hash for kind "file"' },
  { name: 'old dir with hash', frame: rawControl(withField(mkdir, 'old', { kind: 'dir', hash: HASH, deletedAt: null })), code: 'BAD_MESSAGE', mentions: 'mkdir.old.hash: expected null for kind "dir"' },
  { name: 'old unknown kind', frame: rawControl(withField(mkdir, 'old', { kind: 'fifo', hash: null, deletedAt: null })), code: 'BAD_MESSAGE', mentions: 'mkdir.old.kind: expected "file", "dir", "symlink" or "special", got "fifo"' },
  { name: 'special with a bad node', frame: rawControl({ type: 'special', op: 1, path: 'p', node: 'char 1', mode: 0o600, mtimeMs: 0, old: null }), code: 'BAD_MESSAGE', mentions: 'special.node: expected "fifo"' },
  { name: 'owner with a negative uid', frame: rawControl(withField(mkdir, 'owner', { uid: -1, gid: 0, user: null, group: null })), code: 'BAD_MESSAGE', mentions: 'mkdir.owner.uid' },
  { name: 'owner name with a colon', frame: rawControl(withField(mkdir, 'owner', { uid: 1, gid: 0, user: 'a:b', group: null })), code: 'BAD_MESSAGE', mentions: 'mkdir.owner.user' },
  { name: 'manifest special entry without a node', frame: page({ ...FILE_ENTRY, kind: 'special', hash: null, target: null }), from: 'receiver', code: 'BAD_MESSAGE', mentions: 'for kind "special"' },
  { name: 'missing old', frame: rawControl(withField(mkdir, 'old', undefined)), code: 'BAD_MESSAGE', mentions: 'mkdir.old: missing' },
  { name: 'empty symlink target', frame: rawControl(withField(symlink, 'target', '')), code: 'BAD_MESSAGE', mentions: 'symlink.target: invalid symlink target "": empty' },
  { name: 'symlink target with NUL', frame: rawControl(withField(symlink, 'target', 'a\0b')), code: 'BAD_MESSAGE', mentions: 'symlink.target' },
  { name: 'symlink target over 4096 bytes', frame: rawControl(withField(symlink, 'target', 'é'.repeat(2049))), code: 'BAD_MESSAGE', mentions: 'longer than 4096 bytes' },
  { name: 'file entry with target', frame: page({ ...FILE_ENTRY, target: 'x' }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[1].target: expected null for kind "file"' },
  { name: 'file entry without hash', frame: page({ ...FILE_ENTRY, hash: null }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[1].hash: expected an xxh64 hash for kind "file"' },
  { name: 'symlink entry without target', frame: page({ ...LINK_ENTRY, target: null }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[1].target: expected a symlink target' },
  { name: 'symlink entry with hash', frame: page({ ...LINK_ENTRY, hash: HASH }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[1].hash: expected null for kind "symlink"' },
  { name: 'dir entry with target', frame: page({ ...FILE_ENTRY, kind: 'dir', hash: null, target: 'x' }), code: 'BAD_MESSAGE', mentions: 'entries[1].target: expected null for kind "dir"' },
  { name: 'damaged not a boolean', frame: page({ ...FILE_ENTRY, damaged: 0 }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[1].damaged: expected true or false, got 0' },
  { name: 'entry not an object', frame: rawControl({ type: 'manifestPage', entries: ['a'], done: true }), code: 'BAD_MESSAGE', mentions: 'manifestPage.entries[0]: expected a manifest entry object' },
  {
    name: 'oversize page', frame: rawControl({ type: 'manifestPage', entries: Array.from({ length: MAX_PAGE_ENTRIES + 1 }, () => FILE_ENTRY), done: false }),
    code: 'BAD_MESSAGE', mentions: `manifestPage.entries: expected an array of 0..${MAX_PAGE_ENTRIES} manifest entries, got an array of ${MAX_PAGE_ENTRIES + 1}`,
  },
  { name: 'page without done', frame: rawControl({ type: 'manifestPage', entries: [] }), code: 'BAD_MESSAGE', mentions: 'manifestPage.done: missing' },
  { name: 'empty results', frame: rawControl({ type: 'results', items: [] }), code: 'BAD_MESSAGE', mentions: 'results.items: expected an array of 1..' },
  { name: 'failed result without code', frame: rawControl({ type: 'results', items: [{ op: 1, ok: false }] }), code: 'BAD_MESSAGE', mentions: 'results.items[0].code: missing' },
  { name: 'ok result with code', frame: rawControl({ type: 'results', items: [{ op: 1, ok: true, code: 'X' }] }), code: 'BAD_MESSAGE', mentions: 'results.items[0].code: not allowed' },
  { name: 'lowercase result code', frame: rawControl({ type: 'results', items: [{ op: 1, ok: false, code: 'oops' }] }), code: 'BAD_MESSAGE', mentions: 'results.items[0].code: expected an error code' },
  { name: 'no protocols', frame: rawControl({ type: 'hello', protocols: [], nonce: NONCE_A, receiverId: 'r' }), code: 'BAD_MESSAGE', mentions: 'hello.protocols: expected an array of 1..8' },
  { name: 'nine protocols', frame: rawControl({ type: 'hello', protocols: [1, 2, 3, 4, 5, 6, 7, 8, 9], nonce: NONCE_A, receiverId: 'r' }), code: 'BAD_MESSAGE', mentions: 'hello.protocols' },
  { name: 'protocol 0', frame: rawControl({ type: 'hello', protocols: [0], nonce: NONCE_A, receiverId: 'r' }), code: 'BAD_MESSAGE', mentions: 'hello.protocols[0]: expected a positive safe integer' },
  { name: 'short nonce', frame: rawControl({ type: 'hello', protocols: [1], nonce: NONCE_A.slice(4), receiverId: 'r' }), code: 'BAD_MESSAGE', mentions: 'hello.nonce: expected a base64 nonce of 32 bytes' },
  { name: 'non-canonical nonce', frame: rawControl({ type: 'hello', protocols: [1], nonce: `${NONCE_A.slice(0, 42)}t=`, receiverId: 'r' }), code: 'BAD_MESSAGE', mentions: 'hello.nonce' },
  { name: 'receiver id with a newline', frame: rawControl({ type: 'hello', protocols: [1], nonce: NONCE_A, receiverId: 'a\nb' }), code: 'BAD_MESSAGE', mentions: 'hello.receiverId' },
  { name: 'receiver id of 129 characters', frame: rawControl({ type: 'hello', protocols: [1], nonce: NONCE_A, receiverId: 'r'.repeat(129) }), code: 'BAD_MESSAGE', mentions: 'hello.receiverId' },
  { name: 'uppercase mac', frame: rawControl({ type: 'auth', protocol: 1, nonce: NONCE_A, mac: MAC.toUpperCase() }), code: 'BAD_MESSAGE', mentions: 'auth.mac: expected an HMAC-SHA256' },
  { name: 'short mac', frame: rawControl({ type: 'welcome', mac: MAC.slice(2), window: 1, maxInFlight: 1 }), code: 'BAD_MESSAGE', mentions: 'welcome.mac' },
  { name: 'zero window', frame: rawControl({ type: 'welcome', mac: MAC, window: 0, maxInFlight: 1 }), code: 'BAD_MESSAGE', mentions: 'welcome.window: expected a positive safe integer, got 0' },
  { name: 'zero credit', frame: rawControl({ type: 'credit', bytes: 0 }), from: 'receiver', code: 'BAD_MESSAGE', mentions: 'credit.bytes' },
  { name: 'watermark as a string', frame: rawControl({ type: 'heartbeat', now: 1, watermark: '5' }), code: 'BAD_MESSAGE', mentions: 'heartbeat.watermark: expected null or a safe integer' },
  { name: 'lowercase error code', frame: rawControl({ type: 'error', code: 'oops', message: '' }), code: 'BAD_MESSAGE', mentions: 'error.code' },
  { name: 'error message over 1024 characters', frame: rawControl({ type: 'error', code: 'X', message: 'm'.repeat(1025) }), code: 'BAD_MESSAGE', mentions: 'error.message: expected a string of at most 1024' },
  { name: 'several problems are counted', frame: rawControl({ type: 'mkdir', op: -1, path: 'a', mode: -1, mtimeMs: 'x', old: 1 }), code: 'BAD_MESSAGE', mentions: /^mkdir\.op: .* \(\+3 more\)$/ },
];

describe('bad frames', () => {
  for (const c of BAD) {
    test(c.name, () => {
      // Default sender: the role that sends a message of that type when it exists, else the agent.
      expectError(() => decodeFrame(c.frame, c.from ?? defaultFrom(c.frame)), c.code, c.mentions);
    });
  }

  test('a lower size limit applies before authentication', () => {
    const frame = rawControl({ type: 'manifestRequest', pad: 'x'.repeat(MAX_HANDSHAKE_FRAME_BYTES) });
    expectError(() => decodeFrame(frame, 'agent', MAX_HANDSHAKE_FRAME_BYTES), 'FRAME_TOO_LARGE', 'over the limit of 8192');
    expectError(() => decodeFrame(frame, 'agent'), 'BAD_MESSAGE', 'unknown key "pad"');
  });

  test('error messages stay short whatever the peer sends', () => {
    const err = expectError(() => decodeFrame(rawControl({ type: 'x'.repeat(100_000) }), 'agent'), 'BAD_MESSAGE', 'unknown message type');
    assert.ok(err.message.length < 200);
    const keys = expectError(() => decodeFrame(rawControl({ type: 'flush', id: 1, ['k'.repeat(10_000)]: 1, b: 2, c: 3, d: 4 }), 'agent'), 'BAD_MESSAGE', 'and 1 more');
    assert.ok(keys.message.length < 200);
  });

  test('validation never touches the input object', () => {
    const obj = { ...fileBegin, path: 'a/../b' };
    const before = JSON.stringify(obj);
    assert.throws(() => parseControl(obj, 'agent'), ProtocolError);
    assert.equal(JSON.stringify(obj), before);
  });
});

function defaultFrom(frame: Buffer): Role {
  if (frame[0] !== 0x01) return 'agent';
  try {
    const type: unknown = JSON.parse(frame.subarray(1).toString('utf8'))?.type;
    return typeof type === 'string' && RECEIVER_TO_AGENT.has(type as never) && !AGENT_TO_RECEIVER.has(type as never) ? 'receiver' : 'agent';
  } catch {
    return 'agent';
  }
}

describe('fuzz', () => {
  const SEED = 0x5eed_2026;
  const ITERATIONS = 2000;
  const seeds: ReadonlyArray<{ frame: Buffer; msg?: Record<string, unknown> }> = [
    ...VALID.map((v) => ({ frame: encodeControl(v.msg), msg: v.msg as unknown as Record<string, unknown> })),
    { frame: encodeChunk(3, 0, Buffer.from('hello world')) },
    { frame: encodeChunk(0xfffffffe, Number.MAX_SAFE_INTEGER - 100, Buffer.alloc(64, 1)) },
  ];
  const POOL: readonly unknown[] = [
    null, true, 0, -1, 1.5, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, '', 'a', '..', 'a/../b', '/x', 'a\0', '\ud800', HASH, MAC, NONCE_A,
    'x'.repeat(300), [], [1], [FILE_ENTRY], {}, { kind: 'file', hash: HASH, deletedAt: null }, { kind: 'dir', hash: HASH, deletedAt: null },
    { op: 1, ok: false }, { ...LINK_ENTRY, target: null },
  ];

  // What each mutation loop must reach, checked by the loop itself so that each test stands alone:
  // mutations that all died at the first byte would prove nothing.
  const BYTE_OUTCOMES = ['BAD_FRAME', 'BAD_JSON', 'BAD_MESSAGE', 'UNEXPECTED_MESSAGE', 'ok'];
  const FIELD_OUTCOMES = ['BAD_MESSAGE', 'BAD_PATH', 'UNEXPECTED_MESSAGE', 'ok'];

  /**
   * Decodes with both roles; anything but success or ProtocolError (with a known code) fails.
   * Counts each outcome in `outcomes`, which belongs to the calling test.
   */
  function check(frame: Buffer, label: string, outcomes: Map<string, number>): void {
    for (const from of ['agent', 'receiver'] as const) {
      let outcome = 'ok';
      try {
        const decoded = decodeFrame(frame, from);
        // Whatever is accepted must re-encode to something that decodes to the same value.
        const again = decoded.kind === 'control'
          ? decodeFrame(encodeControl(decoded.message), from)
          : decodeFrame(encodeChunk(decoded.transferId, decoded.offset, decoded.data), from);
        assert.deepEqual(again, decoded, label);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(err instanceof ProtocolError, `${label}: threw ${String(err)}`);
        assert.ok(CODES.has(err.code), `${label}: unexpected code ${err.code}: ${err.message}`);
        assert.ok(err.message.length <= 1024, label);
        outcome = err.code;
      } finally {
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }
  }

  function assertReached(outcomes: ReadonlyMap<string, number>, expected: readonly string[]): void {
    assert.deepEqual(expected.filter((o) => !outcomes.has(o)), [], `outcomes reached: ${JSON.stringify([...outcomes])}`);
  }

  test(`${ITERATIONS} byte-level mutations of valid frames`, () => {
    const outcomes = new Map<string, number>();
    const rand = prng(SEED);
    const pick = (n: number): number => Math.floor(rand() * n);
    for (let i = 0; i < ITERATIONS; i++) {
      const base = seeds[pick(seeds.length)]!.frame;
      const bytes = [...base];
      const edits = 1 + pick(4);
      for (let e = 0; e < edits; e++) {
        const at = pick(bytes.length + 1);
        switch (pick(6)) {
          case 0: bytes[at] = pick(256); break;
          case 1: bytes.splice(at, 0, pick(256)); break;
          case 2: bytes.splice(at, 1 + pick(8)); break;
          case 3: bytes.length = at; break;
          case 4: bytes[at] = [0x00, 0x01, 0x02, 0x22, 0x2f, 0x5c, 0x7f, 0x80, 0xc0, 0xff][pick(10)]!; break;
          default: bytes.splice(at, 0, ...bytes.slice(pick(bytes.length), pick(bytes.length))); break;
        }
      }
      check(Buffer.from(bytes), `byte mutation #${i}`, outcomes);
    }
    assertReached(outcomes, BYTE_OUTCOMES);
  });

  test(`${ITERATIONS} field-level mutations of valid messages`, () => {
    const outcomes = new Map<string, number>();
    const rand = prng(SEED + 1);
    const pick = (n: number): number => Math.floor(rand() * n);
    const controls = seeds.filter((s) => s.msg !== undefined);
    let accepted = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const msg: Record<string, unknown> = structuredClone(controls[pick(controls.length)]!.msg!);
      const keys = Object.keys(msg);
      const key = pick(5) === 0 ? `k${pick(3)}` : keys[pick(keys.length)]!;
      const value = pick(8) === 0 ? undefined : POOL[pick(POOL.length)];
      const mutated = withField(msg, key, value);
      const frame = rawControl(mutated);
      try {
        decodeFrame(frame, 'agent');
        accepted++;
      } catch {
        // counted below through check()
      }
      check(frame, `field mutation #${i}: ${key}=${JSON.stringify(value)?.slice(0, 40)}`, outcomes);
    }
    assert.ok(accepted > 0 && accepted < ITERATIONS, `some mutations stay valid (${accepted})`);
    assertReached(outcomes, FIELD_OUTCOMES);
  });

  test('between them the mutation loops are held to every outcome', () => {
    // (FRAME_TOO_LARGE needs megabytes: the table covers it.)
    const expected = [...CODES, 'ok'].filter((c) => c !== 'FRAME_TOO_LARGE').sort();
    assert.deepEqual([...new Set([...BYTE_OUTCOMES, ...FIELD_OUTCOMES])].sort(), expected);
  });
});
