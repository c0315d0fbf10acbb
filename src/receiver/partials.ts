/**
 * Unfinished large transfers, kept so a new connection can continue instead of starting over.
 * A partial is named by the file it is a prefix of: the file's path, size and mtime, the quick
 * check's notion of "the same file". Not by its hash, even when the agent announced one: the same
 * file is sent with its hash up front by one pass (the live agent hashes a file it was told about)
 * and hashed while sent by the next (a scan after a reconnect, when the hash was not cached), and
 * a name that differed between the two would never be taken. The full file is still verified
 * against the hash at the end, so a partial resumed into other content fails with
 * CHECKSUM_MISMATCH, is dropped, and the next attempt starts over.
 */
import { createHash } from 'node:crypto';
import type { ConfinedRoot, DirRef } from '../confined/root.js';

/** Partials kept longer than this are removed at receiver start. */
const MAX_AGE_MS = 7 * 86_400_000;

/** What a transfer's partial is named by (see the top of this file). */
export interface PartialContent { readonly size: number; readonly mtimeMs: number }

/** The partial's file name for `content` arriving at `finalPath`. */
export function partialName(finalPath: string, content: PartialContent): string {
  const pathDigest = createHash('sha256').update(finalPath).digest('hex').slice(0, 32);
  return `p${pathDigest}-${content.mtimeMs}-${content.size}`;
}

/**
 * The partials live in a directory of the state dir (`rel` in `state`), reached, like the tree,
 * through the confined layer: a partial moves to and from a temp name in the target's directory by
 * renameat between the two directory descriptors.
 */
export class PartialStore {
  constructor(private readonly state: ConfinedRoot, readonly rel: string) {}

  /** The directory's absolute path (for messages). */
  get dir(): string {
    return this.state.abs(this.rel);
  }

  /** Creates the directory if it is missing. */
  ensure(): void {
    this.state.mkdir(this.rel, 0o700, 0o700);
  }

  /**
   * Moves the partial `name` (see partialName) to `destName` in `destination` and returns its
   * length, or null when there is none to use (none kept, or not shorter than `size`).
   */
  take(name: string, size: number, destination: DirRef, destName: string): number | null {
    const dir = this.state.dir(this.rel);
    if (dir === null) return null;
    try {
      // There is usually none. A symlink here is not a partial (not a regular file) and is removed
      // like any unusable one.
      const st = dir.stat(name);
      if (st === null || st.kind !== 'file' || st.size === 0 || st.size >= size) {
        if (st !== null) unlinkQuietly(dir, name);
        return null;
      }
      try {
        dir.rename(name, destination, destName, true);
        return st.size;
      } catch {
        // Another file system (state dir outside the root) or gone: start over.
        unlinkQuietly(dir, name);
        return null;
      }
    } finally {
      dir.release();
    }
  }

  /** Keeps the temp file `tempName` in `from` (already fsynced) as the partial `name`. */
  keep(from: DirRef, tempName: string, name: string): void {
    const dir = this.state.needDir(this.rel, 0o700);
    try {
      from.rename(tempName, dir, name);
    } finally {
      dir.release();
    }
  }

  /** Removes partials older than a week; returns how many. */
  prune(now: number): number {
    const dir = this.state.dir(this.rel);
    if (dir === null) return 0;
    let removed = 0;
    try {
      for (const { name } of dir.list()) {
        const st = dir.stat(name);
        if (st !== null && st.kind !== 'dir' && now - st.mtimeMs > MAX_AGE_MS) {
          unlinkQuietly(dir, name);
          removed++;
        }
      }
    } finally {
      dir.release();
    }
    return removed;
  }
}

function unlinkQuietly(dir: DirRef, name: string | Buffer): void {
  try {
    dir.unlink(name);
  } catch {
    // already gone
  }
}
