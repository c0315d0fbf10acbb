/**
 * StagedFile.begin: the temp file is created at once while creates are fast, else on the pool with
 * the chunks queued behind it.
 * The bytes land in order, a bad offset is refused at once, and a create that fails is reported by
 * seal with its own code, leaving nothing behind and removing nothing it did not create.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfinedRoot, setCreatesOnPoolForTests } from '../../src/confined/root.js';
import { isTempName } from '../../src/confined/temp.js';
import { ProtocolError } from '../../src/errors.js';
import { StagedFile, type StagedTarget, type StreamHasher } from '../../src/receiver/staging.js';
import { parentOf } from '../../src/relpath.js';
import { createHasher, type FileHasher } from '../../src/scan/hash.js';

let dir: string;
let root: ConfinedRoot;
let hasher: FileHasher;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warmsync-staging-'));
  root = ConfinedRoot.open(dir);
  hasher = await createHasher();
});
after(async () => {
  root.close();
  await rm(dir, { recursive: true, force: true });
});

/** StagedFile.begin for the absolute path `final` below `dir`, its directory resolved as the session does. */
function begin(final: string, target: StagedTarget, streamHasher: StreamHasher): StagedFile {
  const rel = relative(dir, final);
  const parent = root.needDir(parentOf(rel));
  try {
    return StagedFile.begin({ parent, rel, finalPath: final, recorded: false }, target, streamHasher);
  } finally {
    parent.release();
  }
}

function targetOf(content: Buffer, mtimeMs = 1_700_000_000_123) {
  return { size: content.byteLength, hash: hasher.hashBytes(content), mode: 0o640, mtimeMs };
}

for (const onPool of [false, true]) {
  test(`create ${onPool ? 'on the pool: chunks queue behind it' : 'on the thread: each chunk is written at once'} and land in order; seal and install give the file`, async () => {
    const content = randomBytes(300_000);
    const final = join(dir, `ordered-${onPool}.bin`);
    setCreatesOnPoolForTests(onPool);
    let staged: StagedFile;
    try {
      staged = begin(final, targetOf(content), hasher.createStreamHasher());
    } finally {
      setCreatesOnPoolForTests(false);
    }
    let offset = 0;
    for (; offset < content.byteLength; offset += 65_536) {
      const writing = staged.write(offset, content.subarray(offset, offset + 65_536));
      // Not awaited: on the pool, every chunk is queued while the create may still be running.
      assert.equal(writing === null, !onPool, `chunk at ${offset} written at once`);
      if (!onPool) assert.equal(staged.bytesWritten, Math.min(offset + 65_536, content.byteLength));
    }
    await staged.seal();
    staged.install();
    assert.ok((await readFile(final)).equals(content));
    const st = await lstat(final);
    assert.equal(st.mode & 0o777, 0o640);
    assert.equal(Math.floor(st.mtimeMs), 1_700_000_000_123);
    assert.deepEqual((await readdir(dir)).filter(isTempName), []);
  });
}

test('1 MiB chunks and small ones mixed, all queued at once, land in order', async () => {
  const content = randomBytes((3 << 20) + 777);
  const final = join(dir, 'large.bin');
  const staged = begin(final, targetOf(content), hasher.createStreamHasher());
  const sizes = [1 << 20, 1000, 1 << 20, 300 << 10, 5, (3 << 20) + 777 - (2 << 20) - 1000 - (300 << 10) - 5];
  let offset = 0;
  for (const size of sizes) {
    void staged.write(offset, content.subarray(offset, offset + size));
    offset += size;
  }
  assert.equal(offset, content.byteLength);
  await staged.seal();
  staged.install();
  assert.ok((await readFile(final)).equals(content));
});

test('a chunk at the wrong offset is refused at once, while the create may still run', async () => {
  const content = randomBytes(1000);
  const staged = begin(join(dir, 'offsets.bin'), targetOf(content), hasher.createStreamHasher());
  void staged.write(0, content.subarray(0, 400));
  assert.throws(() => staged.write(500, content.subarray(500)), (err: unknown) => err instanceof ProtocolError && err.code === 'BAD_OFFSET' && /expected 400/.test(err.message));
  assert.throws(() => staged.write(400, Buffer.alloc(601)), (err: unknown) => err instanceof ProtocolError && /past the announced size 1000/.test(err.message));
  await staged.abort();
  assert.deepEqual((await readdir(dir)).filter(isTempName), []);
});

test('content that does not match its hash fails seal with CHECKSUM_MISMATCH; abort removes the temp file', async () => {
  const content = randomBytes(5000);
  const staged = begin(join(dir, 'corrupt.bin'), { ...targetOf(content), hash: '0123456789abcdef' }, hasher.createStreamHasher());
  void staged.write(0, content);
  await assert.rejects(staged.seal(), (err: { code?: string }) => err.code === 'CHECKSUM_MISMATCH');
  await staged.abort();
  assert.deepEqual((await readdir(dir)).filter(isTempName), []);
  await assert.rejects(lstat(join(dir, 'corrupt.bin')), { code: 'ENOENT' });
});

test('a create that fails is reported by seal with its code; chunks queued behind it are dropped', async () => {
  const content = randomBytes(2000);
  // The directory is resolved (held open), then removed: the create in it fails with ENOENT.
  await mkdir(join(dir, 'removed-dir'));
  const parent = root.needDir('removed-dir');
  await rmdir(join(dir, 'removed-dir'));
  const staged = StagedFile.begin({ parent, rel: 'removed-dir/f.bin', finalPath: join(dir, 'removed-dir', 'f.bin'), recorded: false }, targetOf(content), hasher.createStreamHasher());
  parent.release();
  const written = staged.write(0, content);
  await written; // settles (never rejects) even though nothing could be written
  await assert.rejects(staged.seal(), { code: 'ENOENT' });
  assert.equal(staged.bytesWritten, 0);
  await staged.abort();
});

test('a file where the directory should be is refused before any create, and left alone', async () => {
  const notADir = join(dir, 'plain-file');
  await writeFile(notADir, 'keep me');
  assert.throws(() => begin(join(notADir, 'f.bin'), targetOf(Buffer.from('x')), hasher.createStreamHasher()), (err: unknown) => err instanceof ProtocolError && err.code === 'UNSAFE_PATH');
  assert.equal(await readFile(notADir, 'utf8'), 'keep me');
});
