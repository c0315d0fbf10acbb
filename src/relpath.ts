/**
 * Canonical relative paths: the only form a path takes between stages and on the wire.
 * POSIX separators, no leading or trailing slash, no empty, "." or ".." segment, no NUL, each
 * segment at most 255 bytes. Any other character is an ordinary part of a name, as it is to Linux
 * and rsync: a backslash, a newline, a leading dash.
 */
import { ProtocolError } from './errors.js';

const MAX_SEGMENT_BYTES = 255;
const MAX_PATH_BYTES = 4096;
const DOT = 0x2e;

/**
 * Why `p` is not a canonical relative path, or null when it is. Runs for every path the receiver
 * is sent (and more than once for each), so it walks the string instead of splitting it, and counts
 * UTF-8 bytes only where a length in UTF-16 units could exceed a limit (a unit is at most 3 bytes).
 */
export function relPathProblem(p: string): string | null {
  if (typeof p !== 'string') return 'not a string';
  if (p === '') return 'empty path';
  if (p.includes('\0')) return 'contains NUL';
  if (p.startsWith('/')) return 'absolute path';
  if (p.length * 3 > MAX_PATH_BYTES && Buffer.byteLength(p) > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`;
  for (let start = 0; ; ) {
    const slash = p.indexOf('/', start);
    const end = slash === -1 ? p.length : slash;
    const length = end - start;
    if (length === 0) return 'empty segment (double or trailing slash)';
    if (p.charCodeAt(start) === DOT && (length === 1 || (length === 2 && p.charCodeAt(start + 1) === DOT))) {
      return `"${p.slice(start, end)}" segment`;
    }
    if (length * 3 > MAX_SEGMENT_BYTES && Buffer.byteLength(p.slice(start, end)) > MAX_SEGMENT_BYTES) {
      return `segment longer than ${MAX_SEGMENT_BYTES} bytes`;
    }
    if (slash === -1) return null;
    start = slash + 1;
  }
}

/** Returns `p` when canonical; throws ProtocolError BAD_PATH naming the problem otherwise. */
export function checkRelPath(p: string): string {
  const problem = relPathProblem(p);
  if (problem !== null) throw new ProtocolError('BAD_PATH', `invalid path ${JSON.stringify(p)}: ${problem}`);
  return p;
}

/**
 * Levels of nesting the agent syncs, at most: a deeper path is skipped with PATH_TOO_LONG (walk.ts).
 * The protocol allows ~2,000 levels in 4,096 bytes, but the receiver resolves every directory of
 * each path it writes beneath its root (confined/root.ts; the old per-ancestor checks cost a chain
 * of 2,000 nested directories ~depth^3 / 3 path component lookups, hours), and real trees stay far
 * below this.
 */
export const MAX_SYNC_DEPTH = 256;

/**
 * Does `p` have more than MAX_SYNC_DEPTH segments (counting `levelsAbove` more, for a path relative
 * to a directory that many levels below the root)? Cheap for the usual short path.
 */
export function isTooDeep(p: string, levelsAbove = 0): boolean {
  // n segments take at least 2n - 1 characters.
  if (p.length <= 2 * (MAX_SYNC_DEPTH - levelsAbove)) return false;
  let slashes = 0;
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) slashes++;
  return slashes + 1 + levelsAbove > MAX_SYNC_DEPTH;
}

/** Parent directory of a canonical path, or "" for a top-level name. */
export function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

export function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** Every proper ancestor of `p`, outermost first ("a/b/c" -> ["a", "a/b"]). */
export function ancestorsOf(p: string): string[] {
  const out: string[] = [];
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
  return out;
}

/** Is `p` equal to `dir` or below it? */
export function isWithin(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir + '/');
}

/**
 * Order in which a tree is created: parents before children. The order of comparing segment by
 * segment, so that "a/b" sorts right after "a" (plain string order would put "a-x" between them),
 * and names by code point (UTF-8's byte order), so that it is the order of `treeKey`'s bytes.
 * Computed without splitting: at the first differing UTF-16 unit, a "/" (the end of a segment) sorts
 * before any other unit, and a path that is a prefix of the other sorts first. That is the same
 * order, with no arrays allocated per comparison (a 100,000-entry sort makes ~1.7 million of them).
 */
export function compareTreeOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      if (x === SLASH) return -1;
      if (y === SLASH) return 1;
      // UTF-16 puts U+E000-U+FFFF after the surrogates that spell U+10000 and up; code points do not.
      if (x >= SURROGATE && y >= SURROGATE) return codePointRank(x) - codePointRank(y);
      return x - y;
    }
  }
  return a.length - b.length;
}

/**
 * A path as bytes that sort, compared as plain bytes (SQLite's BLOB order, Buffer.compare), in
 * compareTreeOrder's order: its UTF-8 with each "/" made 0x00, which no name can hold.
 */
export function treeKey(p: string): Buffer {
  const key = Buffer.from(p, 'utf8');
  for (let i = key.indexOf(SLASH); i >= 0; i = key.indexOf(SLASH, i + 1)) key[i] = 0;
  return key;
}

const SURROGATE = 0xd800;

/** A UTF-16 unit from U+D800 up, ranked as the code points it is part of: surrogates after U+E000-U+FFFF. */
function codePointRank(unit: number): number {
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

const SLASH = 0x2f;
