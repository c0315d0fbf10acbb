// e2e: `warmsync agent --once` against a real `warmsync receiver` (child processes, 127.0.0.1,
// SQLite): (a) a tricky tree with a 100 MiB file arrives identical, with the --json summary right;
// (b) a no-op rerun sends and hashes nothing; (c) an incremental rerun sends only what changed and
// holds the deletion as a tombstone; (d) type changes converge without writing through an old
// symlink; (e) an rsync excludes file keeps its paths off the standby; (f) chmod- and touch-only
// changes travel as metadata updates.
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, open, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  assertSameTree, buildTree, closeStandbys, findTempFiles, manifestRow, manifestRows, openStandby, readSynced,
  setTime, settleTimes, syncOnce, tombstonePaths, type Standby, type TreeSpec,
} from '../helpers/e2e.js';

after(closeStandbys);

const MiB = 1024 * 1024;
const BIG_SIZE = 100 * MiB;
const PAST = Date.parse('2025-06-01T08:00:00.250Z');

/** Writes `size` bytes from a seeded xorshift32 generator, 1 MiB at a time. */
async function writeSeeded(path: string, size: number, seed: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    const words = new Uint32Array(MiB / 4);
    let x = seed >>> 0 || 1;
    for (let written = 0; written < size; written += MiB) {
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x >>> 0;
      }
      const n = Math.min(MiB, size - written);
      await handle.write(new Uint8Array(words.buffer, 0, n), 0, n, written);
    }
  } finally {
    await handle.close();
  }
}

function fileStats(tree: Awaited<ReturnType<typeof readSynced>>): { files: number; bytes: number } {
  const files = Object.values(tree).filter((item) => item.kind === 'file');
  return { files: files.length, bytes: files.reduce((sum, item) => sum + item.size, 0) };
}

describe('one standby, synced three times', () => {
  let s: Standby;
  const TRICKY: TreeSpec = {
    'café/naïve file.txt': 'bonjour, ça va ?\n',
    'dir with spaces/x': 'x marks the spot\n',
    'dir with spaces/y z': 'another\n',
    'empty.txt': '',
    'nested/zero': '',
    'nested/a/b/c/deep.txt': 'deep\n'.repeat(100),
    'nested/a/b/empty': { dir: true },
    'empty-dir': { dir: true },
    'private': { dir: true, mode: 0o700 },
    'private/notes.txt': { content: 'mine\n', mode: 0o600 },
    'bin/run.sh': { content: '#!/bin/sh\necho hello\n', mode: 0o755 },
    'etc/secret.conf': { content: 'password=hunter2\n', mode: 0o600 },
    'etc/readonly.conf': { content: 'ro\n', mode: 0o444 },
    'links/relative': { symlink: '../café/naïve file.txt' },
    'links/absolute': { symlink: '/etc/hostname' },
    'links/dangling': { symlink: 'no/such/target' },
    'links/to-dir': { symlink: '../nested/a' },
    'links/dir with spaces ✓': { symlink: '../dir with spaces' },
  };

  before(async () => {
    s = await openStandby();
    await buildTree(s.src, TRICKY);
    await mkdir(join(s.src, 'big'));
    await writeSeeded(join(s.src, 'big/100MiB.bin'), BIG_SIZE, 0x5eed);
    await settleTimes(s.src);
  });

  test('(a) a tricky tree with a 100 MiB file arrives identical; the --json summary adds up', { timeout: 90_000 }, async () => {
    const source = await readSynced(s.src);
    const { files, bytes } = fileStats(source);
    assert.ok(bytes > BIG_SIZE);
    const started = Date.now();
    const summary = await syncOnce(s);
    const wall = Date.now() - started;

    await assertSameTree(s.src, s.dst);
    assert.equal(summary.filesScanned, files);
    assert.equal(summary.filesSent, files);
    assert.equal(summary.bytesSent, bytes);
    assert.equal(summary.skippedUnchanged, 0);
    assert.equal(summary.tombstones, 0);
    assert.equal(summary.metaUpdates, 0);
    assert.ok(Number.isInteger(summary.elapsedMs) && summary.elapsedMs > 0 && summary.elapsedMs <= wall, `elapsedMs ${summary.elapsedMs}, wall ${wall}`);
    assert.deepEqual(await findTempFiles(s.dst), []);
    // Every synced path is recorded, none as a tombstone.
    assert.deepEqual(manifestRows(s.dst).map((r) => r.path).sort(), Object.keys(source).sort());
    assert.deepEqual(tombstonePaths(s.dst), []);
  });

  test('(b) a no-op rerun sends nothing and, thanks to the agent cache, hashes nothing', { timeout: 60_000 }, async () => {
    const before = await readSynced(s.dst);
    const summary = await syncOnce(s);
    const { files } = fileStats(before);
    assert.equal(summary.filesScanned, files);
    assert.equal(summary.filesSent, 0);
    assert.equal(summary.bytesSent, 0);
    assert.equal(summary.hashed, 0);
    assert.equal(summary.metaUpdates, 0);
    assert.equal(summary.tombstones, 0);
    assert.equal(summary.skippedUnchanged, files);
    assert.deepEqual(await readSynced(s.dst), before);
  });

  test('(c) an incremental rerun sends exactly the edited and added files; the deletion stays as a tombstone', { timeout: 60_000 }, async () => {
    const edited = 'café/naïve file.txt';
    const added = 'nested/a/new file.txt';
    const deleted = 'dir with spaces/x';
    const editedContent = 'bonjour, ça va ? très bien, merci\n';
    const addedContent = 'brand new\n'.repeat(10);
    await writeFile(join(s.src, edited), editedContent);
    await setTime(join(s.src, edited), PAST);
    await writeFile(join(s.src, added), addedContent);
    await setTime(join(s.src, added), PAST + 1_234);
    await unlink(join(s.src, deleted));

    const summary = await syncOnce(s);
    assert.equal(summary.filesSent, 2);
    assert.equal(summary.bytesSent, Buffer.byteLength(editedContent) + Buffer.byteLength(addedContent));
    assert.equal(summary.hashed, 2);
    assert.equal(summary.tombstones, 1);
    assert.equal(summary.metaUpdates, 0);
    assert.equal(summary.skippedUnchanged, summary.filesScanned - 2);

    // The standby matches the source, plus the deleted file, which the gate has not released yet.
    await assertSameTree(s.src, s.dst, { skipDst: (rel) => rel === deleted });
    assert.equal((await readSynced(s.dst))[deleted]?.kind, 'file');
    const tomb = manifestRow(s.dst, deleted);
    assert.ok(tomb !== undefined && tomb.deleted_at !== null, `no tombstone for ${deleted}: ${JSON.stringify(tomb)}`);
    assert.ok(Math.abs((tomb.deleted_at ?? 0) - Date.now()) < 120_000, `deleted_at ${tomb.deleted_at} is not the agent's clock`);
    assert.deepEqual(tombstonePaths(s.dst), [deleted]);
    assert.equal(manifestRow(s.dst, edited)?.size, Buffer.byteLength(editedContent));
  });
});

test('(d) type changes converge: symlink -> dir (never written through), file -> dir, dir -> file, dir -> symlink, symlink -> file', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  const outside = join(s.dir, 'outside');
  await mkdir(outside);
  await buildTree(s.src, {
    'swap/link': { symlink: outside },
    'swap/file': 'was a file\n',
    'swap/dir/child.txt': 'child\n',
    'swap/dir/sub/deeper.txt': 'deeper\n',
    'swap/dir2/child.txt': 'child\n',
    'swap/link2': { symlink: outside },
    'keep.txt': 'unchanged\n',
  });
  await settleTimes(s.src);
  await syncOnce(s);
  assert.equal((await lstat(join(s.dst, 'swap/link'))).isSymbolicLink(), true);

  await unlink(join(s.src, 'swap/link'));
  await buildTree(s.src, { 'swap/link/inner.txt': 'must land inside the standby\n', 'swap/link/sub/more.txt': 'more\n' });
  await unlink(join(s.src, 'swap/file'));
  await buildTree(s.src, { 'swap/file/now-a-dir.txt': 'dir now\n' });
  await rm(join(s.src, 'swap/dir'), { recursive: true });
  await buildTree(s.src, { 'swap/dir': 'a file now\n' });
  await rm(join(s.src, 'swap/dir2'), { recursive: true });
  await buildTree(s.src, { 'swap/dir2': { symlink: outside } });
  await unlink(join(s.src, 'swap/link2'));
  await buildTree(s.src, { 'swap/link2': 'a file where a symlink out was\n' });
  await settleTimes(s.src, PAST);

  const summary = await syncOnce(s);
  // One pass: a directory's children are tombstoned before the change that replaces it is sent.
  assert.equal(summary.passes, 1);
  assert.equal(summary.warnings, 0);
  assert.deepEqual(await readdir(outside), [], 'the receiver wrote through the old symlink');
  await assertSameTree(s.src, s.dst);
  assert.deepEqual(await findTempFiles(s.dst), []);
  assert.equal(manifestRow(s.dst, 'swap/link')?.kind, 'dir');
  assert.equal(manifestRow(s.dst, 'swap/file')?.kind, 'dir');
  assert.equal(manifestRow(s.dst, 'swap/dir')?.kind, 'file');
  assert.equal(manifestRow(s.dst, 'swap/dir2')?.kind, 'symlink');
  assert.equal(manifestRow(s.dst, 'swap/link2')?.kind, 'file');

  const again = await syncOnce(s);
  assert.equal(again.filesSent + again.metaUpdates + again.tombstones, 0, `not converged: ${JSON.stringify(again)}`);
});

test('(e) an rsync excludes file keeps its paths off the standby', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  const excludes = join(s.dir, 'rsync-excludes.txt');
  await writeFile(excludes, '# as used with rsync -a --delete --exclude-from\n\nlogs/\n- data/tmp/\n*.lock\n/etc/secret.key\n');
  await buildTree(s.src, {
    'logs/request.log': 'GET /\n',
    'logs/old/2024.log': 'old\n',
    'notes/logs': 'a file named logs is not a directory: kept\n',
    'data/tmp/upload.part': 'partial\n',
    'data/filestore/ab/abcdef0123': 'binary\n',
    'x/data/tmp/also-excluded': 'inner-slash patterns match at any depth\n',
    'app.lock': '',
    'etc/sub/db.lock': '',
    'etc/secret.key': 'secret\n',
    'etc/system.yaml': 'shared: {}\n',
    'sub/etc/secret.key': 'anchored pattern: this one is kept\n',
  });
  await settleTimes(s.src);
  const excluded = ['logs', 'data/tmp', 'x/data/tmp', 'app.lock', 'etc/sub/db.lock', 'etc/secret.key'];
  const isExcluded = (rel: string): boolean => excluded.some((e) => rel === e || rel.startsWith(e + '/'));

  const summary = await syncOnce(s, ['--exclude-from', excludes]);
  await assertSameTree(s.src, s.dst, { skipSrc: isExcluded });
  for (const rel of excluded) assert.equal(manifestRow(s.dst, rel), undefined, `${rel} is in the manifest`);
  assert.equal(summary.filesScanned, 4);
  assert.equal(summary.filesSent, 4);
  assert.ok((await readSynced(s.dst))['notes/logs'] !== undefined);

  // Still excluded on a rerun, and nothing is planned for what the excludes hide.
  const again = await syncOnce(s, ['--exclude-from', excludes]);
  assert.equal(again.filesSent + again.tombstones + again.metaUpdates, 0);
});

test('(f) chmod-only and touch-only changes travel as metadata updates, not content', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  await buildTree(s.src, {
    'chmod-me.sh': { content: '#!/bin/sh\n', mode: 0o644 },
    'touch-me.txt': 'same content, new mtime\n',
    'dir/both.txt': { content: 'both\n', mode: 0o640 },
  });
  await settleTimes(s.src);
  await syncOnce(s);
  const inodes = await Promise.all(['chmod-me.sh', 'touch-me.txt', 'dir/both.txt'].map(async (rel) => (await stat(join(s.dst, rel))).ino));

  await chmod(join(s.src, 'chmod-me.sh'), 0o755);
  await setTime(join(s.src, 'touch-me.txt'), PAST + 777);
  await chmod(join(s.src, 'dir/both.txt'), 0o600);
  await setTime(join(s.src, 'dir/both.txt'), PAST + 999);

  const summary = await syncOnce(s);
  assert.equal(summary.filesSent, 0);
  assert.equal(summary.bytesSent, 0);
  assert.equal(summary.metaUpdates, 3);
  await assertSameTree(s.src, s.dst);
  // Same inodes: the standby's files were updated in place, not rewritten.
  const after = await Promise.all(['chmod-me.sh', 'touch-me.txt', 'dir/both.txt'].map(async (rel) => (await stat(join(s.dst, rel))).ino));
  assert.deepEqual(after, inodes);
  assert.equal(manifestRow(s.dst, 'chmod-me.sh')?.mode, 0o755);
  assert.equal(manifestRow(s.dst, 'touch-me.txt')?.mtime_ms, PAST + 777);
});

test('(g) a file whose mtime lies 50 ns below a millisecond boundary is sent, and cached like any other', { timeout: 60_000 }, async () => {
  // Node's float mtimeMs rounds such a time up to the next millisecond; once, every check of this
  // file disagreed with its hash's exact floor, so it "changed while it was sent" on every pass.
  const s = await openStandby();
  await buildTree(s.src, { 'edge.bin': 'a hair below the millisecond\n', 'plain.txt': 'plain\n' });
  execFileSync('touch', ['-d', '@1790000000.123999950', join(s.src, 'edge.bin')]);
  // Old enough for both hashes to be cached (a file younger than 1 s is hashed again next time).
  execFileSync('touch', ['-d', '@1790000000.5', join(s.src, 'plain.txt')]);
  const first = await syncOnce(s);
  assert.equal(first.filesSent, 2);
  assert.equal(first.passes, 1, 'no retry pass');
  await assertSameTree(s.src, s.dst);
  assert.equal(manifestRow(s.dst, 'edge.bin')?.mtime_ms, 1_790_000_000_124);
  const again = await syncOnce(s);
  assert.equal(again.filesSent, 0);
  assert.equal(again.hashed, 0, 'the hash was cached under the same mtime the next scan sees');
});
