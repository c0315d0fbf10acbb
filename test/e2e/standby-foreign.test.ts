// e2e: what someone else left in the standby root (issue 17 findings 10 and 11). (a) At first sync,
// an unrelated file or symlink at a synced path, and a directory where the source has a file, are
// moved aside into STATE/displaced (logged), never overwritten: their content survives there and
// the synced files take their place. (b) A hard link planted at a synced path, to an inode outside
// the root: a chmod and a touch on the source travel as metadata updates, which the receiver
// refuses to make through the link (NEEDS_CONTENT); the agent sends the content again, a new file
// replaces the link, and the inode outside keeps its mode and mtime.
import assert from 'node:assert/strict';
import { chmod, link, lstat, mkdir, readFile, readdir, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { assertSameTree, buildTree, closeStandbys, openStandby, runCli, settleTimes, syncOnce } from '../helpers/e2e.js';

after(closeStandbys);

/** Every file below `dir` (relative), with its content. */
async function filesBelow(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const abs = join(e.parentPath, e.name);
    out[abs.slice(dir.length + 1)] = await readFile(abs, 'utf8');
  }
  return out;
}

describe('unrelated entries on the standby at first sync', () => {
  test('(a) files, symlinks and directories in the way are displaced, never overwritten', async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'a/x': 'source x\n', 'b': 'source b\n', 'c': 'source c\n', 'd/e': 'source e\n' });
    await settleTimes(s.src);
    // Put there by someone else before the first sync.
    await mkdir(join(s.dst, 'a'));
    await writeFile(join(s.dst, 'a', 'x'), 'unrelated x\n');
    await symlink('/etc/hostname', join(s.dst, 'b'));
    await mkdir(join(s.dst, 'c'));
    await writeFile(join(s.dst, 'c', 'inside'), 'unrelated, in a dir where the source has a file\n');

    await syncOnce(s);
    await assertSameTree(s.src, s.dst);
    const displacedRoot = join(s.dst, '.warmsync', 'displaced');
    const displaced = await filesBelow(displacedRoot);
    const byPath = Object.fromEntries(Object.entries(displaced).map(([rel, content]) => [rel.slice(rel.indexOf('/') + 1), content]));
    assert.deepEqual(byPath, { 'a/x': 'unrelated x\n', 'c/inside': 'unrelated, in a dir where the source has a file\n' });
    // The symlink was moved aside too, as a symlink.
    const ids = await readdir(displacedRoot);
    const links = [];
    for (const id of ids) {
      const st = await lstat(join(displacedRoot, id, 'b')).catch(() => null);
      if (st?.isSymbolicLink()) links.push(id);
    }
    assert.equal(links.length, 1, 'the unrelated symlink is in the displaced dir');
    assert.match(s.receiver.stderr() + '', /displaced to .*a\/x: an unrelated file stood at a path the manifest does not know/);

    // A second sync changes nothing more, and verify agrees with the tree.
    await syncOnce(s);
    assert.deepEqual(await readdir(displacedRoot), ids);
    const v = await runCli(['verify', '--root', s.dst], { timeoutMs: 30_000 });
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });
});

describe('a hard link planted in the standby root', () => {
  test('(b) metadata is never changed through it: the content is sent again, the inode outside keeps its mode and mtime', async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'h': 'same content\n', 'other': 'x\n' });
    await settleTimes(s.src);
    await syncOnce(s);

    // Someone replaces the synced file by a hard link to a file outside the root, same content and size.
    const outside = join(s.dir, 'outside-inode');
    await writeFile(outside, 'same content\n', { mode: 0o600 });
    const past = new Date('2020-01-01T00:00:00Z');
    await utimes(outside, past, past);
    await chmod(outside, 0o600);
    await link(outside, join(s.dst, 'h.planted'));
    const { rename } = await import('node:fs/promises');
    await rename(join(s.dst, 'h.planted'), join(s.dst, 'h'));
    assert.equal((await stat(join(s.dst, 'h'))).nlink, 2);

    // Only mode and mtime change on the source: a metadata update.
    await chmod(join(s.src, 'h'), 0o644);
    const later = new Date('2024-05-05T05:05:05Z');
    await utimes(join(s.src, 'h'), later, later);
    const summary = await syncOnce(s);
    assert.ok(summary.filesSent >= 1, `the content was sent again (${JSON.stringify(summary)})`);

    const after = await stat(outside);
    assert.equal(after.mode & 0o7777, 0o600, 'the inode outside kept its mode');
    assert.equal(after.mtimeMs, past.getTime(), 'the inode outside kept its mtime');
    assert.equal(after.nlink, 1, 'the standby no longer names that inode');
    const h = await stat(join(s.dst, 'h'));
    assert.equal(h.nlink, 1);
    assert.equal(h.mode & 0o7777, 0o644);
    await assertSameTree(s.src, s.dst);
    assert.match(s.receiver.stderr(), /NEEDS_CONTENT.*hard link/);
  });
});
