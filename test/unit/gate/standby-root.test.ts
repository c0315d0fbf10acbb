// Unit: lostStandbyRoot, what `status`, `promote` and the receiver ask before any SAFE verdict:
// the root's path still names the directory the receiver recorded (device and inode), on real
// directories: the same one, reached through a symlink too, is kept; moved away with another made
// in its place, removed, or a file there, each is named; with nothing recorded, any directory will do.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { lostStandbyRoot, rootIdentity } from '../../../src/gate/standby-root.js';

describe('lostStandbyRoot', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-standby-root-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('the directory recorded, by its path or through a symlink: null', async () => {
    const root = join(dir, 'same');
    await mkdir(root);
    const recorded = rootIdentity(await stat(root));
    assert.equal(lostStandbyRoot(root, recorded), null);
    await symlink(root, join(dir, 'same-link'));
    assert.equal(lostStandbyRoot(join(dir, 'same-link'), recorded), null);
  });

  test('moved away, another directory made at its path: named as replaced', async () => {
    const root = join(dir, 'replaced');
    await mkdir(root);
    const recorded = rootIdentity(await stat(root));
    await rename(root, `${root}.old`);
    await mkdir(root);
    assert.equal(lostStandbyRoot(root, recorded), `${root} is not the directory the receiver started on (replaced, moved, or a file system unmounted from it)`);
    // Nothing recorded (a manifest from before identities): a directory is enough.
    assert.equal(lostStandbyRoot(root, null), null);
  });

  test('removed: missing; a file in its place: not a directory, recorded or not', async () => {
    const root = join(dir, 'removed');
    await mkdir(root);
    const recorded = rootIdentity(await stat(root));
    await rm(root, { recursive: true });
    assert.equal(lostStandbyRoot(root, recorded), `${root} is missing`);
    assert.equal(lostStandbyRoot(root, null), `${root} is missing`);
    await writeFile(root, 'not a directory\n');
    assert.equal(lostStandbyRoot(root, recorded), `${root} is not a directory`);
    assert.equal(lostStandbyRoot(root, null), `${root} is not a directory`);
  });
});
