/**
 * Named, valid protocol fixtures shared by the protocol tests: one message of every type (with the
 * role that sends it) and raw-frame builders that bypass the encoder, to feed the decoder bad bytes.
 */
import type { ControlMessage, WireManifestEntry } from '../../../src/protocol/messages.js';
import type { Role } from '../../../src/protocol/validate.js';

export const HASH = '0123456789abcdef';
export const NONCE_A = 'q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=';
export const NONCE_B = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
export const MAC = 'ab'.repeat(32);

export const FILE_ENTRY: WireManifestEntry = {
  path: 'filestore/ab/ab12', kind: 'file', size: 1234, mtimeMs: 1764170000000, mode: 0o644,
  hash: HASH, target: null, deletedAt: null, damaged: false,
};
export const DIR_ENTRY: WireManifestEntry = {
  path: 'filestore/ab', kind: 'dir', size: 0, mtimeMs: -5000, mode: 0o755,
  hash: null, target: null, deletedAt: 1764170000500, damaged: false,
};
export const LINK_ENTRY: WireManifestEntry = {
  path: 'etc/current', kind: 'symlink', size: 13, mtimeMs: 0, mode: 0o777,
  hash: null, target: '/opt/jfrog/x/', damaged: true, deletedAt: null,
};

/** One valid message of every type, each with the role that sends it. */
export const VALID: ReadonlyArray<{ readonly name: string; readonly from: Role; readonly msg: ControlMessage }> = [
  { name: 'hello', from: 'receiver', msg: { type: 'hello', protocols: [1, 2], nonce: NONCE_A, receiverId: 'standby-1 (dc2)' } },
  { name: 'auth', from: 'agent', msg: { type: 'auth', protocol: 2, nonce: NONCE_B, mac: MAC } },
  { name: 'welcome', from: 'receiver', msg: { type: 'welcome', mac: MAC, window: 8 * 1024 * 1024, maxInFlight: 64 } },
  { name: 'welcome offering zstd', from: 'receiver', msg: { type: 'welcome', mac: MAC, window: 8 * 1024 * 1024, maxInFlight: 64, compression: ['zstd'] } },
  { name: 'welcome offering a method this agent does not know', from: 'receiver', msg: { type: 'welcome', mac: MAC, window: 1, maxInFlight: 1, compression: ['zstd', 'lz4-x'] } },
  { name: 'error from agent', from: 'agent', msg: { type: 'error', code: 'AUTH_FAILED', message: 'wrong token' } },
  { name: 'error from receiver', from: 'receiver', msg: { type: 'error', code: 'BAD_PATH', message: '' } },
  { name: 'manifestRequest', from: 'agent', msg: { type: 'manifestRequest' } },
  { name: 'mkdir', from: 'agent', msg: { type: 'mkdir', op: 0, path: 'data/new', mode: 0o755, mtimeMs: 1764170000000, old: null } },
  {
    name: 'symlink', from: 'agent',
    msg: { type: 'symlink', op: 1, path: 'etc/link', target: '../x/ünï', mtimeMs: -1, old: { kind: 'symlink', hash: null, deletedAt: null } },
  },
  {
    name: 'setMeta', from: 'agent',
    msg: { type: 'setMeta', op: 2, path: 'a', mode: 0o7777, mtimeMs: 5, old: { kind: 'file', hash: HASH, deletedAt: 1764170000000 } },
  },
  {
    name: 'fileBegin', from: 'agent',
    msg: { type: 'fileBegin', op: 0xffffffff, path: 'filestore/ab/ab12', size: Number.MAX_SAFE_INTEGER, mtimeMs: 1, mode: 0o600, hash: HASH, old: null },
  },
  {
    name: 'setMeta with an owner (a chown alone)', from: 'agent',
    msg: {
      type: 'setMeta', op: 6, path: 'back\\slash', mode: 0o4755, mtimeMs: 5, owner: { uid: 1234, gid: 4321, user: 'artifactory', group: null },
      old: { kind: 'file', hash: HASH, deletedAt: null },
    },
  },
  { name: 'special FIFO', from: 'agent', msg: { type: 'special', op: 8, path: 'run/fifo', node: 'fifo', mode: 0o600, mtimeMs: 1, old: null } },
  {
    name: 'special device, owned', from: 'agent',
    msg: {
      type: 'special', op: 9, path: 'dev/null', node: 'char 1:3', mode: 0o666, mtimeMs: 1, owner: { uid: 0, gid: 0, user: 'root', group: 'root' },
      old: { kind: 'special', hash: null, deletedAt: null },
    },
  },
  { name: 'mkdir with an unknown owner', from: 'agent', msg: { type: 'mkdir', op: 10, path: 'd', mode: 0o2775, mtimeMs: 1, owner: null, old: null } },
  { name: 'fileBegin resumable', from: 'agent', msg: { type: 'fileBegin', op: 4, path: 'big.bin', size: 1 << 30, mtimeMs: 1, mode: 0o644, hash: HASH, old: null, resumable: true } },
  { name: 'fileBegin, hash to follow', from: 'agent', msg: { type: 'fileBegin', op: 5, path: 'data/new.bin', size: 3 << 20, mtimeMs: 1, mode: 0o644, hash: null, old: null } },
  { name: 'fileEnd', from: 'agent', msg: { type: 'fileEnd', op: 5, hash: HASH } },
  { name: 'fileBegin empty file', from: 'agent', msg: { type: 'fileBegin', op: 3, path: 'empty', size: 0, mtimeMs: 1, mode: 0, hash: 'ef46db3751d8e999', old: null } },
  { name: 'abort', from: 'agent', msg: { type: 'abort', op: 7 } },
  {
    name: 'delete', from: 'agent',
    msg: { type: 'delete', op: 4, path: 'filestore/ab/ab12', deletedAt: 1764170000000, old: { kind: 'file', hash: HASH, deletedAt: null } },
  },
  { name: 'heartbeat', from: 'agent', msg: { type: 'heartbeat', now: 1764170000000, watermark: null } },
  { name: 'heartbeat with watermark', from: 'agent', msg: { type: 'heartbeat', now: 1764170000000, watermark: 1764169990000 } },
  {
    name: 'heartbeat from a live agent, feed incomplete, deletions held', from: 'agent',
    msg: { type: 'heartbeat', now: 1764170000000, watermark: 1764169990000, feedIncomplete: { since: 1764169990001, reason: 'inotify queue overflow' }, deletionsHeld: 48 },
  },
  {
    name: 'heartbeat from a live agent with --db-primary', from: 'agent',
    msg: {
      type: 'heartbeat', now: 1764170000000, watermark: 1764169990000, feedIncomplete: null, deletionsHeld: 0,
      db: { system: '7441829165224409123', positions: [{ lsn: '0/3000148', at: 1764169989900 }, { lsn: 'A/FF0000A8', at: 1764169990100 }], clock: { offsetMs: -0.25, boundMs: 2, at: 1764169990100, samples: 16 } },
    },
  },
  { name: 'heartbeat from a live agent, DB clock not measured yet', from: 'agent', msg: { type: 'heartbeat', now: 1764170000000, watermark: null, db: { system: '1', positions: [], clock: null } } },
  { name: 'heartbeat from a live agent, all well', from: 'agent', msg: { type: 'heartbeat', now: 1764170000000, watermark: 1764169990000, feedIncomplete: null, deletionsHeld: 0 } },
  { name: 'flush', from: 'agent', msg: { type: 'flush', id: 9 } },
  { name: 'manifestPage', from: 'receiver', msg: { type: 'manifestPage', entries: [FILE_ENTRY, DIR_ENTRY, LINK_ENTRY], done: false } },
  {
    name: 'manifestPage with owners and a special file', from: 'receiver',
    msg: {
      type: 'manifestPage', done: true, entries: [
        { ...FILE_ENTRY, owner: { uid: 1234, gid: 4321, user: null, group: null } },
        { ...DIR_ENTRY, owner: null },
        { path: 'run/sock', kind: 'special', size: 0, mtimeMs: 0, mode: 0o755, hash: null, target: 'socket', damaged: false, deletedAt: null, owner: { uid: 0, gid: 0, user: 'root', group: 'root' } },
      ],
    },
  },
  { name: 'manifestPage empty', from: 'receiver', msg: { type: 'manifestPage', entries: [], done: true } },
  {
    name: 'results', from: 'receiver',
    msg: { type: 'results', items: [{ op: 1, ok: true }, { op: 2, ok: false, code: 'CONFLICT', message: 'modification detected' }, { op: 3, ok: false, code: 'APPLY_FAILED' }] },
  },
  { name: 'credit', from: 'receiver', msg: { type: 'credit', bytes: 1048576 } },
  { name: 'flushed', from: 'receiver', msg: { type: 'flushed', id: 9 } },
  { name: 'resumeFrom', from: 'receiver', msg: { type: 'resumeFrom', op: 7, offset: 16 << 20 } },
];

/** A control frame around arbitrary JSON text or value, without any validation. */
export function rawControl(body: unknown): Buffer {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return Buffer.concat([Buffer.from([0x01]), Buffer.from(text, 'utf8')]);
}

/** A chunk frame with an explicit 64-bit offset (as two words) and `length` bytes of data. */
export function rawChunk(transferId: number, offsetHigh: number, offsetLow: number, length: number): Buffer {
  const frame = Buffer.alloc(13 + length, 0x5a);
  frame[0] = 0x02;
  frame.writeUInt32BE(transferId, 1);
  frame.writeUInt32BE(offsetHigh, 5);
  frame.writeUInt32BE(offsetLow, 9);
  return frame;
}

/** A zchunk frame (kind 0x03) claiming `rawLength` bytes, with `payload` as its compressed data. */
export function rawZchunk(transferId: number, offsetHigh: number, offsetLow: number, rawLength: number, payload: Buffer): Buffer {
  const frame = Buffer.concat([rawChunk(transferId, offsetHigh, offsetLow, 4), payload]);
  frame[0] = 0x03;
  frame.writeUInt32BE(rawLength, 13);
  return frame;
}

/** A copy of `msg` with `key` set to `value` (or removed when value is undefined), for bad cases. */
export function withField(msg: object, key: string, value: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...msg };
  if (value === undefined) delete copy[key];
  else copy[key] = value;
  return copy;
}

/** Deterministic PRNG (mulberry32) so that fuzz failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
