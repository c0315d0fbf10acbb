/**
 * scan/filestat (the addon's fstatInto and lstatInto, real files): the numbers agree with Node's own
 * stat of the same file, to the nanosecond, at the times where a double rounds (a hair below a
 * millisecond, before 1970); a BigIntStats converts to the same; sameFile sees a changed mtime or
 * ctime, another inode and another size; errors carry the errno's code.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, constants, fstatSync, lstatSync, openSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { wholeMs } from '../../../src/entry.js';
import { fileStatOfBigInt, fstatFile, isRegularFile, lstatFile, sameFile } from '../../../src/scan/filestat.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warmsync-filestat-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('fstatFile / lstatFile agree with Node\'s stat of the same file', () => {
  // Set with touch(1), which takes nanoseconds (Node's utimes cannot): times a hair below a
  // millisecond boundary are where Node's float mtimeMs rounds up and an exact floor would not.
  const times: readonly string[] = [
    '1790000000.123999950', // 120 ns below ...124 ms: the float reads ...124
    '1790000000.123999999',
    '1790000000.124000000',
    '1790000000.000000001',
    '1790000000.999999990', // rounds up across a second
    '1764177919.231500000',
    '-1.000000050', // before 1970: negative seconds, positive nanoseconds
    '-0.000000100',
  ];
  for (const [i, time] of times.entries()) {
    test(`@${time}`, () => {
      const file = join(dir, `t${i}`);
      writeFileSync(file, 'some bytes');
      execFileSync('touch', ['-h', '-d', `@${time}`, file]);
      const plain = lstatSync(file);
      const big = lstatSync(file, { bigint: true });
      const byPath = lstatFile(file);
      const fd = openSync(file, 'r');
      let byFd;
      try {
        byFd = fstatFile(fd);
      } finally {
        closeSync(fd);
      }
      for (const st of [byPath, byFd, fileStatOfBigInt(big)]) {
        assert.equal(wholeMs(st.mtimeMs), wholeMs(plain.mtimeMs), 'the whole ms a plain stat gives');
        assert.equal(BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec), big.mtimeNs, 'mtime to the nanosecond');
        assert.ok(st.mtimeNsec >= 0 && st.mtimeNsec < 1e9, 'nanoseconds as in a timespec');
        assert.equal(BigInt(st.ctimeSec) * 1_000_000_000n + BigInt(st.ctimeNsec), big.ctimeNs, 'ctime to the nanosecond');
        assert.deepEqual([st.mode, st.size, st.ino, st.dev], [plain.mode, plain.size, plain.ino, plain.dev]);
        assert.ok(isRegularFile(st));
      }
      assert.ok(sameFile(byPath, byFd) && sameFile(byFd, fileStatOfBigInt(big)));
    });
  }
});

describe('sameFile', () => {
  test('each field decides: any one moved, even by a nanosecond, is another file', () => {
    const a = lstatFile(dir);
    for (const field of ['dev', 'ino', 'size', 'mtimeSec', 'mtimeNsec', 'ctimeSec', 'ctimeNsec'] as const) {
      assert.ok(!sameFile(a, { ...a, [field]: a[field] + 1 }), field);
    }
    assert.ok(sameFile(a, { ...a, mode: a.mode ^ 0o777 }), 'mode is not compared (chmod moves the ctime anyway)');
  });

  test('another mtime (by a nanosecond), a ctime moved by chmod, another size, another inode: not the same', () => {
    const file = join(dir, 'same');
    writeFileSync(file, 'abc');
    execFileSync('touch', ['-d', '@1790000000.000000001', file]);
    const first = lstatFile(file);
    assert.ok(sameFile(first, lstatFile(file)), 'unchanged');
    execFileSync('touch', ['-d', '@1790000000.000000002', file]);
    const touched = lstatFile(file);
    assert.ok(!sameFile(first, touched), 'mtime one nanosecond later');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30); // past the kernel's coarse clock tick
    chmodSync(file, 0o600);
    const chmodded = lstatFile(file);
    assert.equal(chmodded.mtimeNsec, touched.mtimeNsec, 'chmod keeps the mtime');
    assert.ok(!sameFile(touched, chmodded), 'chmod moved the ctime (a writer cannot restore it)');
    writeFileSync(file, 'abcd');
    assert.ok(!sameFile(chmodded, lstatFile(file)), 'size');
    const other = join(dir, 'other');
    writeFileSync(other, 'abcd');
    renameSync(other, file);
    const replaced = lstatFile(file);
    assert.notEqual(replaced.ino, first.ino);
    assert.ok(!sameFile(chmodded, replaced), 'another inode at the path');
  });
});

describe('what is not a regular file, and errors', () => {
  test('lstatFile reports a symlink as itself; fstatFile of a directory is not a regular file', () => {
    const link = join(dir, 'link');
    symlinkSync('same', link);
    const st = lstatFile(link);
    assert.equal(st.mode & constants.S_IFMT, constants.S_IFLNK);
    assert.ok(!isRegularFile(st));
    const fd = openSync(dir, 'r');
    try {
      assert.equal(fstatFile(fd).mode & constants.S_IFMT, constants.S_IFDIR);
      assert.equal(fstatFile(fd).ino, fstatSync(fd).ino);
    } finally {
      closeSync(fd);
    }
  });

  test('a missing path throws ENOENT naming it; a closed descriptor EBADF; bad arguments a TypeError', () => {
    const missing = join(dir, 'missing');
    assert.throws(() => lstatFile(missing), (err: NodeJS.ErrnoException) => err.code === 'ENOENT' && err.path === missing);
    const fd = openSync(dir, 'r');
    closeSync(fd);
    assert.throws(() => fstatFile(fd), { code: 'EBADF' });
    assert.throws(() => fstatFile(-1), TypeError);
    assert.throws(() => lstatFile('a\0b'), TypeError);
  });
});
