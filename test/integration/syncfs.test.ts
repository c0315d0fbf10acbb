// syncfs (src/native.ts, native/syncfs.c) and the receiver's group durability built on it
// (src/receiver/durable.ts), on real file systems: written data stops being dirty once syncfs
// returns (the kernel's Dirty count in /proc/meminfo falls by what was written; without syncfs it
// would stay dirty for dirty_expire_centisecs, 30 s by default), errors come back with their errno
// code.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { syncfs } from '../../src/native.js';
import { syncFileSystems } from '../../src/receiver/durable.js';

let tmp: string;
before(async () => {
  // Below the package, not os.tmpdir(): /tmp may be a tmpfs, where nothing is ever written back.
  tmp = await mkdtemp(path.join(process.cwd(), '.syncfs-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The kernel's count of dirty page-cache bytes. */
function dirtyBytes(): number {
  const line = execFileSync('grep', ['^Dirty:', '/proc/meminfo'], { encoding: 'utf8' });
  return Number(/(\d+)/.exec(line)?.[1] ?? NaN) * 1024;
}

/**
 * Runs `write` until the machine's dirty count rose by at least `least` bytes over it (the premise:
 * the data is still dirty), at most 3 times, and returns that count. Dirty is machine-wide: a sync
 * by another process on the same file system (a receiver's group commit in a parallel test run)
 * can write the data back before it is measured, which says nothing about syncfs.
 */
function dirtied(write: (attempt: number) => void, least: number, what: string): number {
  const seen: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const before = dirtyBytes();
    write(attempt);
    const written = dirtyBytes();
    if (written - before >= least) return written;
    seen.push(`${before} -> ${written}`);
  }
  assert.fail(`${what} are not dirty before the sync, in 3 attempts: Dirty ${seen.join(', ')}`);
}

describe('syncfs', () => {
  it('writes back what was written: dirty bytes fall by the file written once it returns', async () => {
    const MiB = 1 << 20;
    const size = 64 * MiB;
    const fd = openSync(path.join(tmp, 'big'), 'w');
    try {
      // The premise: the data is still dirty (only a sync by someone else, or a tiny dirty limit, would flush it this soon).
      const written = dirtied((attempt) => {
        const chunk = Buffer.alloc(MiB, attempt);
        for (let at = 0; at < size; at += MiB) writeSync(fd, chunk, 0, MiB, at);
      }, size / 2, "the file's pages");
      await syncfs(fd);
      const synced = dirtyBytes();
      assert.ok(written - synced >= size / 2, `syncfs left the data dirty: Dirty ${written} before, ${synced} after`);
    } finally {
      closeSync(fd);
    }
  });

  it('rejects with the errno code: EBADF for a closed descriptor; a TypeError for a non-integer', async () => {
    const fd = openSync(tmp, 'r');
    closeSync(fd);
    await assert.rejects(syncfs(fd), (err: NodeJS.ErrnoException) => err.code === 'EBADF' && err.syscall === 'syncfs');
    assert.throws(() => syncfs(-1), TypeError);
    assert.throws(() => syncfs('3' as unknown as number), TypeError);
  });
});

describe('syncFileSystems', () => {
  it('writes back what was written in the directories given (the group commit of the receiver)', async () => {
    const dirs = [path.join(tmp, 'g1'), path.join(tmp, 'g2')];
    const written = dirtied((attempt) => {
      for (const [i, dir] of dirs.entries()) {
        mkdirSync(dir, { recursive: true });
        for (let f = 0; f < 16; f++) writeFileSync(path.join(dir, `f${f}`), Buffer.alloc(2 << 20, i + f + attempt));
      }
    }, 32 << 20, "the files' pages");
    const fds = dirs.map((dir) => openSync(dir, 'r'));
    try {
      await syncFileSystems([...fds, fds[0] as number]);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    const synced = dirtyBytes();
    assert.ok(written - synced >= 32 << 20, `the group's data stayed dirty: Dirty ${written} before, ${synced} after`);
  });

  it('fails naming the problem: EBADF for a descriptor already closed', async () => {
    const fd = openSync(tmp, 'r');
    closeSync(fd);
    await assert.rejects(syncFileSystems([fd]), { code: 'EBADF' });
  });
});
