/**
 * Walks a source tree and yields what warmsync can sync: regular files, directories, symlinks
 * (never followed) and special files (FIFOs, sockets, devices: never opened), each under its
 * canonical relative POSIX path, with lstat metadata including the owner's ids.
 *
 * Error policy (fast-glob's, made explicit):
 * - ENOENT/ENOTDIR below the root: the path was deleted or replaced meanwhile; skipped silently.
 * - EACCES/EPERM: `onWarning('UNREADABLE', ..., relPath)` and skipped. For a directory the entry
 *   itself is still yielded but its contents are not: the caller must treat that subtree as unknown,
 *   not as deleted (the `path` argument of the warning names it).
 * - A symlink that is no longer one when its target is read: `onWarning('FILE_UNSTABLE', ...,
 *   relPath)`, skipped until the next scan; like UNREADABLE, its state is unknown, not deleted.
 * - A path too long or too deep for this machine (ENAMETOOLONG: the root's absolute path and the
 *   relative one together pass PATH_MAX; or more than MAX_SYNC_DEPTH levels, relpath.ts):
 *   `onWarning('PATH_TOO_LONG', ..., relPath)`, skipped with everything below it, like an unsyncable
 *   name; the rest of the tree syncs.
 * - A name that is not a canonical relative path (relpath.ts: too long) or that holds
 *   U+FFFD (Node's stand-in for bytes that are not UTF-8, so two names could decode to one; such a
 *   path cannot even be opened through the decoded string): `onWarning('UNSYNCABLE_NAME', ...)`,
 *   skipped with everything below it. Likewise a symlink whose target is not valid UTF-8.
 * - Any other error, or any error on the root itself: WarmsyncError SCAN_FAILED.
 *
 * Exclusion is a plain predicate; an excluded directory is pruned (never listed, nothing below it
 * is offered to the predicate).
 *
 * Entries come in tree order (relpath.ts compareTreeOrder): each directory's names are sorted and a
 * directory's subtree follows it before its next sibling, so a consumer that needs the order (the
 * scanner, and after it the planner) sorts an already sorted list, which costs next to nothing.
 *
 * One directory at a time, synchronously, depth first: each directory is opened beneath its
 * parent's descriptor (never through a symlink: one swapped in while the walk runs is not listed,
 * so nothing outside the source is read) and listed and lstat'ed in one call of the addon
 * (listdir.ts). A promise per entry (an async walker's lstat) cost ~4x the CPU and most of the
 * garbage of a 100,000-file scan, and Node's readdir + lstat by path a Dirent, a Stats and a full
 * path lookup per entry. Memory is bounded by the listings (and descriptors) of the directories
 * from the root down to the current one, not by the tree, since a directory is listed only once
 * the consumer took its entry; and the walk gives the event loop a turn at least every YIELD_MS,
 * so timers and sockets are not starved.
 */
import * as fs from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import type { EntryKind } from '../entry.js';
import { specialNodeText, splitDevice, wholeMs } from '../entry.js';
import { describeError, WarmsyncError } from '../errors.js';
import { isTooDeep, MAX_SYNC_DEPTH, relPathProblem } from '../relpath.js';
import { listDirectory, openDirectoryAt, readLinkAt, type ListedEntry } from './listdir.js';

export interface WalkEntry {
  /** Canonical relative POSIX path (relpath.ts). */
  path: string;
  kind: EntryKind;
  /** Bytes for files, 0 for directories, the target's UTF-8 byte length for symlinks. */
  size: number;
  /** Integer milliseconds (wholeMs). */
  mtimeMs: number;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  ino: number;
  /** readlink() for symlinks, verbatim; the node for special files (src/entry.ts); null otherwise. */
  target: string | null;
  uid: number;
  gid: number;
}

/**
 * Receives what was skipped and why. `path` is the canonical relative path concerned when there is
 * one (absent for UNSYNCABLE_NAME, whose name has no canonical form).
 */
export type WarningHandler = (code: string, message: string, path?: string) => void;

export interface WalkOptions {
  /** rsync-like exclusion, asked once per entry with its relative path; true prunes it. */
  isExcluded: (relPath: string, isDir: boolean) => boolean;
  onWarning: WarningHandler;
  /**
   * How many levels below the synced tree's root `root` lies (a subtree walked on its own), for the
   * MAX_SYNC_DEPTH check.
   * @default 0
   */
  levelsAbove?: number;
}

/** The longest the walk keeps the event loop to itself, ms. */
const YIELD_MS = 10;

export async function* walkTree(root: string, options: WalkOptions): AsyncGenerator<WalkEntry> {
  const absRoot = path.resolve(root);
  await checkRoot(root, absRoot);
  const { isExcluded, onWarning } = options;
  const levelsAbove = options.levelsAbove ?? 0;
  const rootPrefix = absRoot.endsWith('/') ? absRoot : `${absRoot}/`;
  const toAbs = (rel: string): string => (rel === '' ? absRoot : rootPrefix + rel);

  /** A listed directory, open while its subtree is walked: its entries in order, how many were taken. */
  interface Listing { dir: string; fd: number; entries: ListedEntry[]; next: number }
  /** Lists the directory open at `fd` (closed here when that fails); null when it cannot be listed. */
  const list = (dir: string, fd: number): Listing | null => {
    try {
      return { dir, fd, entries: listDirectory(fd), next: 0 };
    } catch (err) {
      fs.closeSync(fd);
      if (dir === '') throw walkError(root, absRoot, err);
      return cannotList(dir, err);
    }
  };
  /** Opens the directory entry `name` of `parent` (never through a symlink) and lists it. */
  const listChild = (parent: Listing, name: string, rel: string): Listing | null => {
    let fd: number;
    try {
      fd = openDirectoryAt(parent.fd, name);
    } catch (err) {
      return cannotList(rel, err);
    }
    return list(rel, fd);
  };
  const cannotList = (dir: string, err: unknown): null => {
    const code = codeOf(err);
    // Deleted, or replaced (by a symlink: ELOOP) since it was listed.
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return null;
    if (code === 'EACCES' || code === 'EPERM') {
      onWarning('UNREADABLE', `${dir}: cannot list directory (${code}); its contents are skipped`, dir);
      return null;
    }
    if (code === 'ENAMETOOLONG') {
      tooLong(dir);
      return null;
    }
    throw new WarmsyncError('SCAN_FAILED', `${toAbs(dir)}: cannot list directory: ${describeError(err)}`, { cause: err });
  };

  let rootFd: number;
  try {
    rootFd = fs.openSync(absRoot, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY); // follows: as checkRoot
  } catch (err) {
    throw walkError(root, absRoot, err);
  }
  const open: Listing[] = [list('', rootFd) as Listing]; // the root's listing throws rather than returning null
  try {
    let lastTurn = Date.now();
    while (open.length > 0) {
      const listing = open[open.length - 1] as Listing;
      if (listing.next === listing.entries.length) {
        open.pop();
        fs.closeSync(listing.fd);
        continue;
      }
      const e = listing.entries[listing.next++] as ListedEntry;
      const entry = toWalkEntry(listing.dir === '' ? e.name : `${listing.dir}/${e.name}`, e, listing.fd);
      if (entry === null) continue;
      yield entry;
      if (entry.kind !== 'dir') continue;
      if (Date.now() - lastTurn >= YIELD_MS) {
        await turn();
        lastTurn = Date.now();
      }
      const below = listChild(listing, e.name, entry.path);
      if (below !== null) open.push(below);
    }
  } finally {
    // A consumer that stops early (break, an exception) closes the generator: release what is open.
    for (const listing of open) fs.closeSync(listing.fd);
  }

  function toWalkEntry(rel: string, e: ListedEntry, dirFd: number): WalkEntry | null {
    const isDir = e.error === null && (e.mode & S_IFMT) === S_IFDIR;
    const problem = nameProblem(rel, e.name);
    if (problem !== null) {
      if (!isExcluded(rel, isDir)) onWarning('UNSYNCABLE_NAME', `${JSON.stringify(rel)} skipped: ${problem}`);
      return null;
    }
    if (isTooDeep(rel, levelsAbove)) {
      if (!isExcluded(rel, isDir)) onWarning('PATH_TOO_LONG', pathTooLongMessage(rel, null), rel);
      return null;
    }
    // Reached through descriptors, such a path could be walked; but it could not be opened, watched
    // or written by path anywhere else (the kernel's PATH_MAX): skipped, as lstat by path did.
    if (absTooLong(rel)) {
      tooLong(rel);
      return null;
    }
    if (e.error !== null) return skipOrThrow(e.error, rel, 'stat');
    if (isExcluded(rel, isDir)) return null;
    // One literal per entry, all of one shape: no intermediate object, one hidden class.
    const mtimeMs = wholeMs(e.mtimeMs);
    const mode = e.mode & 0o7777;
    const { uid, gid, ino } = e;
    switch (e.mode & S_IFMT) {
      case S_IFREG: return { path: rel, kind: 'file', size: e.size, mtimeMs, mode, ino, target: null, uid, gid };
      case S_IFDIR: return { path: rel, kind: 'dir', size: 0, mtimeMs, mode, ino, target: null, uid, gid };
      case S_IFLNK: break;
      default: return { path: rel, kind: 'special', size: 0, mtimeMs, mode, ino, target: specialNodeOf(e.mode, e.rdevMajor, e.rdevMinor), uid, gid };
    }
    let bytes: Buffer;
    try {
      bytes = readLinkAt(dirFd, e.name);
    } catch (err) {
      if (codeOf(err) === 'EINVAL') {
        onWarning('FILE_UNSTABLE', `${rel}: no longer a symlink; skipped until the next scan`, rel);
        return null;
      }
      return skipOrThrow(codeOf(err), rel, 'read the link', err);
    }
    const target = bytes.toString('utf8');
    if (!Buffer.from(target, 'utf8').equals(bytes)) {
      onWarning('UNSYNCABLE_NAME', `${rel} skipped: its symlink target is not valid UTF-8`);
      return null;
    }
    return { path: rel, kind: 'symlink', size: bytes.length, mtimeMs, mode, ino, target, uid, gid };
  }

  function absTooLong(rel: string): boolean {
    const chars = rootPrefix.length + rel.length;
    return chars >= PATH_MAX_SURELY_SHORT && Buffer.byteLength(rootPrefix + rel) >= PATH_MAX;
  }

  function skipOrThrow(code: string | undefined, rel: string, what: string, cause?: unknown): null {
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    if (code === 'EACCES' || code === 'EPERM') {
      onWarning('UNREADABLE', `${rel}: cannot ${what} (${code}); skipped`, rel);
      return null;
    }
    if (code === 'ENAMETOOLONG') {
      tooLong(rel);
      return null;
    }
    const why = cause === undefined ? (code ?? 'unknown error') : describeError(cause);
    throw new WarmsyncError('SCAN_FAILED', `${toAbs(rel)}: cannot ${what}: ${why}`, cause === undefined ? undefined : { cause });
  }

  function tooLong(rel: string): void {
    onWarning('PATH_TOO_LONG', pathTooLongMessage(rel, toAbs(rel)), rel);
  }
}

async function checkRoot(root: string, absRoot: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await stat(absRoot); // follows: a root that is a symlink to a directory is fine
  } catch (err) {
    const code = codeOf(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new WarmsyncError('SOURCE_MISSING', `source root ${root} does not exist`, { cause: err });
    }
    throw new WarmsyncError('SCAN_FAILED', `source root ${root}: ${describeError(err)}`, { cause: err });
  }
  if (!st.isDirectory()) throw new WarmsyncError('SOURCE_NOT_DIR', `source root ${root} is not a directory`);
}

function walkError(root: string, absRoot: string, err: unknown): WarmsyncError {
  if (err instanceof WarmsyncError) return err;
  const code = codeOf(err);
  const errPath = typeof err === 'object' && err !== null && 'path' in err ? err.path : undefined;
  if (errPath === absRoot && (code === 'ENOENT' || code === 'ENOTDIR')) {
    return new WarmsyncError('SOURCE_MISSING', `source root ${root} does not exist`, { cause: err });
  }
  return new WarmsyncError('SCAN_FAILED', `scanning ${root} failed: ${describeError(err)}`, { cause: err });
}

/**
 * The PATH_TOO_LONG warning's text (the live agent's describe says the same): `abs` is the absolute
 * path that failed with ENAMETOOLONG, or null when the path is deeper than MAX_SYNC_DEPTH.
 */
export function pathTooLongMessage(rel: string, abs: string | null): string {
  const why = abs === null
    ? `deeper than ${MAX_SYNC_DEPTH} levels`
    : `${Buffer.byteLength(abs)} bytes with the source root: ENAMETOOLONG`;
  return `${rel}: skipped with everything below it: the path is too long for this machine (${why})`;
}

/** Why this name cannot be synced, or null. `relPath` ends with `name`. */
function nameProblem(relPath: string, name: string): string | null {
  if (name.includes('\uFFFD')) return 'the name is not valid UTF-8 (or contains U+FFFD)';
  // The parent passed already, and the kernel never lists "", ".", "..", a "/" or NUL, nor a name
  // over 255 bytes: only the total length can make this one fail. Checking just that saves
  // re-checking the whole path for every entry (~5 us each).
  if (relPath.length <= MAX_CHARS_SURELY_SHORT) return null;
  return relPathProblem(relPath);
}

/** Paths this many UTF-16 units long are at most 4095 UTF-8 bytes (3 per unit at most). */
const MAX_CHARS_SURELY_SHORT = 1365;

/** Linux's PATH_MAX: a path of this many bytes or more (its NUL must fit) fails with ENAMETOOLONG. */
const PATH_MAX = 4096;
/** Absolute paths shorter than this many UTF-16 units are surely below PATH_MAX bytes. */
const PATH_MAX_SURELY_SHORT = Math.floor((PATH_MAX - 1) / 3) + 1;
const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = fs.constants;

/** The node of a FIFO, socket or device as Entry.target spells it (rsync -a's -D keeps all four). */
export function specialNode(st: fs.Stats): string {
  const { major, minor } = splitDevice(st.rdev);
  return specialNodeOf(st.mode, major, minor);
}

function specialNodeOf(mode: number, major: number, minor: number): string {
  switch (mode & S_IFMT) {
    case fs.constants.S_IFIFO: return 'fifo';
    case fs.constants.S_IFSOCK: return 'socket';
    default: return specialNodeText({ type: (mode & S_IFMT) === fs.constants.S_IFBLK ? 'block' : 'char', major, minor });
  }
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
