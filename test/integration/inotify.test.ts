// The inotify addon (src/watch/inotify.ts) on real temp dirs: create, modify, delete and move events
// with byte-exact names (one of them not UTF-8); a real IN_Q_OVERFLOW, forced without touching any
// sysctl by creating more files than fs.inotify.max_queued_events while the event loop is blocked
// (and, for watchTree, by as many unmergeable writes),
// seen by the raw instance and by watchTree as onIncomplete('overflow') followed by a repair of its
// watches; IN_IGNORED when a watched directory is deleted, and watch-lost (not raised for that);
// addWatch errors with their errno code; and a closed instance that lets the process exit.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Inotify, inotifyConstants, type InotifyEvent } from '../../src/watch/inotify.js';
import { watchTree } from '../../src/watch/watcher.js';

const C = inotifyConstants();
const MASK = C.IN_CREATE | C.IN_DELETE | C.IN_MODIFY | C.IN_CLOSE_WRITE | C.IN_ATTRIB | C.IN_MOVED_FROM | C.IN_MOVED_TO |
  C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_DONT_FOLLOW | C.IN_ONLYDIR;
const QUEUE = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'));

let tmp: string;
let counter = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-inotify-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function freshDir(): string {
  const dir = path.join(tmp, `d${counter++}`);
  mkdirSync(dir);
  return dir;
}

/** An instance collecting every event, with helpers to wait for one (bounded). */
function collect(): { ino: Inotify; events: InotifyEvent[]; batches: number[]; until(pred: (e: InotifyEvent) => boolean, what: string): Promise<InotifyEvent> } {
  const events: InotifyEvent[] = [];
  const batches: number[] = [];
  const ino = new Inotify((batch, at) => {
    events.push(...batch);
    batches.push(at);
  });
  return {
    ino, events, batches,
    until: async (pred, what) => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const found = events.find(pred);
        if (found !== undefined) return found;
        if (Date.now() > deadline) assert.fail(`never saw ${what}`);
        await sleep(5);
      }
    },
  };
}

/** Creates `n` files in `dir` synchronously: the event loop cannot read the queue meanwhile. */
function createBlocking(dir: string, n: number): void {
  for (let i = 0; i < n; i++) closeSync(openSync(path.join(dir, `f${i}`), 'w'));
}

/**
 * Queues `n` IN_MODIFY events in `dir` synchronously, alternating between two files so the kernel
 * cannot merge them: as real an overflow as creating files, at a fraction of the disk's work.
 */
function modifyBlocking(dir: string, n: number): void {
  const fds = [openSync(path.join(dir, 'ping'), 'w'), openSync(path.join(dir, 'pong'), 'w')];
  for (let i = 0; i < n; i++) writeSync(fds[i % 2] as number, 'x');
  for (const fd of fds) closeSync(fd);
}

describe('inotify addon', () => {
  it('reports create, modify, delete and moves with byte-exact names, a non-UTF-8 one included', async () => {
    const dir = freshDir();
    const c = collect();
    try {
      const wd = c.ino.addWatch(dir, MASK);
      const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1: not valid UTF-8
      const dirBuf = Buffer.from(`${dir}/`);
      writeFileSync(Buffer.concat([dirBuf, latin1]), 'x');
      const is = (mask: number, name: Buffer) => (e: InotifyEvent): boolean =>
        e.wd === wd && (e.mask & mask) !== 0 && e.name !== null && e.name.equals(name);
      await c.until(is(C.IN_CREATE, latin1), 'IN_CREATE of the Latin-1 name');
      await c.until(is(C.IN_CLOSE_WRITE, latin1), 'IN_CLOSE_WRITE');
      writeFileSync(path.join(dir, 'a'), 'one');
      writeFileSync(path.join(dir, 'a'), 'two', { flag: 'a' });
      await c.until(is(C.IN_MODIFY, Buffer.from('a')), 'IN_MODIFY a');
      renameSync(path.join(dir, 'a'), path.join(dir, 'b'));
      const from = await c.until(is(C.IN_MOVED_FROM, Buffer.from('a')), 'IN_MOVED_FROM a');
      const to = await c.until(is(C.IN_MOVED_TO, Buffer.from('b')), 'IN_MOVED_TO b');
      assert.equal(from.cookie, to.cookie, 'a move pairs its two halves by cookie');
      assert.notEqual(from.cookie, 0);
      rmSync(Buffer.concat([dirBuf, latin1]));
      await c.until(is(C.IN_DELETE, latin1), 'IN_DELETE of the Latin-1 name');
      mkdirSync(path.join(dir, 'sub'));
      const made = await c.until(is(C.IN_CREATE, Buffer.from('sub')), 'IN_CREATE sub');
      assert.ok(made.mask & C.IN_ISDIR, 'a directory carries IN_ISDIR');
      assert.ok(c.batches.every((t) => t > 0 && t <= Date.now()), 'each batch carries its read time');
    } finally {
      c.ino.close();
    }
  });

  it('reports IN_IGNORED when the kernel drops a watch (its directory deleted)', async () => {
    const dir = freshDir();
    const c = collect();
    try {
      const wd = c.ino.addWatch(dir, MASK);
      await rmdir(dir);
      await c.until((e) => e.wd === wd && (e.mask & C.IN_DELETE_SELF) !== 0, 'IN_DELETE_SELF');
      await c.until((e) => e.wd === wd && (e.mask & C.IN_IGNORED) !== 0, 'IN_IGNORED');
    } finally {
      c.ino.close();
    }
  });

  it(`delivers IN_Q_OVERFLOW once more than max_queued_events (${QUEUE}) events queue up`, { timeout: 180_000 }, async () => {
    const dir = freshDir();
    const c = collect();
    try {
      c.ino.addWatch(dir, C.IN_CREATE | C.IN_ONLYDIR);
      createBlocking(dir, QUEUE + 100);
      const overflow = await c.until((e) => e.wd === -1, 'IN_Q_OVERFLOW');
      assert.equal(overflow.mask & C.IN_Q_OVERFLOW, C.IN_Q_OVERFLOW);
      assert.equal(overflow.name, null);
      // The kernel queues exactly max_queued_events events, then the overflow marker.
      assert.equal(c.events.filter((e) => e.wd !== -1).length, QUEUE);
    } finally {
      c.ino.close();
    }
  });

  it('throws errors carrying the errno code', () => {
    const c = collect();
    try {
      assert.throws(() => c.ino.addWatch(path.join(tmp, 'does-not-exist'), MASK), { code: 'ENOENT', syscall: 'inotify_add_watch' });
      const file = path.join(freshDir(), 'file');
      writeFileSync(file, 'x');
      assert.throws(() => c.ino.addWatch(file, MASK), { code: 'ENOTDIR' });
      assert.throws(() => c.ino.addWatch(Buffer.from('a\0b'), MASK), { name: 'TypeError' });
      c.ino.close();
      assert.throws(() => c.ino.addWatch(tmp, MASK), { code: 'EBADF' });
    } finally {
      c.ino.close();
    }
  });

  it('can be closed from inside its own callback; promise jobs the callback queued still run', async () => {
    const dir = freshDir();
    let calls = 0;
    const ran = new Promise<number>((resolve) => {
      const ino = new Inotify((events) => {
        calls++;
        ino.close();
        void Promise.resolve(events.length).then(resolve);
      });
      ino.addWatch(dir, C.IN_CREATE);
      writeFileSync(path.join(dir, 'a'), '');
    });
    assert.ok((await ran) >= 1);
    writeFileSync(path.join(dir, 'b'), '');
    await sleep(50);
    assert.equal(calls, 1, 'a callback after close()');
  });

  it('lets the process exit once closed (and keeps it alive while open)', () => {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const wrapper = path.resolve(here, '../../src/watch/inotify.ts');
    const script = `
      import { Inotify, inotifyConstants } from ${JSON.stringify(wrapper)};
      const ino = new Inotify(() => undefined);
      ino.addWatch(${JSON.stringify(tmp)}, inotifyConstants().IN_CREATE);
      setTimeout(() => { ino.close(); process.stdout.write('closed'); }, 200);
    `;
    const started = Date.now();
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    assert.equal(out, 'closed', 'the open instance kept the process alive until its close()');
    assert.ok(Date.now() - started < 20_000);
  });
});

describe('watchTree completeness', () => {
  it("reports a real overflow as onIncomplete('overflow') and repairs its watches", async () => {
    const root = freshDir();
    const reports: { reason: string; since: number; at: number }[] = [];
    const marks: { rel: string; subtree: boolean; at: number }[] = [];
    const w = watchTree(root, {
      isExcluded: () => false,
      onDirty: (rel, subtree, at) => marks.push({ rel, subtree, at }),
      onIncomplete: (reason, since, at) => reports.push({ reason, since, at }),
      onError: (err) => assert.fail(err),
    });
    try {
      await w.ready;
      const blocked = Date.now();
      mkdirSync(path.join(root, 'busy'));
      // Blocked from here: the new directory's watch cannot be added before the queue overflows.
      createBlocking(path.join(root, 'busy'), 10);
      modifyBlocking(root, QUEUE + 100);
      const before = Date.now();
      const deadline = before + 20_000;
      while (!reports.some((r) => r.reason === 'overflow')) {
        if (Date.now() > deadline) assert.fail(`no overflow reported; got ${JSON.stringify(reports)}`);
        await sleep(10);
      }
      const overflow = reports.find((r) => r.reason === 'overflow') as { since: number; at: number };
      assert.ok(overflow.at >= before - 5_000 && overflow.at <= Date.now());
      // The missed events may be from any moment after the queue was last read empty: before the blocked writes.
      assert.ok(overflow.since <= blocked, `since ${overflow.since} is after the writes began (${blocked})`);
      // The directory whose IN_CREATE was queued before the overflow is watched, and handed out as a subtree.
      while (!marks.some((m) => m.rel === 'busy' && m.subtree)) {
        if (Date.now() > deadline) assert.fail('busy/ never handed out as a subtree');
        await sleep(10);
      }
      while (w.size !== 2) {
        if (Date.now() > deadline) assert.fail(`expected 2 watches, have ${w.size}`);
        await sleep(10);
      }
      writeFileSync(path.join(root, 'busy/later'), 'x');
      while (!marks.some((m) => m.rel === 'busy/later')) {
        if (Date.now() > deadline) assert.fail('busy/later never reported');
        await sleep(10);
      }
      assert.deepEqual(reports.map((r) => r.reason), ['overflow']);
    } finally {
      await w.close();
    }
  });

  it('does not report watch-lost for a directory that was deleted', async () => {
    const root = freshDir();
    mkdirSync(path.join(root, 'gone/sub'), { recursive: true });
    const reports: string[] = [];
    const w = watchTree(root, {
      isExcluded: () => false,
      onDirty: () => undefined,
      onIncomplete: (reason, _since, _at, detail) => reports.push(`${reason}: ${detail}`),
      onError: (err) => assert.fail(err),
    });
    try {
      await w.ready;
      assert.equal(w.size, 3);
      rmSync(path.join(root, 'gone'), { recursive: true });
      const deadline = Date.now() + 10_000;
      while (w.size > 1) {
        if (Date.now() > deadline) assert.fail(`expected 1 watch, have ${w.size}`);
        await sleep(10);
      }
      await sleep(50); // an IN_IGNORED handled after the parent's IN_DELETE would report within a few ms
      assert.deepEqual(reports, []);
    } finally {
      await w.close();
    }
  });
});
