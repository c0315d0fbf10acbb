/**
 * Splitting many items into valid messages: a manifestPage or results message holds at most
 * MAX_PAGE_ENTRIES items and must encode to at most MAX_CONTROL_BYTES of JSON. Sizes are bounded
 * from above (6 bytes per UTF-16 unit covers any JSON escape) instead of encoding twice.
 */
import type { ManifestEntry } from '../entry.js';
import { MAX_CONTROL_BYTES, MAX_PAGE_ENTRIES } from './limits.js';
import {
  toWireEntry, type ManifestPageMessage, type ResultItem, type ResultsMessage, type WireManifestEntry,
} from './messages.js';

/** Room for the envelope: `{"type":"manifestPage","entries":[],"done":false}` and the like. */
const ENVELOPE_BYTES = 256;
/** Keys, punctuation and numbers of one entry (four safe integers of up to 17 characters). */
const FIXED_ENTRY_BYTES = 256;

/** Upper bound on the UTF-8 JSON length of a string (without its quotes). */
function stringBound(s: string | null | undefined): number {
  return s == null ? 0 : 6 * s.length;
}

function entryBound(e: WireManifestEntry): number {
  return FIXED_ENTRY_BYTES + stringBound(e.path) + stringBound(e.hash) + stringBound(e.target);
}

function resultBound(r: ResultItem): number {
  return FIXED_ENTRY_BYTES + stringBound(r.code) + stringBound(r.message);
}

function* split<T>(items: Iterable<T>, bound: (item: T) => number): Generator<T[], void, undefined> {
  let batch: T[] = [];
  let bytes = ENVELOPE_BYTES;
  for (const item of items) {
    const size = bound(item) + 1;
    if (batch.length > 0 && (batch.length === MAX_PAGE_ENTRIES || bytes + size > MAX_CONTROL_BYTES)) {
      yield batch;
      batch = [];
      bytes = ENVELOPE_BYTES;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

/**
 * The manifest as a sequence of manifestPage messages; the last has `done: true` (an empty
 * manifest is one empty page). Rows are reduced to their wire fields (bornMs is dropped).
 * Lazy: rows are pulled from `entries` one page at a time.
 */
export function* manifestPages(
  entries: Iterable<WireManifestEntry | ManifestEntry>,
): Generator<ManifestPageMessage, void, undefined> {
  let pending: WireManifestEntry[] | null = null;
  for (const page of split(wireEntries(entries), entryBound)) {
    if (pending !== null) yield { type: 'manifestPage', entries: pending, done: false };
    pending = page;
  }
  yield { type: 'manifestPage', entries: pending ?? [], done: true };
}

function* wireEntries(entries: Iterable<WireManifestEntry | ManifestEntry>): Generator<WireManifestEntry, void, undefined> {
  for (const e of entries) yield toWireEntry(e);
}

/** Pending results as results messages (none for no items: a results message is never empty). */
export function resultBatches(items: Iterable<ResultItem>): ResultsMessage[] {
  return [...split(items, resultBound)].map((batch) => ({ type: 'results', items: batch }));
}
