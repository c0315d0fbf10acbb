// hash.ts: xxh64 vectors, chunked reads across the buffer boundary, streaming hasher, and every way a
// file can change while it is read (made deterministic with the afterChunk seam or a stale `expect`).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs, { existsSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { appendFile, lstat, mkdtemp, rename, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import xxhash from 'xxhash-wasm';
import { wholeMs } from '../../../src/entry.js';
import { WarmsyncError } from '../../../src/errors.js';
import { SYNC_READ_MAX_BYTES, createHasher, sharingHashes, type FileHasher, type HashResult } from '../../../src/scan/hash.js';

const MiB = 1024 * 1024;
/** An mtime utimes can restore exactly (no sub-second part). */
const WHOLE_SECOND = 1_600_000_000;

let dir: string;
let hasher: FileHasher;
let reference: (data: Uint8Array) => string;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'warmsync-hash-'));
  hasher = await createHasher();
  const api = await xxhash();
  reference = (data) => api.h64Raw(data).toString(16).padStart(16, '0');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function isChanged(err: unknown): boolean {
  return err instanceof WarmsyncError && err.code === 'FILE_CHANGED' && /changed while it was read/.test(err.message);
}

describe('hashBytes', () => {
  const vectors: [string, Uint8Array, string][] = [
    ['empty input', new Uint8Array(0), 'ef46db3751d8e999'],
    ['"abc"', Buffer.from('abc'), '44bc2cf5ad770999'],
  ];
  for (const [name, data, expected] of vectors) {
    it(`xxh64 of ${name} is ${expected}`, () => {
      assert.equal(hasher.hashBytes(data), expected);
      assert.equal(reference(data), expected);
    });
  }

  it('zero-pads to 16 lowercase hex digits and agrees with xxhash-wasm on random inputs', () => {
    for (let i = 0; i < 300; i++) {
      const data = randomBytes(i * 7);
      const h = hasher.hashBytes(data);
      assert.match(h, /^[0-9a-f]{16}$/);
      assert.equal(h, reference(data));
    }
  });

  it('a second createHasher() shares the module and gives the same answers', async () => {
    const other = await createHasher();
    assert.equal(other.hashBytes(Buffer.from('abc')), '44bc2cf5ad770999');
  });
});

describe('createStreamHasher', () => {
  it('equals the one-shot hash whatever the chunking', () => {
    const data = randomBytes(3 * MiB + 12345);
    const oneShot = hasher.hashBytes(data);
    for (const step of [1 * MiB, 65536, 4093, 3 * MiB + 12345]) {
      const s = hasher.createStreamHasher();
      for (let off = 0; off < data.length; off += step) s.update(data.subarray(off, off + step));
      assert.equal(s.digest(), oneShot, `chunks of ${step}`);
    }
  });

  it('digests the empty stream like the empty input, and interleaved streams stay independent', () => {
    assert.equal(hasher.createStreamHasher().digest(), 'ef46db3751d8e999');
    const a = hasher.createStreamHasher();
    const b = hasher.createStreamHasher();
    a.update(Buffer.from('a'));
    b.update(Buffer.from('x'));
    a.update(Buffer.from('bc'));
    assert.equal(a.digest(), '44bc2cf5ad770999');
    assert.equal(b.digest(), hasher.hashBytes(Buffer.from('x')));
  });
});

describe('hashFile', () => {
  it('hashes empty and small files to the known vectors, with their metadata', async () => {
    const empty = path.join(dir, 'empty');
    const abc = path.join(dir, 'abc');
    await writeFile(empty, '');
    await writeFile(abc, 'abc', { mode: 0o640 });
    assert.equal((await hasher.hashFile(empty)).hash, 'ef46db3751d8e999');
    const r = await hasher.hashFile(abc);
    const st = await stat(abc);
    assert.deepEqual(r, { hash: '44bc2cf5ad770999', size: 3, mtimeMs: wholeMs(st.mtimeMs), ino: st.ino, mode: 0o640 });
    assert.ok(Number.isInteger(r.mtimeMs));
  });

  it('multi-MiB files across and exactly on the 1 MiB buffer boundary equal the one-shot hash', async () => {
    for (const size of [1 * MiB - 1, 1 * MiB, 1 * MiB + 1, 2 * MiB, 3 * MiB + 777]) {
      const data = randomBytes(size);
      const file = path.join(dir, `big-${size}`);
      await writeFile(file, data);
      const r = await hasher.hashFile(file);
      assert.equal(r.hash, reference(data), `size ${size}`);
      assert.equal(r.size, size);
    }
  });

  it('reads a file under SYNC_READ_MAX_BYTES synchronously, one at or above it through the thread pool', async (t) => {
    const readSync = t.mock.method(fs, 'readSync');
    syncBuiltinESMExports(); // hash.ts imported it by name
    try {
      for (const [size, sync] of [[SYNC_READ_MAX_BYTES - 1, true], [SYNC_READ_MAX_BYTES, false], [0, true]] as const) {
        const data = randomBytes(size);
        const file = path.join(dir, `path-${size}`);
        await writeFile(file, data);
        const before = readSync.mock.callCount();
        assert.equal((await hasher.hashFile(file)).hash, reference(data), `size ${size}`);
        assert.equal(readSync.mock.callCount() > before, sync, `size ${size}: read with readSync`);
      }
    } finally {
      t.mock.restoreAll();
      syncBuiltinESMExports();
    }
  });

  it('gives the same hash with a tiny buffer (many chunks)', async () => {
    const data = randomBytes(20_003);
    const file = path.join(dir, 'tiny-buffer');
    await writeFile(file, data);
    const small = await createHasher({ bufferSize: 7 });
    assert.equal((await small.hashFile(file)).hash, reference(data));
  });

  it('accepts a matching expectation', async () => {
    const file = path.join(dir, 'expected');
    await writeFile(file, 'content');
    const st = await stat(file);
    const r = await hasher.hashFile(file, { size: st.size, mtimeMs: wholeMs(st.mtimeMs), ino: st.ino });
    assert.equal(r.hash, hasher.hashBytes(Buffer.from('content')));
  });

  it('FILE_CHANGED when the file differs from the expectation (size, mtime or inode)', async () => {
    const file = path.join(dir, 'stale');
    await writeFile(file, 'content');
    const st = await stat(file);
    const good = { size: st.size, mtimeMs: wholeMs(st.mtimeMs), ino: st.ino };
    for (const expect of [{ ...good, size: 6 }, { ...good, mtimeMs: good.mtimeMs - 1 }, { ...good, ino: st.ino + 1 }]) {
      await assert.rejects(hasher.hashFile(file, expect), isChanged);
    }
  });

  // The afterChunk seam runs between two reads: the file changes in the middle of hashing.
  const midRead: [string, (file: string) => Promise<void>][] = [
    ['appended to', (file) => appendFile(file, 'more')],
    ['truncated', (file) => truncate(file, 10)],
    ['replaced by rename (another inode)', async (file) => {
      await writeFile(`${file}.new`, randomBytes(3 * MiB));
      await rename(`${file}.new`, file);
    }],
    ['rewritten in place with the same size and its mtime restored (only ctime moves)', async (file) => {
      const st = await stat(file);
      await writeFile(file, Buffer.alloc(st.size, 1));
      await utimes(file, WHOLE_SECOND, WHOLE_SECOND); // the exact mtime it had, to the nanosecond
    }],
    ['deleted and recreated', async (file) => {
      await rm(file);
      await writeFile(file, randomBytes(3 * MiB));
    }],
  ];
  for (const [what, change] of midRead) {
    it(`FILE_CHANGED when the file is ${what} during hashing`, async () => {
      const file = path.join(dir, `mid-${what.split(' ')[0]}`);
      await writeFile(file, randomBytes(3 * MiB));
      await utimes(file, WHOLE_SECOND, WHOLE_SECOND);
      await delay(30); // let the coarse kernel clock tick, so the change gets a new ctime
      let calls = 0;
      const h = await createHasher({
        afterChunk: async (p, bytes) => {
          assert.equal(p, file);
          if (calls++ === 0) {
            assert.equal(bytes, MiB);
            await change(file);
          }
        },
      });
      await assert.rejects(h.hashFile(file), isChanged);
      assert.ok(calls >= 1);
      // Once the file is quiet again it hashes fine.
      const r = await hasher.hashFile(file);
      assert.equal(r.size, (await stat(file)).size);
    });
  }

  it('FILE_CHANGED when bytes read differ from the size (a /proc file reports size 0)', { skip: !existsSync('/proc/self/status') }, async () => {
    assert.equal((await lstat('/proc/self/status')).size, 0);
    await assert.rejects(hasher.hashFile('/proc/self/status'), isChanged);
  });

  it('never follows a symlink (FILE_CHANGED), even to a regular file', async () => {
    const target = path.join(dir, 'abc');
    const link = path.join(dir, 'link-to-abc');
    await symlink(target, link);
    await assert.rejects(hasher.hashFile(link), isChanged);
  });

  it('does not hang on a FIFO and rejects a directory', async () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await assert.rejects(hasher.hashFile(fifo), isChanged);
    await assert.rejects(hasher.hashFile(dir), isChanged);
  });

  it('passes fs errors through (ENOENT for a missing file)', async () => {
    await assert.rejects(hasher.hashFile(path.join(dir, 'missing')), { code: 'ENOENT' });
  });

  describe('sharingHashes: a file read once for every caller that asks at about the same time', () => {
    async function fileOf(name: string, size: number): Promise<{ file: string; expect: { size: number; mtimeMs: number; ino: number } }> {
      const file = path.join(dir, name);
      await writeFile(file, randomBytes(size));
      const st = await stat(file);
      return { file, expect: { size: st.size, mtimeMs: wholeMs(st.mtimeMs), ino: st.ino } };
    }
    function counting(mayKeep: (result: HashResult, hashedAt: number) => boolean, capacity = 8): { shared: FileHasher; reads: () => number } {
      let reads = 0;
      const shared = sharingHashes({ ...hasher, hashFile: (p, e) => { reads++; return hasher.hashFile(p, e); } }, { capacity, mayKeep });
      return { shared, reads: () => reads };
    }

    it('asked while it is being hashed: read once, the later result marked shared', async () => {
      const { file, expect } = await fileOf('shared', 300_000);
      const { shared, reads } = counting(() => false);
      const [first, second] = await Promise.all([shared.hashFile(file, expect), shared.hashFile(file, expect)]);
      assert.equal(reads(), 1);
      assert.equal(first.shared, undefined);
      assert.equal(second.shared, true);
      assert.equal(second.hash, first.hash);
      // Not kept (mayKeep said no): read again.
      assert.equal((await shared.hashFile(file, expect)).shared, undefined);
      assert.equal(reads(), 2);
    });

    it('asked after: the result kept when mayKeep allows, the newest `capacity` of them; never for another size, mtime or inode', async () => {
      const files = await Promise.all([0, 1, 2].map((i) => fileOf(`kept-${i}`, 1000 + i)));
      const { shared, reads } = counting(() => true, 2);
      for (const { file, expect } of files) await shared.hashFile(file, expect);
      assert.equal(reads(), 3);
      const [oldest, , newest] = files as [typeof files[0], typeof files[0], typeof files[0]];
      assert.equal((await shared.hashFile(newest.file, newest.expect)).shared, true);
      assert.equal(reads(), 3);
      assert.equal((await shared.hashFile(oldest.file, oldest.expect)).shared, undefined, 'the oldest went');
      assert.equal(reads(), 4);
      await assert.rejects(shared.hashFile(newest.file, { ...newest.expect, mtimeMs: newest.expect.mtimeMs + 1 }), { code: 'FILE_CHANGED' });
      assert.equal(reads(), 5, 'another mtime is another file: read, and found changed');
    });
  });

  it('hashes many files concurrently without mixing their states', async () => {
    const datas = Array.from({ length: 40 }, (_, i) => randomBytes(i * 50_000));
    await Promise.all(datas.map((d, i) => writeFile(path.join(dir, `conc-${i}`), d)));
    const results = await Promise.all(datas.map((_, i) => hasher.hashFile(path.join(dir, `conc-${i}`))));
    results.forEach((r, i) => assert.equal(r.hash, reference(datas[i] as Buffer)));
  });
});
