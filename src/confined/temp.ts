/**
 * The receiver's temporary names: recognisable, so the agent's and verify's scans skip them and
 * crash recovery removes them. Pure (no I/O): the agent imports it without the file layer.
 */
import { randomBytes } from 'node:crypto';

export const TEMP_PREFIX = '.warmsync-tmp.';

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

// Random per process, then a counter: unique without a random draw per file (38 µs each in the
// receiver's profile). Every temp file is created O_EXCL, so a name that exists is never reused.
const TEMP_NONCE = randomBytes(6).toString('hex');
let tempSerial = 0;

/** A fresh temporary name (one path component), for a file or symlink renamed over its final name later. */
export function nextTempName(): string {
  return `${TEMP_PREFIX}${TEMP_NONCE}.${(tempSerial++).toString(36)}`;
}
