// `warmsync verify` reads the standby through its root's descriptor (standbyHasher, src/receiver/
// verify.ts): a local user who swaps a standby directory for a symlink to a directory elsewhere,
// between verify's walk and its read of a file below, gets the file reported unreadable, not a file
// outside the root read and judged in its place. The outside file here has exactly the recorded
// content, so a verify that followed the symlink would call the standby clean: the plain hasher
// (which reads by path) is run too, to show that this test can tell the two apart.
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { wholeMs } from '../../src/entry.js';
import { Manifest } from '../../src/manifest/manifest.js';
import { standbyHasher, verifyTree } from '../../src/receiver/verify.js';
import { createHasher, type FileHasher } from '../../src/scan/hash.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'warmsync-verify-confined-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const CONTENT = Buffer.from('the recorded bytes\n');

/** A standby with d/f recorded, and a directory outside the root holding a file of the same content. */
async function standby(name: string): Promise<{ root: string; outside: string; manifest: Manifest }> {
  const root = join(tmp, name, 'root');
  const outside = join(tmp, name, 'outside');
  mkdirSync(join(root, 'd'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(root, 'd/f'), CONTENT);
  writeFileSync(join(outside, 'f'), CONTENT);
  const manifest = Manifest.open(join(root, '.warmsync'));
  const hash = (await createHasher()).hashBytes(CONTENT);
  for (const [path, kind] of [['d', 'dir'], ['d/f', 'file']] as const) {
    const st = statSync(join(root, path));
    manifest.recordPresent({
      path, kind, size: kind === 'file' ? CONTENT.length : 0, mtimeMs: wholeMs(st.mtimeMs), mode: st.mode & 0o7777,
      hash: kind === 'file' ? hash : null, target: null,
    }, Date.now());
  }
  return { root, outside, manifest };
}

/** `hasher`, but swapping the standby's d for a symlink to `outside` just before the first read. */
function swappingBeforeRead(hasher: FileHasher, root: string, outside: string): FileHasher {
  let swapped = false;
  return {
    ...hasher,
    hashFile: (path, expect) => {
      if (!swapped) {
        swapped = true;
        renameSync(join(root, 'd'), join(root, 'd.moved'));
        symlinkSync(outside, join(root, 'd'));
      }
      return hasher.hashFile(path, expect);
    },
  };
}

describe('verify reads the standby without following a swapped-in symlink', () => {
  it('the standby hasher: the file is reported unreadable (a symlink above it), nothing outside is judged', async () => {
    const { root, outside, manifest } = await standby('confined');
    try {
      const report = await verifyTree(manifest, root, '.warmsync', swappingBeforeRead(await standbyHasher(root), root, outside));
      assert.deepEqual(report.corrupt.map((p) => p.path), ['d/f']);
      assert.match(report.corrupt[0]?.detail ?? '', /unreadable: .*symlink/);
      assert.equal(report.bytesHashed, 0, 'not a byte read through the symlink');
    } finally {
      manifest.close();
    }
  });

  it('control: a hasher that reads by path follows the symlink and calls the standby clean', async () => {
    const { root, outside, manifest } = await standby('by-path');
    try {
      const report = await verifyTree(manifest, root, '.warmsync', swappingBeforeRead(await createHasher(), root, outside));
      assert.deepEqual(report.corrupt, []);
      assert.equal(report.bytesHashed, CONTENT.length, 'the outside file was read');
    } finally {
      manifest.close();
    }
  });
});
