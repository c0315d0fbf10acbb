// The receiver's calls for special files and owners on a directory descriptor (native/special.c
// through src/receiver/special.ts), on real temp dirs as root: mknodAt makes a FIFO (never opened),
// chownAt changes a symlink itself and never what it points to, chmodAt refuses a symlink at the
// name instead of following it, and a name with a slash is refused before any system call.
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfinedRoot, type DirRef } from '../../src/confined/root.js';
import { chmodAt, chownAt, mknodAt } from '../../src/receiver/special.js';
import { skipOrFailUnderCI } from '../helpers/ci.js';

let tmp: string;
let root: ConfinedRoot;
let dir: DirRef;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'warmsync-special-'));
  root = ConfinedRoot.open(tmp);
  dir = root.needDir('');
});
after(async () => {
  dir.release();
  root.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('special files and owners on a directory descriptor', () => {
  it('mknodAt creates a FIFO with the mode asked (less the umask), and EEXIST when the name is taken', () => {
    mknodAt(dir, 'fifo', { type: 'fifo' }, 0o600);
    const st = lstatSync(join(tmp, 'fifo'));
    assert.ok(st.isFIFO());
    assert.equal(st.mode & 0o777, 0o600);
    assert.throws(() => mknodAt(dir, 'fifo', { type: 'fifo' }, 0o600), { code: 'EEXIST' });
  });

  it('chownAt changes a symlink itself, never its target', (t) => {
    if (skipOrFailUnderCI(t, process.getuid?.() === 0 ? null : 'chown needs root')) return;
    writeFileSync(join(tmp, 'target'), 'x');
    symlinkSync(join(tmp, 'target'), join(tmp, 'link'));
    chownAt(dir, 'link', { uid: 1234, gid: 4321 });
    assert.deepEqual([lstatSync(join(tmp, 'link')).uid, lstatSync(join(tmp, 'link')).gid], [1234, 4321]);
    assert.deepEqual([statSync(join(tmp, 'target')).uid, statSync(join(tmp, 'target')).gid], [0, 0]);
  });

  it('chmodAt sets a special file\'s mode and refuses a symlink at the name (its target keeps its mode)', () => {
    mknodAt(dir, 'fifo2', { type: 'fifo' }, 0o600);
    chmodAt(dir, 'fifo2', 0o640);
    assert.equal(lstatSync(join(tmp, 'fifo2')).mode & 0o7777, 0o640);
    writeFileSync(join(tmp, 'secret'), 'x');
    chmodSync(join(tmp, 'secret'), 0o600);
    symlinkSync(join(tmp, 'secret'), join(tmp, 'planted'));
    assert.throws(() => chmodAt(dir, 'planted', 0o777), (err: NodeJS.ErrnoException) => err.code === 'EOPNOTSUPP' || err.code === 'ELOOP');
    assert.equal(statSync(join(tmp, 'secret')).mode & 0o7777, 0o600);
  });

  it('a name that is not one path component is refused before any system call', () => {
    assert.throws(() => mknodAt(dir, 'a/b', { type: 'fifo' }, 0o600), TypeError);
    assert.throws(() => chmodAt(dir, '', 0o600), TypeError);
    assert.throws(() => chownAt(dir, '../x', { uid: 0, gid: 0 }), TypeError);
  });
});
