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
 * batch); a full pass gives its sorted streams to diffSortedTrees.
 */
export function diffTrees(source: Iterable<Entry>, manifest: Iterable<ManifestEntry>, options: DiffOptions): Change[] {
  // A stable sort: of two rows with one path, the later is still the later.
  const byPath = (a: { readonly path: string }, b: { readonly path: string }): number => compareTreeOrder(a.path, b.path);
  return diffSortedTrees([...source].sort(byPath), [...manifest].sort(byPath), options);
}

/**
 * diffTrees for inputs already in tree order (relpath.ts compareTreeOrder), as a merge of the two:
 * the manifest may be a stream (the agent's mirror, read from SQLite) and is never held whole, and
 * the work is one comparison per entry and row. Throws on input out of order (a caller's bug).
 * A path listed twice in the manifest is planned against the later row.
 */
export function diffSortedTrees(source: Iterable<Entry>, manifest: Iterable<ManifestEntry>, options: DiffOptions): Change[] {
  const unknown = new Set(options.unknown ?? []);
  const isUnknown = (path: string): boolean => unknown.size > 0 && (unknown.has(path) || ancestorsOf(path).some((a) => unknown.has(a)));
  const rows = inOrder(manifest, 'manifest');
  const deletions: Change[] = [];
  const deleteUnlessKept = (old: ManifestEntry): void => {
    if (old.deletedAt !== null || options.hides(old.path, old.kind === 'dir') || isUnknown(old.path)) return;
    deletions.push({ path: old.path, old, new: null });
  };

  const upserts: Change[] = [];
  let row = rows.next();
  for (const entry of inOrder(source, 'source')) {
    while (!row.done && compareTreeOrder(row.value.path, entry.path) < 0) {
      deleteUnlessKept(row.value);
      row = rows.next();
    }
    if (row.done || row.value.path !== entry.path) {
      upserts.push({ path: entry.path, old: null, new: entry });
      continue;
    }
    const old = row.value;
    row = rows.next();
    if (old.deletedAt === null && !old.damaged && sameEntry(old, entry)) continue;
    upserts.push({ path: entry.path, old, new: entry });
  }
  for (; !row.done; row = rows.next()) deleteUnlessKept(row.value);
  // Found parents first; deletions are applied children first.
  return [...deletions.reverse(), ...upserts];
}

/**
 * The items of `list`, checked to be in tree order; of a run of items with one path, only the last.
 */
function* inOrder<T extends { readonly path: string }>(list: Iterable<T>, what: string): Generator<T, void, undefined> {
  let held: T | null = null;
  for (const item of list) {
    if (held !== null) {
      const order = compareTreeOrder(held.path, item.path);
      if (order > 0) throw new Error(`diffSortedTrees: the ${what} is not in tree order (${JSON.stringify(held.path)} before ${JSON.stringify(item.path)})`);
      if (order < 0) yield held;
    }
    held = item;
  }
  if (held !== null) yield held;
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
