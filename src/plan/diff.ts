/**
 * The planner: source entries vs. the receiver's manifest -> the changes that make the standby match.
 * Pure: data in, data out. A change is {path, old, new} (Mutagen's shape): `old` is what the agent
 * believes the receiver holds, a precondition the receiver checks before applying.
 */
import { sameEntry, type Entry, type ManifestEntry } from '../entry.js';
import { ancestorsOf, compareTreeOrder } from '../relpath.js';

export interface Change {
  readonly path: string;
  /** The manifest row planned against (tombstones included), or null when the receiver has none. */
  readonly old: ManifestEntry | null;
  /** The source entry, or null when the path was deleted on the source. */
  readonly new: Entry | null;
}

export type ChangeAction =
  | 'mkdir'      // create or update a directory
  | 'symlink'    // create or replace a symlink
  | 'special'    // create or replace a FIFO, socket or device node
  | 'transfer'   // send file content
  | 'setMeta'    // same content already on the standby: mode/mtime/owner, or a cancelled tombstone
  | 'delete';    // record a tombstone (the gate decides when it leaves the disk)

export interface DiffOptions {
  /** Is a manifest path hidden by the excludes? Such paths are left alone, like `rsync --delete` does. */
  readonly hides: (path: string, isDir: boolean) => boolean;
  /** Source paths the scan could not read (unreadable directories, unstable files): nothing at or below them is deleted. */
  readonly unknown?: readonly string[];
}

/**
 * Both inputs in any order; the result is ordered for applying: deletions first, children before
 * parents (they only record tombstones, and must be in place before a path that changes kind clears
 * its old subtree), then creations and updates, parents before children. For small inputs (a live
 * batch); a full pass merges its sorted streams with TreeMerge, sending each upsert as it comes.
 */
export function diffTrees(source: Iterable<Entry>, manifest: Iterable<ManifestEntry>, options: DiffOptions): Change[] {
  // A stable sort: of two rows with one path, the later is still the later.
  const byPath = (a: { readonly path: string }, b: { readonly path: string }): number => compareTreeOrder(a.path, b.path);
  return diffSortedTrees([...source].sort(byPath), [...manifest].sort(byPath), options);
}

/**
 * diffTrees for inputs already in tree order (relpath.ts compareTreeOrder), as a merge of the two:
 * see TreeMerge. Throws on input out of order (a caller's bug).
 */
export function diffSortedTrees(source: Iterable<Entry>, manifest: Iterable<ManifestEntry>, options: DiffOptions): Change[] {
  const merge = new TreeMerge(manifest, options.hides);
  for (const entry of source) merge.add(entry);
  return merge.finish(options.unknown ?? []);
}

/**
 * The plan as a merge of the source's entries, added one at a time in tree order, with the
 * manifest's rows, read in tree order as the entries reach them: neither side is ever held whole
 * (a full pass's scan hands its entries over as it finds them, and the manifest is a stream from
 * the agent's mirror). The work is one comparison per entry and row. Throws on input out of order
 * (a caller's bug). A path listed twice in the manifest is planned against the later row.
 */
export class TreeMerge {
  readonly #rows: Iterator<ManifestEntry, void, undefined>;
  /** Rows read from the manifest and not yet merged (rowAt reads ahead of the entries added), in order. */
  readonly #ahead: ManifestEntry[] = [];
  #aheadStart = 0;
  #rowsDone = false;
  #lastAdded: string | null = null;
  readonly #upserts: Change[] = [];
  /** Rows the source lacks that may be deletions (unknown paths are known only at the end). */
  readonly #gone: ManifestEntry[] = [];
  readonly #onUpsert: (change: Change) => void;

  /**
   * `onUpsert`: takes each creation and update as soon as it is known, in tree order (parents
   * first), instead of `finish`'s result, which then holds only the deletions: a full pass sends
   * as it scans.
   */
  constructor(manifest: Iterable<ManifestEntry>, private readonly hides: DiffOptions['hides'], onUpsert?: (change: Change) => void) {
    this.#rows = inOrder(manifest, 'manifest');
    this.#onUpsert = onUpsert ?? ((change) => this.#upserts.push(change));
  }

  /**
   * The manifest's row at `path`, for a scan deciding whether to read a file before its entry is
   * added. Asked in tree order, never for a path before the last entry added.
   */
  rowAt(path: string): ManifestEntry | undefined {
    for (let last = this.#lastAhead(); !this.#rowsDone && (last === undefined || compareTreeOrder(last.path, path) < 0); last = this.#lastAhead()) {
      this.#readRow();
    }
    for (let i = this.#ahead.length - 1; i >= this.#aheadStart; i--) {
      const order = compareTreeOrder((this.#ahead[i] as ManifestEntry).path, path);
      if (order === 0) return this.#ahead[i];
      if (order < 0) break;
    }
    return undefined;
  }

  /** The next source entry, in tree order. */
  add(entry: Entry): void {
    if (this.#lastAdded !== null && compareTreeOrder(this.#lastAdded, entry.path) >= 0) {
      throw new Error(`TreeMerge: the source is not in tree order (${JSON.stringify(this.#lastAdded)} before ${JSON.stringify(entry.path)})`);
    }
    this.#lastAdded = entry.path;
    let old: ManifestEntry | null = null;
    for (let row = this.#nextRow(); row !== undefined; row = this.#nextRow()) {
      const order = compareTreeOrder(row.path, entry.path);
      if (order > 0) break;
      this.#aheadStart++;
      if (order === 0) {
        old = row;
        break;
      }
      this.#mayDelete(row);
    }
    this.#compact();
    if (old !== null && old.deletedAt === null && !old.damaged && sameEntry(old, entry)) return;
    this.#onUpsert({ path: entry.path, old, new: entry });
  }

  /**
   * The plan, ordered for applying (see diffTrees): the deletions, then the upserts not taken by
   * `onUpsert`. `unknown`: source paths the scan could not read, nothing at or below which is deleted.
   */
  finish(unknown: readonly string[]): Change[] {
    for (let row = this.#nextRow(); row !== undefined; row = this.#nextRow()) {
      this.#aheadStart++;
      this.#mayDelete(row);
    }
    const unknownSet = new Set(unknown);
    const isUnknown = (path: string): boolean => unknownSet.size > 0 && (unknownSet.has(path) || ancestorsOf(path).some((a) => unknownSet.has(a)));
    const deletions: Change[] = [];
    // Found parents first; deletions are applied children first.
    for (let i = this.#gone.length - 1; i >= 0; i--) {
      const old = this.#gone[i] as ManifestEntry;
      if (!isUnknown(old.path)) deletions.push({ path: old.path, old, new: null });
    }
    return [...deletions, ...this.#upserts];
  }

  /** Stops reading the manifest before its end (a scan failed): a stream over a database must be closed. */
  close(): void {
    this.#rowsDone = true;
    this.#rows.return?.();
  }

  #mayDelete(row: ManifestEntry): void {
    if (row.deletedAt === null && !this.hides(row.path, row.kind === 'dir')) this.#gone.push(row);
  }

  /** The first row not merged yet, read from the manifest when none is ahead; undefined at the end. */
  #nextRow(): ManifestEntry | undefined {
    if (this.#aheadStart === this.#ahead.length) {
      this.#ahead.length = 0;
      this.#aheadStart = 0;
      this.#readRow();
    }
    return this.#ahead[this.#aheadStart];
  }

  #lastAhead(): ManifestEntry | undefined {
    return this.#ahead.length > this.#aheadStart ? this.#ahead[this.#ahead.length - 1] : undefined;
  }

  #readRow(): void {
    if (this.#rowsDone) return;
    const next = this.#rows.next();
    if (next.done === true) this.#rowsDone = true;
    else this.#ahead.push(next.value);
  }

  /** Drops the merged rows from the front of `ahead` once they are most of it. */
  #compact(): void {
    if (this.#aheadStart > 1024 && this.#aheadStart * 2 > this.#ahead.length) {
      this.#ahead.splice(0, this.#aheadStart);
      this.#aheadStart = 0;
    }
  }
}

/**
 * The items of `list`, checked to be in tree order; of a run of items with one path, only the last.
 */
function* inOrder<T extends { readonly path: string }>(list: Iterable<T>, what: string): Generator<T, void, undefined> {
  let held: T | null = null;
  for (const item of list) {
    if (held !== null) {
      const order = compareTreeOrder(held.path, item.path);
      if (order > 0) throw new Error(`TreeMerge: the ${what} is not in tree order (${JSON.stringify(held.path)} before ${JSON.stringify(item.path)})`);
      if (order < 0) yield held;
    }
    held = item;
  }
  if (held !== null) yield held;
}

/**
 * Must `change` wait for the plan's deletions? It does when it replaces a directory with something
 * else: the receiver moves a directory that is not empty aside (receiver/apply.ts makeRoomFor) and
 * drops the rows below it, so the tombstones for the paths below must be recorded first.
 */
export function replacesDirectory(change: Change): boolean {
  const { old, new: next } = change;
  return old !== null && old.kind === 'dir' && old.deletedAt === null && next !== null && next.kind !== 'dir';
}

/** What the agent sends for a change. */
export function actionOf(change: Change): ChangeAction {
  const { old, new: next } = change;
  if (next === null) return 'delete';
  if (next.kind === 'dir') return 'mkdir';
  if (next.kind === 'symlink') return 'symlink';
  if (next.kind === 'special') return 'special';
  if (old !== null && old.kind === 'file' && !old.damaged && old.hash === next.hash && old.size === next.size) return 'setMeta';
  return 'transfer';
}
