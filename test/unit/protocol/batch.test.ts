/**
 * batch: manifests and results split into messages that respect both the item count and the
 * control frame size, decode on the other side, and never carry bornMs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ManifestEntry } from '../../../src/entry.js';
import { manifestPageJson, resultBatches, wireEntryJson } from '../../../src/protocol/batch.js';
import { decodeFrame, encodeControl, encodeControlJson } from '../../../src/protocol/codec.js';
import { MAX_CONTROL_BYTES, MAX_PAGE_ENTRIES } from '../../../src/protocol/limits.js';
import type { ManifestPageMessage, ResultItem, WireManifestEntry } from '../../../src/protocol/messages.js';
import { FILE_ENTRY } from './fixtures.js';

function entries(n: number, path: (i: number) => string = (i) => `d/${i}`): WireManifestEntry[] {
  return Array.from({ length: n }, (_, i) => ({ ...FILE_ENTRY, path: path(i) }));
}

/** The pages of `rows`, each checked to frame within the limits and to decode as the agent decodes it. */
function manifestPages(rows: Iterable<WireManifestEntry | ManifestEntry>): ManifestPageMessage[] {
  return [...manifestPageJson([...rows].map(wireEntryJson))].map((json) => {
    const decoded = decodeFrame(encodeControlJson(json, 'manifestPage'), 'receiver');
    assert.equal(decoded.kind, 'control');
    return decoded.message as ManifestPageMessage;
  });
}

describe('manifestPageJson', () => {
  const cases: ReadonlyArray<[string, number, number[]]> = [
    ['empty manifest: one empty final page', 0, [0]],
    ['one entry', 1, [1]],
    ['exactly one full page', MAX_PAGE_ENTRIES, [MAX_PAGE_ENTRIES]],
    ['one over a page', MAX_PAGE_ENTRIES + 1, [MAX_PAGE_ENTRIES, 1]],
    ['several pages', 4500, [2000, 2000, 500]],
  ];
  for (const [name, n, sizes] of cases) {
    test(name, () => {
      const pages = manifestPages(entries(n));
      assert.deepEqual(pages.map((p) => p.entries.length), sizes);
      assert.deepEqual(pages.map((p) => p.done), sizes.map((_, i) => i === sizes.length - 1));
      assert.deepEqual(pages.flatMap((p) => p.entries), entries(n));
    });
  }

  test('long, escaped paths split by bytes and every page decodes', () => {
    // Control characters escape to six bytes each: the worst case for the size bound.
    const segment = '\u0001'.repeat(250);
    const many = entries(MAX_PAGE_ENTRIES, (i) => `${i}/${Array.from({ length: 16 }, () => segment).join('/')}`);
    const pages = manifestPages(many);
    assert.ok(pages.length > 1);
    for (const page of pages) assert.ok(encodeControl(page).length - 1 <= MAX_CONTROL_BYTES);
    assert.equal(pages.reduce((sum, p) => sum + p.entries.length, 0), MAX_PAGE_ENTRIES);
  });

  test('manifest rows lose bornMs and any other column', () => {
    const row = { ...FILE_ENTRY, bornMs: 5, rowid: 9 } as ManifestEntry;
    const [page] = manifestPages([row]);
    assert.deepEqual(page?.entries, [FILE_ENTRY]);
  });

  test('pulls rows lazily', () => {
    let pulled = 0;
    function* rows(): Generator<string> {
      for (let i = 0; i < 5000; i++) {
        pulled++;
        yield wireEntryJson({ ...FILE_ENTRY, path: `x/${i}` });
      }
    }
    const pages = manifestPageJson(rows());
    pages.next();
    assert.ok(pulled <= 2 * MAX_PAGE_ENTRIES + 1, `pulled ${pulled}`);
  });
});

describe('resultBatches', () => {
  const ok = (op: number): ResultItem => ({ op, ok: true });
  test('no items, no message', () => assert.deepEqual(resultBatches([]), []));
  test('splits by count', () => {
    const batches = resultBatches(Array.from({ length: 4001 }, (_, i) => ok(i)));
    assert.deepEqual(batches.map((b) => b.items.length), [2000, 2000, 1]);
    for (const b of batches) decodeFrame(encodeControl(b), 'receiver');
  });
  test('splits by bytes when messages are long', () => {
    const items = Array.from({ length: 2000 }, (_, op): ResultItem => ({ op, ok: false, code: 'APPLY_FAILED', message: '\u0002'.repeat(1024) }));
    const batches = resultBatches(items);
    assert.ok(batches.length > 1);
    for (const b of batches) assert.ok(encodeControl(b).length - 1 <= MAX_CONTROL_BYTES);
    assert.deepEqual(batches.flatMap((b) => b.items), items);
  });
});
