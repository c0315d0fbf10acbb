/**
 * Resuming an interrupted large transfer: the receiver keeps what arrived (PartialStore), a later
 * StagedFile for the same file (path, size, mtime; with or without a hash announced) continues from
 * there, hashes the kept prefix again, and the finished file verifies. A partial of another file is
 * never used; one of other content under the same name fails verification.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfinedRoot } from '../../src/confined/root.js';
import { PartialStore, partialName } from '../../src/receiver/partials.js';
import { StagedFile, type StagedTarget, type StreamHasher } from '../../src/receiver/staging.js';
import { createHasher, type FileHasher } from '../../src/scan/hash.js';

let dir: string;
let root: ConfinedRoot;
let hasher: FileHasher;
const content = randomBytes(3 << 20);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warmsync-resume-'));
  root = ConfinedRoot.open(dir);
  hasher = await createHasher();
});
after(async () => {
  root.close();
  await rm(dir, { recursive: true, force: true });
});

/** StagedFile.create for `final`, a file directly in `dir`. */
async function create(final: string, target: StagedTarget, streamHasher: StreamHasher, partials: PartialStore): Promise<StagedFile> {
  const parent = root.needDir('');
  try {
    return await StagedFile.create({ parent, rel: basename(final), finalPath: final, recorded: false }, target, streamHasher, partials);
  } finally {
    parent.release();
  }
}

/** A partial store in `dir`/`name` (the receiver's is STATE/partial). */
async function storeIn(name: string): Promise<PartialStore> {
  await mkdir(join(dir, name), { recursive: true });
  return new PartialStore(root, name);
}

test('a kept partial is continued from its length and the whole file verifies', async () => {
  const partials = await storeIn('state-a');
  const target = { size: content.byteLength, hash: hasher.hashBytes(content), mode: 0o644, mtimeMs: 1_700_000_000_000 };
  const final = join(dir, 'big.bin');

  const first = await create(final, target, hasher.createStreamHasher(), partials);
  assert.equal(first.bytesWritten, 0);
  await first.write(0, content.subarray(0, 1 << 20));
  await first.keepAsPartial(partials);
  assert.deepEqual(await readdir(partials.dir), [partialName(final, target)]);

  // Sent again hashed while sent (as a scan after a reconnect does): the same name, taken.
  const second = await create(final, { ...target, hash: null }, hasher.createStreamHasher(), partials);
  assert.equal(second.bytesWritten, 1 << 20, 'continues where the first left off');
  assert.deepEqual(await readdir(partials.dir), [], 'the partial was taken');
  await second.write(1 << 20, content.subarray(1 << 20));
  second.expectHash(target.hash); // its fileEnd
  await second.verify();
  await second.seal();
  second.install();
  assert.ok((await readFile(final)).equals(content));
});

test('a partial is only used for the same path, size and mtime; a corrupt one fails verification', async () => {
  const partials = await storeIn('state-b');
  const target = { size: content.byteLength, hash: hasher.hashBytes(content), mode: 0o644, mtimeMs: 1 };
  const final = join(dir, 'other.bin');

  const staged = await create(final, target, hasher.createStreamHasher(), partials);
  const garbage = Buffer.alloc(1 << 20, 7);
  await staged.write(0, garbage);
  await staged.keepAsPartial(partials);

  const otherFile = { ...target, mtimeMs: 2 };
  const fresh = await create(final, otherFile, hasher.createStreamHasher(), partials);
  assert.equal(fresh.bytesWritten, 0, 'different mtime: starts over');
  await fresh.abort();

  const resumed = await create(final, target, hasher.createStreamHasher(), partials);
  assert.equal(resumed.bytesWritten, 1 << 20);
  await resumed.write(1 << 20, content.subarray(1 << 20));
  await assert.rejects(resumed.verify(), /CHECKSUM|hashed to/);
  await resumed.abort(); // as the session does with a file that failed
  assert.equal((await readdir(dir)).filter((n) => n.startsWith('.warmsync-tmp.')).length, 0, 'no temp file left behind');
});
