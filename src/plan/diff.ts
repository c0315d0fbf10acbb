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
 * its old subtree), then creations and updates, parents before children.
 */
export function diffTrees(source: Iterable<Entry>, manifest: Iterable<ManifestEntry>, options: DiffOptions): Change[] {
  // Rows by index, and which of them the source has: a flag per row costs far less than a Set of
  // the source's paths (100,000 of them in a full pass).
  const rows = Array.isArray(manifest) ? (manifest as readonly ManifestEntry[]) : [...manifest];
  const rowOf = new Map<string, number>();
  for (let i = 0; i < rows.length; i++) rowOf.set((rows[i] as ManifestEntry).path, i);
  const inSource = new Uint8Array(rows.length);
  if (rowOf.size !== rows.length) {
    // A path listed twice: the later row is the one planned against; the earlier is never a deletion.
    rows.forEach((m, i) => {
      if (rowOf.get(m.path) !== i) inSource[i] = 1;
    });
  }

  const upserts: Change[] = [];
  for (const entry of source) {
    const i = rowOf.get(entry.path);
    if (i === undefined) {
      upserts.push({ path: entry.path, old: null, new: entry });
      continue;
    }
    inSource[i] = 1;
    const old = rows[i] as ManifestEntry;
    if (old.deletedAt === null && !old.damaged && sameEntry(old, entry)) continue;
    upserts.push({ path: entry.path, old, new: entry });
  }

  const unknown = new Set(options.unknown ?? []);
  const isUnknown = (path: string): boolean => unknown.size > 0 && (unknown.has(path) || ancestorsOf(path).some((a) => unknown.has(a)));
  const deletions: Change[] = [];
  for (let i = 0; i < rows.length; i++) {
    const old = rows[i] as ManifestEntry;
    if (inSource[i] === 1 || old.deletedAt !== null) continue;
    if (options.hides(old.path, old.kind === 'dir') || isUnknown(old.path)) continue;
    deletions.push({ path: old.path, old, new: null });
  }

  upserts.sort((a, b) => compareTreeOrder(a.path, b.path));
  deletions.sort((a, b) => compareTreeOrder(b.path, a.path));
  return [...deletions, ...upserts];
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
