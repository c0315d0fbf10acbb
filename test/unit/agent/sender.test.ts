/**
 * Sender.transfer against a scripted receiver on a real WebSocket: files below SYNC_READ_MAX_BYTES
 * take the synchronous path (one shared frame), larger ones the pooled asynchronous one. Both must
 * deliver the exact bytes, and both must refuse a file that changed since the scan (FILE_CHANGED),
 * before its last byte goes out; a small file that fails gives its credit back. A file replaced by a
 * symlink to a secret or by a FIFO is neither followed nor waited on (FILE_CHANGED, nothing begun).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, statSync, truncateSync, utimesSync } from 'node:fs';
import { appendFile, mkdtemp, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { PassSending } from '../../../src/agent/pass-sending.js';
import { Sender, type HashedWhileSent, type OpFailure, type SendReport } from '../../../src/agent/sender.js';
import { wholeMs, type Entry } from '../../../src/entry.js';
import type { Change } from '../../../src/plan/diff.js';
import type { AgentMessage } from '../../../src/protocol/messages.js';
import { SYNC_READ_MAX_BYTES, createHasher } from '../../../src/scan/hash.js';
import { SourceRoot } from '../../../src/scan/openfile.js';
import { Connection } from '../../../src/transport/connection.js';

/** What the scripted receiver saw of one op. */
interface Seen {
  begin: Extract<AgentMessage, { type: 'fileBegin' }>;
  data: Buffer[];
  aborted: boolean;
  /** The fileEnd's hash, and how many bytes had arrived when it came. */
  end: { hash: string; bytesBefore: number } | null;
}

/**
 * A receiver that takes every file: credits each chunk and answers ok once all bytes arrived (or at
 * fileBegin, for an empty file). Records what arrived per op. Directories, metadata and tombstones
 * it answers ok at once, their paths in `order` as they came.
 */
function scriptReceiver(conn: Connection, seen: Map<number, Seen>, order?: string[]): void {
  const received = new Map<number, number>();
  conn.onFrame((frame) => {
    if (frame.kind === 'chunk') {
      const s = seen.get(frame.transferId);
      assert.ok(s !== undefined, 'a chunk after its fileBegin');
      s.data.push(Buffer.from(frame.data));
      const total = (received.get(frame.transferId) ?? 0) + frame.data.length;
      received.set(frame.transferId, total);
      conn.send({ type: 'credit', bytes: frame.data.length });
      if (total === s.begin.size) conn.send({ type: 'results', items: [{ op: frame.transferId, ok: true }] });
      return;
    }
    const msg = frame.message as AgentMessage;
    if (msg.type === 'fileBegin') {
      seen.set(msg.op, { begin: msg, data: [], aborted: false, end: null });
      if (msg.size === 0) conn.send({ type: 'results', items: [{ op: msg.op, ok: true }] });
    } else if (msg.type === 'fileEnd') {
      const s = seen.get(msg.op);
      assert.ok(s !== undefined, 'a fileEnd after its fileBegin');
      s.end = { hash: msg.hash, bytesBefore: Buffer.concat(s.data).length };
    } else if (msg.type === 'abort') {
      const s = seen.get(msg.op);
      if (s !== undefined) s.aborted = true;
      conn.send({ type: 'results', items: [{ op: msg.op, ok: false, code: 'ABORTED' }] });
    } else if (msg.type === 'flush') {
      conn.send({ type: 'flushed', id: msg.id });
    } else if (msg.type === 'mkdir' || msg.type === 'delete' || msg.type === 'setMeta') {
      order?.push(msg.path);
      conn.send({ type: 'results', items: [{ op: msg.op, ok: true }] });
    }
  });
}

describe('Sender file transfers', () => {
  let dir: string;
  let wss: WebSocketServer;
  let url: string;
  const sockets: WebSocket[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-sender-'));
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await once(wss, 'listening');
    url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const s of [...sockets, ...wss.clients]) s.terminate();
    wss.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A Sender on a fresh connection to a scripted receiver, and what that receiver saw. */
  async function connect(window: number): Promise<{ sender: Sender; seen: Map<number, Seen>; order: string[]; cut: () => void }> {
    const seen = new Map<number, Seen>();
    const order: string[] = [];
    wss.once('connection', (ws) => {
      const conn = new Connection(ws, 'agent');
      conn.markAuthenticated();
      scriptReceiver(conn, seen, order);
    });
    const ws = new WebSocket(url, { perMessageDeflate: false });
    sockets.push(ws);
    await once(ws, 'open');
    const conn = new Connection(ws, 'receiver');
    conn.markAuthenticated();
    return { sender: new Sender(conn, { window, maxInFlight: 8 }, new SourceRoot(dir), await createHasher()), seen, order, cut: () => ws.terminate() };
  }

  /** Writes a file and returns the Entry a scan would have listed for it. */
  async function scanned(name: string, content: Buffer): Promise<Entry> {
    await writeFile(join(dir, name), content);
    await utimes(join(dir, name), 1_700_000_000, 1_700_000_000);
    const st = await stat(join(dir, name));
    return { path: name, kind: 'file', size: st.size, mtimeMs: wholeMs(st.mtimeMs), mode: 0o644, hash: '0123456789abcdef', target: null };
  }

  const created = (entry: Entry): Change => ({ path: entry.path, old: null, new: entry });

  /** Sends `changes` as a full pass does (PassSending): the report, each change's outcome in order, and the hashes made on the way. */
  async function sendAll(sender: Sender, changes: readonly Change[]): Promise<{ report: SendReport; outcomes: (OpFailure | null)[]; hashed: HashedWhileSent[] }> {
    const applied = new Set<string>();
    const hashed: HashedWhileSent[] = [];
    const sending = new PassSending(sender, { onHashed: (row) => hashed.push(row), onApplied: (change) => applied.add(change.path) });
    for (const change of changes) sending.send(change, Date.now());
    const report = await sending.finish();
    const outcomes = changes.map((c) => (applied.has(c.path) ? null : report.failures.find((f) => f.path === c.path) ?? assert.fail(`${c.path}: neither applied nor failed`)));
    return { report, outcomes, hashed };
  }
  const sizes: [string, number][] = [
    ['empty', 0],
    ['just under the threshold (synchronous)', SYNC_READ_MAX_BYTES - 1],
    ['at the threshold (asynchronous, one chunk)', SYNC_READ_MAX_BYTES],
    ['of several chunks', 2 * SYNC_READ_MAX_BYTES + 12_345],
  ];

  it('sends the exact bytes of each file, whichever path it takes', async () => {
    const { sender, seen } = await connect(32 << 20);
    const contents = sizes.map(([, size]) => randomBytes(size));
    const entries = await Promise.all(sizes.map((_, i) => scanned(`whole-${i}`, contents[i] as Buffer)));
    const { report, outcomes } = await sendAll(sender, entries.map(created));
    assert.deepEqual(outcomes, entries.map(() => null));
    assert.equal(report.bytesSent, contents.reduce((n, c) => n + c.length, 0));
    for (const [i, entry] of entries.entries()) {
      const s = [...seen.values()].find((v) => v.begin.path === entry.path);
      assert.ok(s !== undefined, `${sizes[i]?.[0]}: fileBegin sent`);
      assert.ok(Buffer.concat(s.data).equals(contents[i] as Buffer), `${sizes[i]?.[0]}: the same bytes`);
    }
  });

  it('hashes a file the scan did not, from the bytes it sends: in fileBegin when small, in fileEnd after the last chunk when not', async () => {
    const { sender, seen } = await connect(32 << 20);
    const hasher = await createHasher();
    const cases = sizes.filter(([, size]) => size > 0);
    const contents = cases.map(([, size]) => randomBytes(size));
    const entries = await Promise.all(cases.map(async (_, i) => ({ ...(await scanned(`unhashed-${i}`, contents[i] as Buffer)), hash: null })));
    const { outcomes, hashed } = await sendAll(sender, entries.map(created));
    assert.deepEqual(outcomes, entries.map(() => null));
    for (const [i, entry] of entries.entries()) {
      const what = cases[i]?.[0];
      const content = contents[i] as Buffer;
      const s = [...seen.values()].find((v) => v.begin.path === entry.path);
      assert.ok(s !== undefined, `${what}: fileBegin sent`);
      const expected = hasher.hashBytes(content);
      if (content.length < SYNC_READ_MAX_BYTES) {
        assert.equal(s.begin.hash, expected, `${what}: the hash goes in fileBegin`);
        assert.equal(s.end, null, `${what}: no fileEnd`);
      } else {
        assert.equal(s.begin.hash, null, `${what}: fileBegin without a hash`);
        assert.deepEqual(s.end, { hash: expected, bytesBefore: content.length }, `${what}: fileEnd after every byte, with the hash`);
      }
      const st = await stat(join(dir, entry.path));
      const noted = hashed.find((h) => h.path === entry.path);
      assert.deepEqual(noted && { ...noted, hashedAt: 0 }, { path: entry.path, hash: expected, size: content.length, mtimeMs: entry.mtimeMs, ino: st.ino, hashedAt: 0 });
    }
  });

  const changes: [string, (abs: string) => void][] = [
    ['grew', (abs) => appendFileSync(abs, 'x')],
    ['shrank', (abs) => truncateSync(abs, statSync(abs).size - 1)],
    ['kept its size but got a new mtime', (abs) => utimesSync(abs, 1_700_000_100, 1_700_000_100)],
  ];
  for (const [what, change] of changes) {
    it(`FILE_CHANGED for a file that ${what} since the scan, on both sides of the threshold`, async () => {
      const { sender, seen } = await connect(32 << 20);
      const cases = sizes.filter(([, size]) => size > 0);
      const entries = await Promise.all(cases.map(([, size], i) => scanned(`${what.split(' ')[0]}-${i}`, randomBytes(size))));
      for (const e of entries) change(join(dir, e.path));
      const { outcomes } = await sendAll(sender, entries.map(created));
      outcomes.forEach((o, i) => assert.equal(o?.code, 'FILE_CHANGED', cases[i]?.[0]));
      // Changed before the send: the open descriptor's fstat shows it before any byte goes out.
      assert.deepEqual([...seen.values()].map((s) => s.begin.path), [], 'nothing was begun');
    });

    it(`FILE_CHANGED for a file of several chunks that ${what} while it was sent: begun, then aborted`, async () => {
      const { sender, seen } = await connect(32 << 20);
      const entry = await scanned(`${what.split(' ')[0]}-while`, randomBytes(2 * SYNC_READ_MAX_BYTES + 12_345));
      let changed = false;
      sender.onProgress = (_files, bytes) => {
        if (bytes > 0 && !changed) {
          changed = true;
          change(join(dir, entry.path));
        }
      };
      const { outcomes } = await sendAll(sender, [created(entry)]);
      assert.ok(changed, 'the file changed after its first chunk went out');
      assert.equal(outcomes[0]?.code, 'FILE_CHANGED');
      const s = [...seen.values()][0];
      assert.ok(s !== undefined, 'the file was begun');
      assert.ok(s.aborted, 'begun, so aborted');
      assert.ok(Buffer.concat(s.data).length < s.begin.size, 'never complete on the receiver');
    });
  }

  it('a file replaced by a symlink to a secret (same size and mtime) or by a FIFO: FILE_CHANGED, nothing begun, no wait', async () => {
    const { sender, seen } = await connect(32 << 20);
    const outside = await mkdtemp(join(tmpdir(), 'warmsync-secret-'));
    try {
      const cases = sizes.filter(([, size]) => size > 0);
      const entries: Entry[] = [];
      for (const [i, [, size]] of cases.entries()) {
        const secret = join(outside, `secret-${i}`);
        await writeFile(secret, Buffer.alloc(size, 'S'));
        await utimes(secret, 1_700_000_000, 1_700_000_000);
        for (const kind of ['symlink', 'fifo']) {
          const entry = await scanned(`swapped-${kind}-${i}`, randomBytes(size));
          const abs = join(dir, entry.path);
          await rm(abs);
          if (kind === 'symlink') await symlink(secret, abs);
          else execFileSync('mkfifo', [abs]);
          entries.push(entry);
        }
      }
      const { report, outcomes } = await sendAll(sender, entries.map(created));
      assert.deepEqual(outcomes.map((o) => o?.code), entries.map(() => 'FILE_CHANGED'));
      assert.deepEqual([...seen.values()].map((v) => v.begin.path), [], 'nothing was begun');
      assert.equal(report.bytesSent, 0);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('a small file that changed gives its credit back: the next ones still fit the window', async () => {
    // Each file takes most of the window; credit kept by the failed one would stall the rest forever.
    const { sender } = await connect(SYNC_READ_MAX_BYTES + SYNC_READ_MAX_BYTES / 2);
    const first = await scanned('credit-0', randomBytes(SYNC_READ_MAX_BYTES - 1));
    await appendFile(join(dir, first.path), 'x');
    const rest = await Promise.all([1, 2, 3].map((i) => scanned(`credit-${i}`, randomBytes(SYNC_READ_MAX_BYTES - 1))));
    const { outcomes } = await sendAll(sender, [first, ...rest].map(created));
    assert.deepEqual(outcomes.map((o) => o?.code ?? null), ['FILE_CHANGED', null, null, null]);
  });

  describe('PassSending: a full pass sends as it plans', () => {
    const dirChange = (path: string): Change => ({ path, old: null, new: { path, kind: 'dir', size: 0, mtimeMs: 1_700_000_000_000, mode: 0o755, hash: null, target: null } });
    const hooks = { onHashed: (): void => undefined };

    it('sends every change queued, in the order queued, far past the queue\'s room, and answers them all', async () => {
      const { sender, order } = await connect(32 << 20);
      const sending = new PassSending(sender, hooks);
      const paths = Array.from({ length: 6000 }, (_, i) => `d-${String(i).padStart(5, '0')}`);
      assert.equal(sending.room(), null, 'room before anything is queued');
      for (const path of paths) sending.send(dirChange(path), 0);
      const report = await sending.finish();
      assert.deepEqual(order, paths);
      assert.equal(report.ops, paths.length);
      assert.deepEqual(report.failures, []);
    });

    it('room(): a promise once the queue is full, settled as it drains; the scan that waits on it loses nothing', async () => {
      const { sender, order } = await connect(32 << 20);
      const sending = new PassSending(sender, hooks);
      const queued: string[] = [];
      let waits = 0;
      // As a scan feeds it: each path asks for room first.
      for (let i = 0; i < 10_000; i++) {
        const wait = sending.room();
        if (wait !== null) {
          waits++;
          await wait;
        }
        const path = `r-${String(i).padStart(5, '0')}`;
        queued.push(path);
        sending.send(dirChange(path), 0);
      }
      await sending.finish();
      assert.ok(waits > 0, 'the feeder was made to wait');
      assert.deepEqual(order, queued);
    });

    it('a change queued after the loop went idle is still sent', async () => {
      const { sender, order } = await connect(32 << 20);
      const sending = new PassSending(sender, hooks);
      sending.send(dirChange('first'), 0);
      await new Promise((resolve) => setTimeout(resolve, 50));
      sending.send(dirChange('second'), 0);
      const report = await sending.finish();
      assert.deepEqual(order, ['first', 'second']);
      assert.equal(report.ops, 2);
    });

    it('the connection lost: room() rejects with CONNECTION_LOST and finish() throws it', async () => {
      const { sender, cut } = await connect(32 << 20);
      const sending = new PassSending(sender, hooks);
      for (let i = 0; i < 5000; i++) sending.send(dirChange(`lost-${i}`), 0);
      cut();
      await assert.rejects(async () => {
        for (;;) {
          await (sending.room() ?? new Promise((resolve) => setTimeout(resolve, 5)));
        }
      }, { code: 'CONNECTION_LOST' });
      await assert.rejects(sending.finish(), { code: 'CONNECTION_LOST' });
    });

    it('onApplied throwing (the mirror failed) fails the pass: finish() and room() give its error, nothing goes unhandled', async () => {
      const { sender } = await connect(32 << 20);
      const broken = new Error('mirror: disk full');
      const sending = new PassSending(sender, { onHashed: () => undefined, onApplied: () => { throw broken; } });
      for (let i = 0; i < 3000; i++) sending.send(dirChange(`broken-${i}`), 0);
      await assert.rejects(sending.finish(), (err) => err === broken);
      await assert.rejects(sending.room() ?? Promise.resolve(), (err) => err === broken);
    });

    it('onApplied: an unhashed file comes with the hash it was sent with; onHashed gets it once', async () => {
      const { sender } = await connect(32 << 20);
      const hasher = await createHasher();
      const contents = [randomBytes(100), randomBytes(SYNC_READ_MAX_BYTES + 1)];
      const entries = await Promise.all(contents.map(async (c, i) => ({ ...(await scanned(`applied-${i}`, c)), hash: null })));
      const applied: Change[] = [];
      const hashed: HashedWhileSent[] = [];
      const sending = new PassSending(sender, { onHashed: (row) => hashed.push(row), onApplied: (change) => applied.push(change) });
      for (const entry of entries) sending.send(created(entry), 0);
      const report = await sending.finish();
      assert.equal(report.hashedWhileSent, 2);
      assert.deepEqual(applied.map((c) => [c.path, c.new?.hash]).sort(), entries.map((e, i) => [e.path, hasher.hashBytes(contents[i] as Buffer)]).sort());
      assert.deepEqual(hashed.map((h) => h.path).sort(), entries.map((e) => e.path).sort());
    });
  });
});
