/**
 * protocol/compression: the per-file decision. Each case is a file's chunks as (raw, compressed)
 * sizes; the first chunk tried decides for the rest of the file (a file that does not compress sends
 * the rest untried), and chunks under MIN_COMPRESS_BYTES are not tried.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FileCompression, MIN_COMPRESS_BYTES, WORTHWHILE_RATIO, worthCompressing } from '../../../src/protocol/compression.js';

describe('worthCompressing', () => {
  const cases: ReadonlyArray<[number, number, boolean]> = [
    [1000, 100, true],
    [1000, 900, true],
    [1000, 901, false],
    [1000, 1000, false],
    [1000, 1020, false],
    [1 << 20, Math.floor((1 << 20) * WORTHWHILE_RATIO), true],
  ];
  for (const [raw, compressed, expected] of cases) {
    test(`${raw} bytes to ${compressed}: ${expected ? 'compressed' : 'raw'}`, () => assert.equal(worthCompressing(raw, compressed), expected));
  }
});

describe('FileCompression', () => {
  // Per chunk: [raw, compressed (null: not tried)].
  const files: ReadonlyArray<{ name: string; chunks: ReadonlyArray<[number, number | null]>; decision: 'compress' | 'raw' | null }> = [
    { name: 'text: every chunk tried', chunks: [[1 << 20, 200_000], [1 << 20, 210_000], [5000, 1200]], decision: 'compress' },
    { name: 'an archive: the first chunk decides, the rest is never tried', chunks: [[1 << 20, 1_048_600], [1 << 20, null], [1 << 20, null]], decision: 'raw' },
    { name: 'barely compressible (95 %): the rest raw', chunks: [[1 << 20, 996_000], [1 << 20, null]], decision: 'raw' },
    { name: 'text then random: still tried (the first chunk decided)', chunks: [[1 << 20, 100_000], [1 << 20, 1_048_600], [1 << 20, 1_048_600]], decision: 'compress' },
    { name: 'a tiny file is never tried', chunks: [[MIN_COMPRESS_BYTES - 1, null]], decision: null },
    { name: 'a file of exactly MIN_COMPRESS_BYTES is tried', chunks: [[MIN_COMPRESS_BYTES, 20]], decision: 'compress' },
  ];
  for (const { name, chunks, decision } of files) {
    test(name, () => {
      const squeeze = new FileCompression();
      chunks.forEach(([raw, compressed], i) => {
        assert.equal(squeeze.tries(raw), compressed !== null, `chunk ${i}: tried`);
        if (compressed !== null) squeeze.compressed(raw, compressed);
      });
      assert.equal(squeeze.decision, decision);
    });
  }
});
