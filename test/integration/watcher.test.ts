// watcher.ts on a real temp tree with real inotify: one watch per directory, none on excluded ones;
// a new file, an edit and a deletion are reported with their directory; a directory created with
// files already inside is watched and handed out as a subtree, and what is written in it later is
// seen; a directory renamed or deleted loses its watches (and the new name is watched); a directory
// replaced by another of the same name is watched again; nothing arrives after close(). Every mark
// carries a time no later than its change (the last time the queue was read to the end before it):
// a new directory's subtree mark the time of the event that revealed it, not the later time its
// watches were in place; until that mark is out, pendingSince() holds that time. drain() hands out
// what the kernel holds without a turn of the loop.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, describe, it } from 'node:test';
import { watchTree, type TreeWatcher } from '../../src/watch/watcher.js';

let tmp: string;
let counter = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-watcher-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Harness {
  root: string;
  watcher: TreeWatcher;
  /** Every onDirty call so far, as `path` or `path/**` for a subtree. */
  seen: string[];
  /** onDirty's `at` for each entry of `seen`. */
  at: number[];
  errors: NodeJS.ErrnoException[];
  incomplete: string[];
  /** Waits (bounded) until onDirty reported `want`. */
  until(want: string): Promise<void>;
  /** Waits (bounded) until the watcher holds `n` watches. */
  untilSize(n: number): Promise<void>;
}

let open: TreeWatcher[] = [];
afterEach(async () => {
  await Promise.all(open.map((w) => w.close()));
  open = [];
});

async function start(dirs: readonly string[]): Promise<Harness> {
  const root = path.join(tmp, `tree${counter++}`);
  for (const d of ['', ...dirs]) await mkdir(path.join(root, d), { recursive: true });
  const seen: string[] = [];
  const at: number[] = [];
  const errors: NodeJS.ErrnoException[] = [];
  const incomplete: string[] = [];
  const watcher = watchTree(root, {
    isExcluded: (rel, isDir) => rel === 'logs' || (isDir && rel.endsWith('/tmp')) || rel.endsWith('.swp'),
    onDirty: (rel, subtree, time) => {
      seen.push(subtree ? `${rel}/**` : rel);
      at.push(time);
    },
    onIncomplete: (reason, _since, _at, detail) => incomplete.push(`${reason}: ${detail}`),
    onError: (err) => errors.push(err),
  });
  open.push(watcher);
  await watcher.ready;
  const poll = async (done: () => boolean, what: () => string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > deadline) assert.fail(what());
      await sleep(5);
    }
  };
  return {
    root, watcher, seen, at, errors, incomplete,
    until: (want) => poll(() => seen.includes(want), () => `never reported ${want}; saw ${JSON.stringify(seen)}`),
    untilSize: (n) => poll(() => watcher.size === n, () => `expected ${n} watches, have ${watcher.size}`),
  };
}

describe('watchTree', () => {
  it('watches every directory except excluded ones', async () => {
    const h = await start(['a/b/c', 'a/tmp/deep', 'logs/old', 'd']);
    // root, a, a/b, a/b/c, d: not logs (excluded), not a/tmp (a directory-only rule) nor below it
    assert.equal(h.watcher.size, 5);
  });

  it('reports new, edited and deleted files with their directory; excluded names are not reported', async () => {
    const h = await start(['a']);
    await writeFile(path.join(h.root, 'a/new.txt'), 'one');
    await h.until('a/new.txt');
    assert.ok(h.seen.includes('a'), 'the directory whose listing changed is reported too');
    h.seen.length = 0;
    await writeFile(path.join(h.root, 'a/new.txt'), 'two');
    await h.until('a/new.txt');
    h.seen.length = 0;
    await writeFile(path.join(h.root, 'a/x.swp'), 'editor junk');
    await rm(path.join(h.root, 'a/new.txt'));
    await h.until('a/new.txt');
    assert.ok(!h.seen.includes('a/x.swp'), `excluded name reported: ${JSON.stringify(h.seen)}`);
    assert.deepEqual(h.errors, []);
  });

  it('watches a new directory, hands it out as a subtree, and sees what is written in it later', async () => {
    const h = await start([]);
    // Built aside, then moved in: its contents predate any watch on it.
    const aside = path.join(tmp, `aside${counter++}`);
    await mkdir(path.join(aside, 'inner/deeper'), { recursive: true });
    await writeFile(path.join(aside, 'inner/deeper/f'), 'x');
    await rename(aside, path.join(h.root, 'moved'));
    await h.until('moved/**');
    await h.untilSize(4);
    // The subtree mark is as old as the event that revealed the directory (its first mark).
    assert.equal(h.at[h.seen.indexOf('moved/**')], h.at[h.seen.indexOf('moved')]);
    await writeFile(path.join(h.root, 'moved/inner/deeper/later'), 'y');
    await h.until('moved/inner/deeper/later');
    assert.deepEqual(h.incomplete, []);
  });

  it('drain() hands out queued events at once; pendingSince() holds a new directory\'s moment until its subtree is out', async () => {
    const h = await start([]);
    assert.equal(h.watcher.pendingSince(), null);
    const drained = Date.now();
    h.watcher.drain(); // empty: what comes next was queued after `drained`
    const before = Date.now();
    // Synchronous from here to drain(): the loop cannot have polled the descriptor.
    mkdirSync(path.join(h.root, 'fresh/inner'), { recursive: true });
    writeFileSync(path.join(h.root, 'fresh/inner/f'), 'x');
    h.watcher.drain();
    assert.ok(h.seen.includes('fresh'), `drain() handed out ${JSON.stringify(h.seen)}`);
    const pending = h.watcher.pendingSince();
    assert.ok(pending !== null && pending >= drained && pending <= before, `pendingSince ${pending} while fresh/ is being watched (made after ${before}, queue read empty at ${drained})`);
    assert.ok(!h.seen.includes('fresh/**'));
    await h.until('fresh/**');
    assert.equal(h.watcher.pendingSince(), null);
    assert.equal(h.at[h.seen.indexOf('fresh/**')], pending);
  });

  it('stamps each mark no later than its change (the last time the queue was read empty), not when it was read or handled', async () => {
    const h = await start(['a']);
    const drained = Date.now();
    h.watcher.drain();
    await sleep(30);
    const before = Date.now();
    await writeFile(path.join(h.root, 'a/f'), 'x');
    await h.until('a/f');
    const at = h.at[h.seen.indexOf('a/f')] as number;
    assert.ok(at >= drained && at <= before, `mark at ${at}, written at ${before}, queue read empty at ${drained}`);
    // Every mark of one batch carries the same time.
    assert.equal(h.at[h.seen.indexOf('a')], at);
  });

  it('drops the watches of a directory renamed within the tree and watches it under its new name', async () => {
    const h = await start(['old/sub']);
    assert.equal(h.watcher.size, 3);
    await rename(path.join(h.root, 'old'), path.join(h.root, 'new'));
    await h.until('new/**');
    await h.until('old');
    await h.untilSize(3);
    h.seen.length = 0;
    await writeFile(path.join(h.root, 'new/sub/f'), 'z');
    await h.until('new/sub/f');
    assert.ok(!h.seen.some((p) => p.startsWith('old/')), `stale watch reported the old name: ${JSON.stringify(h.seen)}`);
  });

  it('drops the watches of a deleted directory, and watches a new one of the same name', async () => {
    const h = await start(['gone/sub']);
    await rmdir(path.join(h.root, 'gone/sub'));
    await rmdir(path.join(h.root, 'gone'));
    await h.untilSize(1);
    await mkdir(path.join(h.root, 'gone'));
    await h.until('gone/**');
    await h.untilSize(2);
    h.seen.length = 0;
    await writeFile(path.join(h.root, 'gone/again'), 'back');
    await h.until('gone/again');
  });

  it('reports nothing after close()', async () => {
    const h = await start(['a']);
    await h.watcher.close();
    assert.equal(h.watcher.size, 0);
    await writeFile(path.join(h.root, 'a/after-close'), 'x');
    await sleep(100); // a report, if any, would come within a few ms; this only gives it the chance
    assert.deepEqual(h.seen, []);
  });
});
