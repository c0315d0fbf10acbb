/**
 * Resuming an interrupted large transfer: the receiver keeps what arrived (PartialStore), a later
 * StagedFile for the same content continues from there, hashes the kept prefix again, and the
 * finished file verifies. A partial of other content is never used.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PartialStore } from '../../src/receiver/partials.js';
import { StagedFile } from '../../src/receiver/staging.js';
import { createHasher, type FileHasher } from '../../src/scan/hash.js';

let dir: string;
let hasher: FileHasher;
const content = randomBytes(3 << 20);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warmsync-resume-'));
  hasher = await createHasher();
});
after(() => rm(dir, { recursive: true, force: true }));

test('a kept partial is continued from its length and the whole file verifies', async () => {
  const partials = new PartialStore(join(dir, 'state-a'));
  await mkdir(partials.dir, { recursive: true });
  const target = { size: content.byteLength, hash: hasher.hashBytes(content), mode: 0o644, mtimeMs: 1_700_000_000_000 };
  const final = join(dir, 'big.bin');

  const first = await StagedFile.create(final, target, hasher.createStreamHasher(), partials);
  assert.equal(first.bytesWritten, 0);
  await first.write(0, content.subarray(0, 1 << 20));
  await first.keepAsPartial(partials);
  assert.deepEqual(await readdir(partials.dir), [`${target.hash}-${target.size}`]);

  const second = await StagedFile.create(final, target, hasher.createStreamHasher(), partials);
  assert.equal(second.bytesWritten, 1 << 20, 'continues where the first left off');
  assert.deepEqual(await readdir(partials.dir), [], 'the partial was taken');
  await second.write(1 << 20, content.subarray(1 << 20));
  await second.verify();
  await second.seal();
  await second.install();
  assert.ok((await readFile(final)).equals(content));
});

test('a partial is only used for the same hash and size; a corrupt one fails verification', async () => {
  const partials = new PartialStore(join(dir, 'state-b'));
  await mkdir(partials.dir, { recursive: true });
  const target = { size: content.byteLength, hash: hasher.hashBytes(content), mode: 0o644, mtimeMs: 1 };
  const final = join(dir, 'other.bin');

  const staged = await StagedFile.create(final, target, hasher.createStreamHasher(), partials);
  const garbage = Buffer.alloc(1 << 20, 7);
  await staged.write(0, garbage);
  await staged.keepAsPartial(partials);

  const otherContent = { ...target, hash: '0123456789abcdef' };
  const fresh = await StagedFile.create(final, otherContent, hasher.createStreamHasher(), partials);
  assert.equal(fresh.bytesWritten, 0, 'different hash: starts over');
  await fresh.abort();

  const resumed = await StagedFile.create(final, target, hasher.createStreamHasher(), partials);
  assert.equal(resumed.bytesWritten, 1 << 20);
  await resumed.write(1 << 20, content.subarray(1 << 20));
  await assert.rejects(resumed.verify(), /CHECKSUM|hashed to/);
  await resumed.abort(); // as the session does with a file that failed
  assert.equal((await readdir(dir)).filter((n) => n.startsWith('.warmsync-tmp.')).length, 0, 'no temp file left behind');
});
