/**
 * The receiver session's group commit over a real WebSocket pair on 127.0.0.1 (no handshake: the
 * session starts after it). A lone file is committed as soon as it is sealed, not after the
 * commit delay: with a delay of a minute, its result and the file on disk come within seconds.
 * A burst (frames keep coming) still commits as one group. A transfer the agent hashes while it
 * sends resumes from a kept partial and completes on its fileEnd. A group commits beside the
 * session's queue, which goes on receiving, and an op on one of its paths waits for it.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { Manifest } from '../../src/manifest/manifest.js';
import { encodeChunk } from '../../src/protocol/codec.js';
import { RESUMABLE_MIN_BYTES } from '../../src/protocol/limits.js';
import type { ControlMessage } from '../../src/protocol/messages.js';
import { TreeWriter } from '../../src/receiver/apply.js';
import { ConfinedRoot } from '../../src/confined/root.js';
import { PartialStore } from '../../src/receiver/partials.js';
import { ReceiverSession, type SessionLimits } from '../../src/receiver/session.js';
import { createHasher, type FileHasher } from '../../src/scan/hash.js';
import { Connection } from '../../src/transport/connection.js';
import { WebSocket, WebSocketServer } from '../../src/transport/ws.js';

let dir: string;
let hasher: FileHasher;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warmsync-session-'));
  hasher = await createHasher();
});
after(() => rm(dir, { recursive: true, force: true }));

interface Pair { agent: Connection; received: ControlMessage[]; session: Promise<void>; manifest: Manifest; close(): Promise<void> }

/** A session on a fresh root with a one-minute commit delay (unless `limits` says), and the agent's end of the socket. */
async function openSession(name: string, limits: Partial<SessionLimits> = {}): Promise<Pair & { root: string }> {
  const root = join(dir, name);
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const accepted = new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  await new Promise<void>((resolve, reject) => client.once('open', resolve).once('error', reject));
  const receiverConn = new Connection(await accepted, 'agent');
  const agent = new Connection(client, 'receiver');
  receiverConn.markAuthenticated();
  agent.markAuthenticated();
  const manifest = Manifest.open(join(root, '.warmsync'));
  const tree = ConfinedRoot.open(root, '.warmsync');
  const state = ConfinedRoot.open(join(root, '.warmsync'));
  const partials = new PartialStore(state, 'partial');
  partials.ensure(); // as the receiver does at start
  const session = new ReceiverSession({
    conn: receiverConn, manifest, root: tree, writer: new TreeWriter(tree, state, 'displaced', () => undefined),
    hasher, log: createLogger('error'), now: Date.now, partials,
    limits: { maxInFlight: 64, commitOps: 512, commitBytes: 64 << 20, commitDelayMs: 60_000, ...limits },
  }).run();
  const received: ControlMessage[] = [];
  agent.onFrame((frame) => {
    if (frame.kind === 'control') received.push(frame.message);
  });
  return {
    root, agent, received, session, manifest,
    async close() {
      client.close();
      await session;
      manifest.close();
      tree.close();
      state.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function sendFile(agent: Connection, op: number, path: string, content: Buffer): Promise<void> {
  agent.send({ type: 'fileBegin', op, path, size: content.byteLength, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: hasher.hashBytes(content), old: null });
  return agent.sendChunkFrame(encodeChunk(op, 0, content));
}

async function resultsFor(received: ControlMessage[], ops: number, withinMs: number): Promise<number> {
  const started = Date.now();
  const answered = (): number => received.reduce((n, m) => n + (m.type === 'results' ? m.items.length : 0), 0);
  while (answered() < ops && Date.now() - started < withinMs) await new Promise((r) => setTimeout(r, 5));
  assert.equal(answered(), ops, `${ops} result(s) within ${withinMs} ms`);
  return Date.now() - started;
}

test('a lone file is committed once sealed, long before the commit delay', async () => {
  const s = await openSession('lone');
  try {
    const content = Buffer.from('lone file content\n');
    await sendFile(s.agent, 1, 'a.txt', content);
    const tookMs = await resultsFor(s.received, 1, 10_000);
    assert.ok(tookMs < 10_000);
    assert.deepEqual(await readFile(join(s.root, 'a.txt')), content);
    assert.equal(s.manifest.get('a.txt')?.hash, hasher.hashBytes(content));
    const results = s.received.filter((m) => m.type === 'results');
    assert.deepEqual(results.flatMap((m) => (m.type === 'results' ? m.items : [])), [{ op: 1, ok: true }]);
  } finally {
    await s.close();
  }
});

test('files sent back to back are committed together as one group', async () => {
  const s = await openSession('burst');
  try {
    const files = Array.from({ length: 40 }, (_, i) => Buffer.from(`file ${i}\n`.repeat(i + 1)));
    await Promise.all(files.map((content, i) => sendFile(s.agent, i + 1, `f${i}.txt`, content)));
    await resultsFor(s.received, files.length, 10_000);
    for (const [i, content] of files.entries()) assert.deepEqual(await readFile(join(s.root, `f${i}.txt`)), content);
    // One commit sends one results message for its group; a commit per file would send 40.
    const messages = s.received.filter((m) => m.type === 'results').length;
    assert.ok(messages < files.length / 2, `${messages} results messages for ${files.length} files`);
  } finally {
    await s.close();
  }
});

/** Sends a resumable fileBegin without a hash (the agent hashes while sending) and waits for resumeFrom. */
async function beginUnhashed(s: Pair, op: number, path: string, size: number): Promise<number> {
  s.agent.send({ type: 'fileBegin', op, path, size, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: null, old: null, resumable: true });
  const started = Date.now();
  let answer: ControlMessage | undefined;
  while ((answer = s.received.find((m) => m.type === 'resumeFrom' && m.op === op)) === undefined && Date.now() - started < 10_000) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(answer?.type === 'resumeFrom', `resumeFrom for op ${op}`);
  return answer.offset;
}

async function sendChunks(agent: Connection, op: number, content: Buffer, from: number, to: number): Promise<void> {
  for (let at = from; at < to; at += 1 << 20) await agent.sendChunkFrame(encodeChunk(op, at, content.subarray(at, Math.min(to, at + (1 << 20)))));
}

test('a transfer hashed while sent: cut off, it resumes from what was kept and lands on its fileEnd; complete but for its fileEnd, nothing is kept', async () => {
  const content = Buffer.alloc(RESUMABLE_MIN_BYTES, 7);
  for (let i = 0; i < content.length; i += 4096) content.writeUInt32BE(i, i);
  const partials = (root: string): Promise<string[]> => readdir(join(root, '.warmsync', 'partial')).catch(() => []);

  const first = await openSession('unhashed');
  assert.equal(await beginUnhashed(first, 1, 'big.bin', content.length), 0);
  await sendChunks(first.agent, 1, content, 0, 3 << 20);
  await first.close();
  assert.equal((await partials(first.root)).length, 1, 'the first 3 MiB were kept');

  const second = await openSession('unhashed');
  try {
    const offset = await beginUnhashed(second, 1, 'big.bin', content.length);
    assert.equal(offset, 3 << 20, 'resumed where the first connection stopped');
    await sendChunks(second.agent, 1, content, offset, content.length);
    second.agent.send({ type: 'fileEnd', op: 1, hash: hasher.hashBytes(content) });
    await resultsFor(second.received, 1, 20_000);
    assert.ok((await readFile(join(second.root, 'big.bin'))).equals(content));
    assert.equal(second.manifest.get('big.bin')?.hash, hasher.hashBytes(content));
  } finally {
    await second.close();
  }

  const third = await openSession('unhashed-no-end');
  assert.equal(await beginUnhashed(third, 1, 'big.bin', content.length), 0);
  await sendChunks(third.agent, 1, content, 0, content.length);
  await third.close();
  assert.deepEqual(await partials(third.root), [], 'a complete file is no partial');
  assert.deepEqual((await readdir(third.root)).filter((n) => n.startsWith('.warmsync-tmp.')), [], 'its temp file was removed');
});

test('a file whose directories were never made (their mkdir failed, say) makes them, each known to the manifest as damaged until its mkdir comes', async () => {
  // Without a row, such a directory would outlive the source's: the agent's next reconciliation
  // would send a tombstone for the file and nothing for the directory, kept on the standby for good.
  const s = await openSession('implicit-parents');
  try {
    const content = Buffer.from('below directories nobody made\n');
    await sendFile(s.agent, 1, 'a/b/f.txt', content);
    await resultsFor(s.received, 1, 10_000);
    assert.deepEqual(s.received.flatMap((m) => (m.type === 'results' ? m.items : [])), [{ op: 1, ok: true }]);
    assert.deepEqual(await readFile(join(s.root, 'a/b/f.txt')), content);
    for (const dir of ['a', 'a/b']) {
      const row = s.manifest.get(dir);
      assert.deepEqual([row?.kind, row?.damaged, row?.deletedAt], ['dir', true, null], `${dir}: a damaged dir row`);
    }
    assert.equal(s.manifest.get('a/b/f.txt')?.damaged, false);
    // The directory's own mkdir, planned when the agent did not know of it (old: null), then lands
    // on the damaged row, as a resend would: no CONFLICT (each one cost the agent a full pass).
    s.agent.send({ type: 'mkdir', op: 2, path: 'a', mode: 0o750, mtimeMs: 1_700_000_000_000, old: null });
    s.agent.send({ type: 'flush', id: 1 });
    await resultsFor(s.received, 2, 10_000);
    assert.deepEqual(s.received.flatMap((m) => (m.type === 'results' ? m.items : [])).at(-1), { op: 2, ok: true });
    assert.deepEqual([s.manifest.get('a')?.damaged, s.manifest.get('a')?.mode], [false, 0o750]);
  } finally {
    await s.close();
  }
});

/** Every file below `root`, by relative path, with its content. */
async function contentsBelow(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out[join(entry.parentPath, entry.name).slice(root.length + 1)] = await readFile(join(entry.parentPath, entry.name), 'utf8');
  }
  return out;
}

test('a file put at a path the manifest does not know while the agent sends that path is moved aside at the install, never overwritten', async () => {
  const s = await openSession('raced-unknown');
  try {
    const content = Buffer.from('from the agent\n'.repeat(100));
    s.agent.send({ type: 'fileBegin', op: 1, path: 'd/f.txt', size: content.byteLength, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: hasher.hashBytes(content), old: null });
    await s.agent.sendChunkFrame(encodeChunk(1, 0, content.subarray(0, 100)));
    // The transfer is open (its temp file is in d/): now someone writes the final name.
    const started = Date.now();
    while (!(await readdir(join(s.root, 'd')).catch(() => [])).some((n) => n.startsWith('.warmsync-tmp.')) && Date.now() - started < 10_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await writeFile(join(s.root, 'd', 'f.txt'), 'a local user\'s file\n');
    await s.agent.sendChunkFrame(encodeChunk(1, 100, content.subarray(100)));
    await resultsFor(s.received, 1, 10_000);
    assert.deepEqual(s.received.flatMap((m) => (m.type === 'results' ? m.items : [])), [{ op: 1, ok: true }]);
    assert.deepEqual(await readFile(join(s.root, 'd', 'f.txt')), content);
    const displaced = await contentsBelow(join(s.root, '.warmsync', 'displaced'));
    assert.deepEqual(Object.entries(displaced).map(([rel, text]) => [rel.slice(rel.indexOf('/') + 1), text]), [['d/f.txt', 'a local user\'s file\n']]);
  } finally {
    await s.close();
  }
});

test('a directory standing at a path the manifest records as a file is moved aside when the file is replaced, with its rows', async () => {
  const s = await openSession('dir-at-file');
  try {
    const first = Buffer.from('first version\n');
    await sendFile(s.agent, 1, 'x', first);
    await resultsFor(s.received, 1, 10_000);
    // Drift on the standby: the file became a directory holding a file (recorded too, as a stale row would be).
    await rm(join(s.root, 'x'));
    await mkdir(join(s.root, 'x'));
    await writeFile(join(s.root, 'x', 'inside'), 'inside\n');
    s.manifest.transaction(() => s.manifest.recordPresent({ path: 'x/inside', kind: 'file', size: 7, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: hasher.hashBytes(Buffer.from('inside\n')), target: null, owner: null }, Date.now()));
    const second = Buffer.from('second version\n');
    s.agent.send({ type: 'fileBegin', op: 2, path: 'x', size: second.byteLength, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: hasher.hashBytes(second), old: { kind: 'file', hash: hasher.hashBytes(first), deletedAt: null } });
    await s.agent.sendChunkFrame(encodeChunk(2, 0, second));
    await resultsFor(s.received, 2, 10_000);
    assert.deepEqual(s.received.flatMap((m) => (m.type === 'results' ? m.items : [])).at(-1), { op: 2, ok: true });
    assert.deepEqual(await readFile(join(s.root, 'x')), second);
    assert.equal(s.manifest.get('x/inside'), undefined, 'the moved directory\'s rows are gone');
    const displaced = await contentsBelow(join(s.root, '.warmsync', 'displaced'));
    assert.deepEqual(Object.entries(displaced).map(([rel, text]) => [rel.slice(rel.indexOf('/') + 1), text]), [['x/inside', 'inside\n']]);
  } finally {
    await s.close();
  }
});

test('a group commits while the next frames are received; an op on a path of the committing group waits for it', async () => {
  const s = await openSession('pipelined', { commitOps: 4 });
  // The test holds the manifest's write lock: the group's commit stops at its first manifest write
  // (the files go at the root, whose directory needs no row made first).
  let unlock = (): void => undefined;
  const locked = s.manifest.withWriteLock(() => new Promise<void>((resolve) => { unlock = resolve; }));
  try {
    const files = Array.from({ length: 4 }, (_, i) => Buffer.from(`group file ${i}\n`.repeat(50)));
    await Promise.all(files.map((content, i) => sendFile(s.agent, i + 1, `f${i}.txt`, content)));
    // The fourth file fills the group (commitOps 4), whose commit now waits for the lock. The
    // session still takes frames: the credit for all four files' bytes comes back (a commit in
    // the session's queue would hold their last frame, and the credit, until it ended).
    const bytes = files.reduce((n, f) => n + f.byteLength, 0);
    const credited = (): number => s.received.reduce((n, m) => n + (m.type === 'credit' ? m.bytes : 0), 0);
    const started = Date.now();
    while (credited() < bytes && Date.now() - started < 5_000) await new Promise((r) => setTimeout(r, 5));
    assert.equal(credited(), bytes, 'credit for every byte received while the group waits to commit');
    // A new version of a file of that group, based on it: admitted only once the group is recorded.
    const update = Buffer.from('second version\n');
    s.agent.send({
      type: 'fileBegin', op: 5, path: 'f0.txt', size: update.byteLength, mtimeMs: 1_700_000_000_000, mode: 0o644, hash: hasher.hashBytes(update),
      old: { kind: 'file', hash: hasher.hashBytes(files[0] as Buffer), deletedAt: null },
    });
    await s.agent.sendChunkFrame(encodeChunk(5, 0, update));
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(s.received.filter((m) => m.type === 'results'), [], 'nothing is reported before the group is recorded');
    unlock();
    await resultsFor(s.received, 5, 10_000);
    assert.deepEqual(s.received.flatMap((m) => (m.type === 'results' ? m.items : [])).sort((a, b) => a.op - b.op), [1, 2, 3, 4, 5].map((op) => ({ op, ok: true })));
    assert.deepEqual(await readFile(join(s.root, 'f0.txt')), update);
    assert.equal(s.manifest.get('f0.txt')?.hash, hasher.hashBytes(update));
    for (const i of [1, 2, 3]) assert.deepEqual(await readFile(join(s.root, `f${i}.txt`)), files[i]);
  } finally {
    unlock();
    await locked;
    await s.close();
  }
});
