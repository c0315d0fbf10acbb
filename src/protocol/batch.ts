/**
 * Splitting many items into valid messages: a manifestPage or results message holds at most
 * MAX_PAGE_ENTRIES items and must encode to at most MAX_CONTROL_BYTES of JSON. Sizes are bounded
 * from above (6 bytes per UTF-16 unit of a string covers any JSON escape; JSON text already made
 * takes 3 per unit at most) instead of encoding twice.
 */
import type { ManifestEntry } from '../entry.js';
import { MAX_CONTROL_BYTES, MAX_PAGE_ENTRIES } from './limits.js';
import { toWireEntry, type ResultItem, type ResultsMessage, type WireManifestEntry } from './messages.js';

/** Room for the envelope: `{"type":"manifestPage","entries":[],"done":false}` and the like. */
const ENVELOPE_BYTES = 256;
/** Keys, punctuation and numbers of one entry (four safe integers of up to 17 characters). */
const FIXED_ENTRY_BYTES = 256;

/** Upper bound on the UTF-8 JSON length of a string (without its quotes). */
function stringBound(s: string | null | undefined): number {
  return s == null ? 0 : 6 * s.length;
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
 * The manifest as the JSON text of manifestPage messages; the last has `done: true` (an empty
 * manifest is one empty page). Each item is one entry's wire JSON, made where it is cheapest: by
 * SQLite for the receiver's manifest (Manifest.wireEntriesJson: building 20,000 entry objects in
 * JavaScript and stringifying them cost ~250 ms of CPU, the SQL ~45), by wireEntryJson otherwise.
 * Lazy: entries are pulled one page at a time.
 */
export function* manifestPageJson(entriesJson: Iterable<string>): Generator<string, void, undefined> {
  let pending: string[] | null = null;
  for (const page of split(entriesJson, jsonBound)) {
    if (pending !== null) yield pageJson(pending, false);
    pending = page;
  }
  yield pageJson(pending ?? [], true);
}

function pageJson(entriesJson: readonly string[], done: boolean): string {
  return `{"type":"manifestPage","entries":[${entriesJson.join(',')}],"done":${done}}`;
}

/** Upper bound on the UTF-8 length of JSON text: 3 bytes per UTF-16 unit at most. */
function jsonBound(json: string): number {
  return 3 * json.length;
}

/** One manifest entry's wire JSON (its wire fields only: bornMs and database columns never leave). */
export function wireEntryJson(e: WireManifestEntry | ManifestEntry): string {
  return JSON.stringify(toWireEntry(e));
}

/** Pending results as results messages (none for no items: a results message is never empty). */
export function resultBatches(items: Iterable<ResultItem>): ResultsMessage[] {
  return [...split(items, resultBound)].map((batch) => ({ type: 'results', items: batch }));
}
