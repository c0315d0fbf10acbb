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
import { readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { lstatOrNull } from '../lstat.js';

/** Partials kept longer than this are removed at receiver start. */
const MAX_AGE_MS = 7 * 86_400_000;

/** What a transfer's partial is named by (see the top of this file). */
export interface PartialContent { readonly size: number; readonly mtimeMs: number }

/** The partial's file name for `content` arriving at `finalPath`. */
export function partialName(finalPath: string, content: PartialContent): string {
  const pathDigest = createHash('sha256').update(finalPath).digest('hex').slice(0, 32);
  return `p${pathDigest}-${content.mtimeMs}-${content.size}`;
}

export class PartialStore {
  constructor(readonly dir: string) {}

  /**
   * Moves the partial `name` (see partialName) to `destination` and returns its length, or null when
   * there is none to use (none kept, or not shorter than `size`).
   */
  async take(name: string, size: number, destination: string): Promise<number | null> {
    const source = join(this.dir, name);
    // There is usually none: lstatOrNull answers that without a rejected promise. A symlink here is
    // not a partial (not a regular file) and is removed like any unusable one.
    const st = lstatOrNull(source);
    if (st === null || !st.isFile() || st.size === 0 || st.size >= size) {
      if (st !== null) await unlink(source).catch(() => undefined);
      return null;
    }
    try {
      await rename(source, destination);
      return st.size;
    } catch {
      // Another file system (state dir outside the root) or gone: start over.
      await unlink(source).catch(() => undefined);
      return null;
    }
  }

  /** Keeps `tempFile` (already fsynced) as the partial `name`. */
  async keep(tempFile: string, name: string): Promise<void> {
    await rename(tempFile, join(this.dir, name));
  }

  /** Removes partials older than a week; returns how many. */
  async prune(now: number): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const abs = join(this.dir, name);
      const st = await stat(abs).catch(() => null);
      if (st !== null && now - st.mtimeMs > MAX_AGE_MS) {
        await unlink(abs).catch(() => undefined);
        removed++;
      }
    }
    return removed;
  }
}
