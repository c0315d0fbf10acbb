// Integration: lostStandbyRoot and mountedBelow, what `status`, `promote`, `failover` and the receiver ask
// before any SAFE verdict, on real directories: the root's path still names the directory recorded
// (device and inode), directly or through a symlink; moved away with another made in its place,
// removed, or a file there, each is named; with nothing recorded, any directory will do. Where it
// may mount (CI runs as root), with real tmpfs mounts: a file system mounted at or below the root is found (a name
// with a space, escaped in mountinfo, too), and once unmounted it is named; a bind mount of the
// same file system is no disk that can go missing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { lostStandbyRoot, mountedBelow, rootIdentity } from '../../src/gate/standby-root.js';
import { cannotMount } from '../helpers/mount.js';

const noMounts = (identity: string | null) => ({ identity, mounts: [] });

describe('lostStandbyRoot: the root itself', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-standby-root-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('the directory recorded, by its path or through a symlink: null', async () => {
    const root = join(dir, 'same');
    await mkdir(root);
    const recorded = rootIdentity(await stat(root));
    assert.equal(lostStandbyRoot(root, noMounts(recorded)), null);
    await symlink(root, join(dir, 'same-link'));
    assert.equal(lostStandbyRoot(join(dir, 'same-link'), noMounts(recorded)), null);
  });

  test('moved away, another directory made at its path: named as replaced', async () => {
    const root = join(dir, 'replaced');
    await mkdir(root);
    const recorded = rootIdentity(await stat(root));
    await rename(root, `${root}.old`);
    await mkdir(root);
    assert.equal(lostStandbyRoot(root, noMounts(recorded)), `${root} is not the directory the receiver started on (replaced, moved, or a file system unmounted from it)`);
    // Nothing recorded (a manifest from before identities): a directory is enough.
    assert.equal(lostStandbyRoot(root, noMounts(null)), null);
  });

  test('removed: missing; a file in its place: not a directory, recorded or not', async () => {
    const root = join(dir, 'removed');
    await mkdir(root);
    const recorded = rootIdentity(await stat(root));
    await rm(root, { recursive: true });
    assert.equal(lostStandbyRoot(root, noMounts(recorded)), `${root} is missing`);
    assert.equal(lostStandbyRoot(root, noMounts(null)), `${root} is missing`);
    await writeFile(root, 'not a directory\n');
    assert.equal(lostStandbyRoot(root, noMounts(recorded)), `${root} is not a directory`);
    assert.equal(lostStandbyRoot(root, noMounts(null)), `${root} is not a directory`);
  });
});

describe('mountedBelow and lostStandbyRoot: file systems mounted at and below the root', { skip: cannotMount() }, () => {
  let dir: string;
  const mounted: string[] = [];
  const mount = (...args: string[]): void => {
    execFileSync('mount', args);
    mounted.push(args.at(-1) as string);
  };
  const umount = (at: string): void => {
    execFileSync('umount', [at]);
    mounted.splice(mounted.indexOf(at), 1);
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-standby-mounts-'));
  });
  after(async () => {
    for (const at of mounted.reverse()) execFileSync('umount', ['-l', at]);
    await rm(dir, { recursive: true, force: true });
  });

  test('found where a file system of its own is mounted; named once it is not; a bind of the same one is not counted', async () => {
    const root = join(dir, 'root');
    await mkdir(join(root, 'data/file store'), { recursive: true });
    await mkdir(join(root, 'etc'), { recursive: true });
    await mkdir(join(dir, 'elsewhere'));
    assert.deepEqual(mountedBelow(root), []);
    mount('-t', 'tmpfs', 'tmpfs', join(root, 'data/file store'));
    mount('--bind', join(dir, 'elsewhere'), join(root, 'etc'));
    const mounts = mountedBelow(root);
    assert.deepEqual(mounts, ['data/file store']);
    const recorded = { identity: rootIdentity(await stat(root)), mounts };
    assert.equal(lostStandbyRoot(root, recorded), null);
    umount(join(root, 'data/file store'));
    assert.equal(lostStandbyRoot(root, recorded), `${root}: the file system mounted at ${join(root, 'data/file store')} when the receiver started is not mounted there now`);
    await rm(join(root, 'data/file store'), { recursive: true });
    assert.match(lostStandbyRoot(root, recorded) ?? '', /, where a file system was mounted, cannot be read \(ENOENT/);
  });

  test('the root itself a mount point: recorded as "", named once unmounted', async () => {
    const root = join(dir, 'own');
    await mkdir(root);
    mount('-t', 'tmpfs', 'tmpfs', root);
    const recorded = { identity: rootIdentity(await stat(root)), mounts: mountedBelow(root) };
    assert.deepEqual(recorded.mounts, ['']);
    umount(root);
    // The directory under the mount is another one: the identity says so first.
    assert.match(lostStandbyRoot(root, recorded) ?? '', /is not the directory the receiver started on/);
    assert.equal(lostStandbyRoot(root, { identity: null, mounts: recorded.mounts }), `${root}: the file system mounted at ${root} when the receiver started is not mounted there now`);
  });
});
