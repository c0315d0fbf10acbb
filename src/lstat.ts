/**
 * lstat that answers "nothing there" with null. Synchronous on purpose: a missing path is the
 * common case on the receiver (every new file), and a rejected fs/promises call costs far more
 * (an Error with an async stack trace) than the microseconds an lstat blocks the loop.
 */
import { lstatSync, type Stats } from 'node:fs';

export function lstatOrNull(abs: string): Stats | null {
  try {
    return lstatSync(abs, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    // An ancestor is no longer a directory (replaced by a file): nothing there either.
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}
