// scanner.ts on real temp trees with a real SQLite cache: what gets hashed on a cold scan, a warm
// restart, after a touch, after a same-size rewrite with the mtime restored (not seen, by design),
// racy files, and the retry/skip policy for files that change, vanish or cannot be read.
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, rename, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Entry } from '../../src/entry.js';
import { WarmsyncError } from '../../src/errors.js';
import { compareTreeOrder } from '../../src/relpath.js';
import { AgentCache, agentCachePath } from '../../src/scan/cache.js';
import { createHasher, type FileHasher, type HashExpectation } from '../../src/scan/hash.js';
import { scanTree, type ScanOptions } from '../../src/scan/scanner.js';

/** An mtime comfortably older than the racy window. */
const PAST = new Date('2024-05-01T12:00:00.000Z');
const LATER = new Date('2024-05-02T12:00:00.000Z');

let tmp: string;
let hasher: FileHasher;
let counter = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-scanner-'));
  hasher = await createHasher();
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Fixture { root: string; stateDir: string; files: Map<string, string> }

/** A small tree with its state dir inside, every file's mtime set to PAST. */
async function makeTree(): Promise<Fixture> {
  const root = path.join(tmp, `tree${counter++}`);
  const stateDir = path.join(root, '.warmsync');
  mkdirSync(stateDir, { recursive: true });
  const files = new Map<string, string>();
  for (let i = 0; i < 30; i++) files.set(`filestore/${(i % 5).toString(16).padStart(2, '0')}/blob-${i}`, `content of blob ${i}\n`.repeat(i + 1));
  files.set('etc/system.yaml', 'shared:\n  node: {}\n');
  files.set('a-x', 'sorts after a/ in tree order');
  files.set('a/b', 'nested');
  for (const [rel, content] of files) {
    await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await writeFile(path.join(root, rel), content);
    await utimes(path.join(root, rel), PAST, PAST);
  }
  await symlink('etc/system.yaml', path.join(root, 'config-link'));
  return { root, stateDir, files };
}

function optionsFor(fx: Fixture, cache: AgentCache | null, over: Partial<ScanOptions> = {}):
  ScanOptions & { warnings: { code: string; path: string | undefined }[] } {
  const warnings: { code: string; path: string | undefined }[] = [];
  return {
    isExcluded: (p) => p === '.warmsync',
    onWarning: (code, _message, p) => warnings.push({ code, path: p }),
    cache,
    hasher,
    warnings,
    ...over,
  };
}

const fileEntries = (entries: Entry[]): Entry[] => entries.filter((e) => e.kind === 'file');

describe('scanTree with the agent cache', () => {
  it('cold scan hashes every file; entries are complete, sorted and correct', async () => {
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    const opts = optionsFor(fx, cache);
    const { entries, stats, incomplete } = await scanTree(fx.root, opts);
    cache.close();
    assert.deepEqual(opts.warnings, []);
    assert.deepEqual(incomplete, []);
    const n = fx.files.size;
    const bytes = [...fx.files.values()].reduce((s, c) => s + Buffer.byteLength(c), 0);
    assert.deepEqual(stats, { files: n, dirs: 8, symlinks: 1, specials: 0, bytes, hashed: n, hashedBytes: bytes, cached: 0, unhashed: 0, unhashedBytes: 0 });
    assert.deepEqual(entries.map((e) => e.path), [...entries.map((e) => e.path)].sort(compareTreeOrder));
    assert.ok(!entries.some((e) => e.path.startsWith('.warmsync')), 'the state dir is excluded by the caller');
    const idx = (p: string): number => entries.findIndex((e) => e.path === p);
    assert.ok(idx('a') < idx('a/b') && idx('a/b') < idx('a-x'), 'parents first, segment order');
    for (const e of fileEntries(entries)) {
      const content = fx.files.get(e.path);
      assert.ok(content !== undefined, e.path);
      assert.equal(e.hash, hasher.hashBytes(Buffer.from(content)));
      assert.equal(e.size, Buffer.byteLength(content));
      assert.equal(e.mtimeMs, PAST.getTime());
      assert.equal(e.target, null);
    }
    const link = entries.find((e) => e.path === 'config-link');
    const st = lstatSync(path.join(fx.root, 'config-link'));
    assert.deepEqual({ ...link, mtimeMs: 0, mode: 0, owner: { ...link?.owner, user: null, group: null } }, {
      path: 'config-link', kind: 'symlink', size: 15, mtimeMs: 0, mode: 0, hash: null, target: 'etc/system.yaml',
      owner: { uid: st.uid, gid: st.gid, user: null, group: null },
    });
    const dir = entries.find((e) => e.path === 'etc');
    assert.equal(dir?.size, 0);
    assert.equal(dir?.hash, null);
    assert.equal(dir?.target, null);
  });

  it('needsHash false: a file the cache cannot vouch for is listed unhashed and not cached; a cached hash is still used', async () => {
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    await scanTree(fx.root, optionsFor(fx, cache));
    await utimes(path.join(fx.root, 'a/b'), LATER, LATER);
    const asked: Array<[string, number]> = [];
    const { entries, stats } = await scanTree(fx.root, {
      ...optionsFor(fx, cache),
      needsHash: (p, size) => {
        asked.push([p, size]);
        return false;
      },
    });
    assert.deepEqual(asked, [['a/b', Buffer.byteLength('nested')]], 'asked only about the file the cache cannot vouch for');
    assert.deepEqual({ hashed: stats.hashed, cached: stats.cached, unhashed: stats.unhashed, unhashedBytes: stats.unhashedBytes },
      { hashed: 0, cached: fx.files.size - 1, unhashed: 1, unhashedBytes: Buffer.byteLength('nested') });
    const changed = entries.find((e) => e.path === 'a/b');
    assert.deepEqual(changed && { hash: changed.hash, size: changed.size, mtimeMs: changed.mtimeMs },
      { hash: null, size: Buffer.byteLength('nested'), mtimeMs: LATER.getTime() });
    const again = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(again.stats.hashed, 1, 'nothing was cached for the unhashed file');
    cache.close();
  });

  it('a restart with the cache hashes 0 files; touching one file\'s mtime hashes exactly 1', async () => {
    const fx = await makeTree();
    const file = agentCachePath(fx.stateDir);
    let cache = AgentCache.open(file);
    const first = await scanTree(fx.root, optionsFor(fx, cache));
    cache.close();

    cache = AgentCache.open(file); // a new process, the same cache file
    const second = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(second.stats.hashed, 0);
    assert.equal(second.stats.cached, fx.files.size);
    assert.deepEqual(second.entries, first.entries);

    await utimes(path.join(fx.root, 'a/b'), LATER, LATER);
    const third = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(third.stats.hashed, 1);
    assert.equal(third.stats.hashedBytes, Buffer.byteLength('nested'));
    assert.equal(third.stats.cached, fx.files.size - 1);
    assert.equal(third.entries.find((e) => e.path === 'a/b')?.mtimeMs, LATER.getTime());

    const fourth = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(fourth.stats.hashed, 0, 'the new hash was remembered');
    cache.close();
  });

  it('a same-size rewrite with the mtime restored is NOT re-hashed (quick-check semantics, by design)', async () => {
    // Size, mtime and inode are unchanged, so the cache vouches for the old hash, exactly like
    // rsync's quick check. Only a forced re-read (`verify` on the receiver side) would notice.
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    const first = await scanTree(fx.root, optionsFor(fx, cache));
    const target = path.join(fx.root, 'etc/system.yaml');
    const before = await stat(target);
    await writeFile(target, 'X'.repeat(before.size)); // same inode: writeFile truncates in place
    await utimes(target, PAST, PAST);
    assert.equal((await stat(target)).ino, before.ino);
    const second = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(second.stats.hashed, 0);
    const oldHash = first.entries.find((e) => e.path === 'etc/system.yaml')?.hash;
    assert.equal(second.entries.find((e) => e.path === 'etc/system.yaml')?.hash, oldHash);
    // ...while a scan without the cache sees the new content.
    const uncached = await scanTree(fx.root, optionsFor(fx, null));
    assert.notEqual(uncached.entries.find((e) => e.path === 'etc/system.yaml')?.hash, oldHash);
    cache.close();
  });

  it('without a cache, knownHash answers for the files it knows as they are (same size, mtime, inode); only the others are read', async () => {
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    const first = await scanTree(fx.root, optionsFor(fx, cache));
    const files = fileEntries(first.entries);
    const [kept, rewritten] = files as [Entry, Entry];
    // Rewritten since: same size and mtime, another inode (renamed over), so the cache's row does not hold.
    const tmpName = path.join(fx.root, 'replacement');
    await writeFile(tmpName, 'Y'.repeat(rewritten.size));
    await utimes(tmpName, PAST, PAST);
    await rename(tmpName, path.join(fx.root, rewritten.path));
    const asked: string[] = [];
    const second = await scanTree(fx.root, optionsFor(fx, null, {
      knownHash: (p, size, mtimeMs, ino) => {
        asked.push(p);
        return cache.lookup(p, size, mtimeMs, ino);
      },
      needsHash: (p) => p !== 'etc/system.yaml',
    }));
    assert.ok(!asked.includes('etc/system.yaml'), 'not asked of a file the scan would not hash');
    assert.equal(second.stats.hashed, 1, 'only the rewritten file is read');
    assert.equal(second.stats.cached, files.length - 2);
    assert.equal(second.entries.find((e) => e.path === kept.path)?.hash, kept.hash);
    const now = second.entries.find((e) => e.path === rewritten.path)?.hash;
    assert.ok(now !== null && now !== undefined && now !== rewritten.hash, 'the rewritten file hashed anew');
    cache.close();
  });

  it('a file modified within the racy window is hashed but not cached; older ones are', async () => {
    const fx = await makeTree();
    await writeFile(path.join(fx.root, 'fresh'), 'just written'); // mtime = now
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    const first = await scanTree(fx.root, optionsFor(fx, cache));
    // Named with its mtime, for the live agent to look at again once it is old enough.
    const fresh = first.entries.find((e) => e.path === 'fresh');
    assert.deepEqual(first.racy, [{ path: 'fresh', mtimeMs: fresh?.mtimeMs }]);
    assert.ok(!first.cacheable.some((r) => r.path === 'fresh') && first.cacheable.length > 0);
    const second = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(second.stats.hashed, 1, 'only the fresh file is hashed again');
    const third = await scanTree(fx.root, optionsFor(fx, cache, { racyMs: 0 }));
    assert.equal(third.stats.hashed, 1);
    assert.deepEqual(third.racy, []);
    const fourth = await scanTree(fx.root, optionsFor(fx, cache, { racyMs: 0 }));
    assert.equal(fourth.stats.hashed, 0, 'with racyMs 0 it was cached');
    cache.close();
  });

  it('a deleted file disappears from the entries and from the cache; a new one is hashed', async () => {
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    const first = await scanTree(fx.root, optionsFor(fx, cache));
    const gone = fileEntries(first.entries)[0] as Entry;
    const goneIno = (await stat(path.join(fx.root, gone.path))).ino;
    assert.equal(cache.lookup(gone.path, gone.size, gone.mtimeMs, goneIno), gone.hash);
    await unlink(path.join(fx.root, gone.path));
    await writeFile(path.join(fx.root, 'new-file'), 'new');
    await utimes(path.join(fx.root, 'new-file'), PAST, PAST);
    const second = await scanTree(fx.root, optionsFor(fx, cache));
    assert.ok(!second.entries.some((e) => e.path === gone.path));
    assert.equal(second.stats.hashed, 1);
    assert.equal(second.stats.files, fx.files.size);
    assert.equal(cache.lookup(gone.path, gone.size, gone.mtimeMs, goneIno), null, 'forgotten');
    cache.close();
  });

  it('gives the same entries with concurrency 1 and 8, and without a cache', async () => {
    const fx = await makeTree();
    const one = await scanTree(fx.root, optionsFor(fx, null, { concurrency: 1 }));
    const eight = await scanTree(fx.root, optionsFor(fx, null, { concurrency: 8 }));
    assert.deepEqual(one.entries, eight.entries);
    await assert.rejects(scanTree(fx.root, optionsFor(fx, null, { concurrency: 0 })), { code: 'INVALID_OPTION' });
  });

  it('keeps scanning without the cache when the cache fails mid-run (CACHE_FAILED warning)', async () => {
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    cache.close(); // every call now throws
    const opts = optionsFor(fx, cache);
    const result = await scanTree(fx.root, opts);
    assert.equal(result.stats.hashed, fx.files.size);
    assert.deepEqual(opts.warnings.map((w) => w.code), ['CACHE_FAILED']);
  });

  it('SOURCE_MISSING when the root is gone', async () => {
    await assert.rejects(scanTree(path.join(tmp, 'absent'), optionsFor({ root: '', stateDir: '', files: new Map() }, null)),
      (err) => err instanceof WarmsyncError && err.code === 'SOURCE_MISSING');
  });
});

describe('scanTree: files that change, vanish or cannot be read while hashed', () => {
  /** A hasher that misbehaves for one path, then delegates to the real one. */
  function faultyHasher(relPath: string, fault: (attempt: number, absPath: string, expect?: HashExpectation) => Promise<void>):
    { hasher: FileHasher; attempts: (HashExpectation | undefined)[] } {
    const attempts: (HashExpectation | undefined)[] = [];
    return {
      attempts,
      hasher: {
        ...hasher,
        hashFile: async (absPath, expect) => {
          if (absPath.endsWith(`/${relPath}`)) {
            attempts.push(expect);
            await fault(attempts.length, absPath, expect);
          }
          return hasher.hashFile(absPath, expect);
        },
      },
    };
  }
  const changed = (): never => { throw new WarmsyncError('FILE_CHANGED', 'x changed while it was read'); };

  it('a file that grew after the walk is retried and reported as it now is', async () => {
    const fx = await makeTree();
    const { hasher: h, attempts } = faultyHasher('a/b', async (attempt, absPath) => {
      if (attempt === 1) await appendFile(absPath, ' and more');
    });
    const opts = optionsFor(fx, null, { hasher: h });
    const { entries, stats } = await scanTree(fx.root, opts);
    assert.equal(attempts.length, 2);
    assert.ok(attempts[0] !== undefined, 'first attempt checks against the walk');
    assert.equal(attempts[1], undefined, 'retries take the file as it now is');
    const e = entries.find((x) => x.path === 'a/b');
    assert.equal(e?.size, Buffer.byteLength('nested and more'));
    assert.equal(e?.hash, hasher.hashBytes(Buffer.from('nested and more')));
    assert.equal(stats.hashed, fx.files.size);
    assert.deepEqual(opts.warnings, []);
  });

  it('FILE_CHANGED three times, then fine: kept', async () => {
    const fx = await makeTree();
    const { hasher: h, attempts } = faultyHasher('a/b', async (attempt) => { if (attempt <= 3) changed(); });
    const opts = optionsFor(fx, null, { hasher: h });
    const { entries, incomplete } = await scanTree(fx.root, opts);
    assert.equal(attempts.length, 4);
    assert.ok(entries.some((e) => e.path === 'a/b'));
    assert.deepEqual(incomplete, []);
  });

  it('FILE_CHANGED on every attempt: dropped with FILE_UNSTABLE, listed as incomplete, not cached', async () => {
    const fx = await makeTree();
    const cache = AgentCache.open(agentCachePath(fx.stateDir));
    const { hasher: h, attempts } = faultyHasher('a/b', async () => changed());
    const opts = optionsFor(fx, cache, { hasher: h });
    const { entries, incomplete, stats } = await scanTree(fx.root, opts);
    assert.equal(attempts.length, 4, '1 try + 3 retries');
    assert.ok(!entries.some((e) => e.path === 'a/b'));
    assert.deepEqual(incomplete, ['a/b']);
    assert.deepEqual(opts.warnings, [{ code: 'FILE_UNSTABLE', path: 'a/b' }]);
    assert.equal(stats.files, fx.files.size - 1);
    const next = await scanTree(fx.root, optionsFor(fx, cache));
    assert.equal(next.stats.hashed, 1, 'the next run picks it up');
    cache.close();
  });

  it('hashRetries 0 (the live agent, for a new directory): one attempt, then FILE_UNSTABLE at once', async () => {
    const fx = await makeTree();
    const { hasher: h, attempts } = faultyHasher('a/b', async () => changed());
    const opts = optionsFor(fx, null, { hasher: h, hashRetries: 0 });
    const { entries, incomplete } = await scanTree(fx.root, opts);
    assert.equal(attempts.length, 1, 'no retry');
    assert.ok(!entries.some((e) => e.path === 'a/b'));
    assert.deepEqual(incomplete, ['a/b']);
    assert.deepEqual(opts.warnings, [{ code: 'FILE_UNSTABLE', path: 'a/b' }]);
  });

  it('a file deleted before it is hashed is dropped silently', async () => {
    const fx = await makeTree();
    const { hasher: h } = faultyHasher('a/b', (_attempt, absPath) => unlink(absPath));
    const opts = optionsFor(fx, null, { hasher: h });
    const { entries, incomplete } = await scanTree(fx.root, opts);
    assert.ok(!entries.some((e) => e.path === 'a/b'));
    assert.deepEqual(incomplete, []);
    assert.deepEqual(opts.warnings, []);
  });

  it('EACCES: dropped with UNREADABLE and listed as incomplete', async () => {
    // Simulated: tests run as root, which reads mode-000 files (walk.test.ts covers real EACCES).
    const fx = await makeTree();
    const denied = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    const { hasher: h } = faultyHasher('etc/system.yaml', () => Promise.reject(denied));
    const opts = optionsFor(fx, null, { hasher: h });
    const { entries, incomplete } = await scanTree(fx.root, opts);
    assert.ok(!entries.some((e) => e.path === 'etc/system.yaml'));
    assert.deepEqual(incomplete, ['etc/system.yaml']);
    assert.deepEqual(opts.warnings, [{ code: 'UNREADABLE', path: 'etc/system.yaml' }]);
  });

  it('any other error fails the scan with SCAN_FAILED (the cause kept)', async () => {
    const fx = await makeTree();
    const eio = Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    const { hasher: h } = faultyHasher('a/b', () => Promise.reject(eio));
    await assert.rejects(scanTree(fx.root, optionsFor(fx, null, { hasher: h })),
      (err) => err instanceof WarmsyncError && err.code === 'SCAN_FAILED' && err.cause === eio);
  });
});

describe('scanTree handing entries over as it goes (onEntry)', () => {
  /** A hasher that holds `slowPath` until every other file of the scan has been hashed. */
  function holdingHasher(slowPath: string): FileHasher {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => { release = resolve; });
    let others = 0;
    return {
      ...hasher,
      hashFile: async (absPath, expect) => {
        if (absPath.endsWith(`/${slowPath}`)) await released;
        else if (++others >= 5) release();
        return hasher.hashFile(absPath, expect);
      },
    };
  }

  it('every entry once, in tree order, though an early file finishes hashing last; needsHash is asked in tree order', async () => {
    const fx = await makeTree();
    const taken: Entry[] = [];
    const asked: string[] = [];
    const opts = optionsFor(fx, null, {
      hasher: holdingHasher('a/b'),
      onEntry: (e) => taken.push(e),
      needsHash: (p) => {
        asked.push(p);
        return true;
      },
    });
    const result = await scanTree(fx.root, opts);
    assert.deepEqual(result.entries, [], 'nothing collected when handed over');
    const collected = await scanTree(fx.root, optionsFor(fx, null));
    assert.deepEqual(taken.map((e) => e.path), taken.map((e) => e.path).sort(compareTreeOrder), 'in tree order');
    assert.deepEqual(taken, collected.entries, 'the same entries, in the same order, as a collecting scan');
    assert.deepEqual(asked, [...asked].sort(compareTreeOrder));
    assert.equal(asked.length, fx.files.size);
    assert.equal(result.stats.files, fx.files.size);
  });

  it('a file that fails (EACCES) while files behind it wait leaves a gap, not a stall', async () => {
    const fx = await makeTree();
    const denied = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    const h: FileHasher = { ...hasher, hashFile: (absPath, expect) => (absPath.endsWith('/a/b') ? Promise.reject(denied) : hasher.hashFile(absPath, expect)) };
    const taken: string[] = [];
    const { incomplete } = await scanTree(fx.root, optionsFor(fx, null, { hasher: h, onEntry: (e) => taken.push(e.path) }));
    assert.deepEqual(incomplete, ['a/b']);
    assert.ok(!taken.includes('a/b'));
    assert.equal(taken.filter((p) => fx.files.has(p)).length, fx.files.size - 1);
    assert.deepEqual(taken, [...taken].sort(compareTreeOrder));
  });

  it('room: the walk waits on it before each path, and a rejection ends the scan with its reason', async () => {
    const fx = await makeTree();
    const taken: string[] = [];
    let open: (() => void) | null = null;
    let asked = 0;
    const scan = scanTree(fx.root, optionsFor(fx, null, {
      onEntry: (e) => taken.push(e.path),
      // Every third path waits until the test lets it go.
      room: () => (++asked % 3 === 0 ? new Promise<void>((resolve) => { open = resolve; }) : null),
    }));
    let done = false;
    void scan.then(() => { done = true; }, () => { done = true; });
    let released = 0;
    while (!done && released < 1000) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      if (open === null) continue;
      const waitingAt = asked;
      await new Promise((resolve) => setTimeout(resolve, 2));
      assert.equal(asked, waitingAt, 'no path was taken while the walk waited');
      const go: () => void = open;
      open = null;
      released++;
      go();
    }
    const result = await scan;
    assert.ok(released > 0, 'the walk waited');
    assert.equal(result.stats.files, fx.files.size);
    assert.deepEqual(taken, [...taken].sort(compareTreeOrder));

    const full = new Error('the taker is gone');
    await assert.rejects(scanTree(fx.root, optionsFor(fx, null, { onEntry: () => undefined, room: () => Promise.reject(full) })), (err) => err === full);
  });

  it('a taker that throws fails the scan with its error, hashes still running are awaited', async () => {
    const fx = await makeTree();
    const boom = new Error('taker refused');
    await assert.rejects(scanTree(fx.root, optionsFor(fx, null, {
      onEntry: (e) => {
        if (e.path.startsWith('filestore/02/')) throw boom;
      },
    })), (err) => err === boom);
  });
});
