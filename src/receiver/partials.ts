/**
 * Unfinished large transfers, kept so a new connection can continue instead of starting over.
 * A partial is named by the content it is a prefix of (hash and size), so it can only ever be
 * resumed into that same content; the full file is still verified against the hash at the end.
 */
import { readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { lstatOrNull } from '../lstat.js';

/** Partials kept longer than this are removed at receiver start. */
const MAX_AGE_MS = 7 * 86_400_000;

export class PartialStore {
  constructor(readonly dir: string) {}

  private pathFor(hash: string, size: number): string {
    return join(this.dir, `${hash}-${size}`);
  }

  /** Moves a partial to `destination` and returns its length, or null when there is none to use. */
  async take(hash: string, size: number, destination: string): Promise<number | null> {
    const source = this.pathFor(hash, size);
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

  /** Keeps `tempFile` (already fsynced) as the partial of (hash, size). */
  async keep(tempFile: string, hash: string, size: number): Promise<void> {
    await rename(tempFile, this.pathFor(hash, size));
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
