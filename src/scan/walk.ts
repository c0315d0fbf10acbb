/**
 * Walks a source tree and yields what warmsync can sync: regular files, directories and symlinks
 * (never followed), each under its canonical relative POSIX path, with lstat metadata.
 *
 * Error policy (fast-glob's, made explicit):
 * - ENOENT/ENOTDIR below the root: the path was deleted or replaced meanwhile; skipped silently.
 * - EACCES/EPERM: `onWarning('UNREADABLE', ..., relPath)` and skipped. For a directory the entry
 *   itself is still yielded but its contents are not: the caller must treat that subtree as unknown,
 *   not as deleted (the `path` argument of the warning names it).
 * - An entry that changed type between listing and reading (a symlink that is no longer one, a
 *   directory whose lstat failed then succeeded, so it was not entered): `onWarning('FILE_UNSTABLE',
 *   ..., relPath)`, skipped until the next scan; like UNREADABLE, its state is unknown, not deleted.
 * - Sockets, FIFOs and devices: `onWarning('SPECIAL_FILE', ...)`, skipped.
 * - A name that is not a canonical relative path (relpath.ts: backslash, too long, ...) or that holds
 *   U+FFFD (Node's stand-in for bytes that are not UTF-8, so two names could decode to one; such a
 *   path cannot even be opened through the decoded string): `onWarning('UNSYNCABLE_NAME', ...)`,
 *   skipped with everything below it. Likewise a symlink whose target is not valid UTF-8.
 * - Any other error, or any error on the root itself: WarmsyncError SCAN_FAILED.
 *
 * Exclusion is a plain predicate; an excluded directory is pruned (never listed, nothing below it
 * is offered to the predicate). The walk streams: @nodelib/fs.walk pushes entries without regard
 * for backpressure, so its readdir calls are held back while more than HIGH_WATER entries wait
 * unconsumed; memory stays bounded by the consumer's pace, not by the size of the tree.
 */
import * as fs from 'node:fs';
import { lstat, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { walkStream, type Entry as RawEntry } from '@nodelib/fs.walk';
import type { EntryKind } from '../entry.js';
import { wholeMs } from '../entry.js';
import { describeError, WarmsyncError } from '../errors.js';
import { relPathProblem } from '../relpath.js';

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
  /** readlink() for symlinks, verbatim; null otherwise. */
  target: string | null;
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
}

/** Entries waiting for the consumer before directory listing pauses, and when it resumes. */
const HIGH_WATER = 4096;
const LOW_WATER = 1024;
/** Directories listed at once. */
const READDIR_CONCURRENCY = 8;

export async function* walkTree(root: string, options: WalkOptions): AsyncGenerator<WalkEntry> {
  const absRoot = path.resolve(root);
  await checkRoot(root, absRoot);
  const { isExcluded, onWarning } = options;
  const rootPrefix = absRoot.endsWith('/') ? absRoot : `${absRoot}/`;
  const toAbs = (rel: string): string => rootPrefix + rel;

  /** An error thrown by isExcluded or onWarning inside the walker's callbacks; rethrown as is. */
  let callbackError: unknown;
  /** Whether an entry passed the filters: decided once in entryFilter, reused by deepFilter. */
  const verdicts = new WeakMap<RawEntry, boolean>();

  const accept = (entry: RawEntry): boolean => {
    try {
      return classify(entry);
    } catch (err) {
      callbackError ??= err; // the caller's predicate or warning handler threw: fail with its error
      throw err;
    }
  };
  const classify = (entry: RawEntry): boolean => {
    const isDir = entry.stats?.isDirectory() ?? entry.dirent.isDirectory();
    if (isExcluded(entry.path, isDir)) return false;
    const problem = nameProblem(entry.path, entry.name);
    if (problem !== null) {
      onWarning('UNSYNCABLE_NAME', `${JSON.stringify(entry.path)} skipped: ${problem}`);
      return false;
    }
    if (entry.stats !== undefined && specialKind(entry.stats) !== null) {
      onWarning('SPECIAL_FILE', `${entry.path} skipped: ${specialKind(entry.stats)}`, entry.path);
      return false;
    }
    return true;
  };

  // Assigned by walkStream's return, but the walker calls readdir (for the root) before it returns.
  let stream: Readable | undefined = undefined;
  let held: (() => void)[] = [];
  const gatedReaddir = (
    dir: string,
    opts: { withFileTypes: true },
    callback: (error: NodeJS.ErrnoException | null, files: fs.Dirent[]) => void,
  ): void => {
    if (stream !== undefined && stream.readableLength >= HIGH_WATER) held.push(() => fs.readdir(dir, opts, callback));
    else fs.readdir(dir, opts, callback);
  };

  stream = walkStream(absRoot, {
    basePath: '',
    pathSegmentSeparator: '/',
    stats: true,
    followSymbolicLinks: false,
    // With `true`, one entry whose lstat fails (deleted between readdir and lstat) would fail the
    // whole directory listing; with `false` the entry arrives without stats and is re-checked below.
    throwErrorOnBrokenSymbolicLink: false,
    concurrency: READDIR_CONCURRENCY,
    fs: { readdir: gatedReaddir },
    entryFilter: (entry) => {
      const ok = accept(entry);
      verdicts.set(entry, ok);
      return ok;
    },
    // Without stats (its lstat failed) a directory is not entered: toWalkEntry reports it.
    deepFilter: (entry) => (verdicts.get(entry) ?? accept(entry)) && entry.stats?.isDirectory() === true,
    errorFilter: (error) => {
      // Only listing failures below the root are survivable; filter exceptions and root errors are not.
      if (error.syscall !== 'scandir' || typeof error.path !== 'string' || !error.path.startsWith(rootPrefix)) return false;
      const rel = error.path.slice(rootPrefix.length);
      if (rel === '') return false;
      switch (error.code) {
        case 'ENOENT':
        case 'ENOTDIR':
          return true;
        case 'EACCES':
        case 'EPERM':
          try {
            onWarning('UNREADABLE', `${rel}: cannot list directory (${error.code}); its contents are skipped`, rel);
          } catch (err) {
            callbackError ??= err;
            return false;
          }
          return true;
        default:
          return false;
      }
    },
  });

  try {
    for await (const raw of stream as AsyncIterable<RawEntry>) {
      if (held.length > 0 && stream.readableLength <= LOW_WATER) {
        const resume = held;
        held = [];
        for (const go of resume) go();
      }
      const entry = await toWalkEntry(raw);
      if (entry !== null) yield entry;
    }
  } catch (err) {
    if (callbackError !== undefined) throw callbackError;
    throw walkError(root, absRoot, err);
  }

  async function toWalkEntry(raw: RawEntry): Promise<WalkEntry | null> {
    const rel = raw.path;
    const abs = toAbs(rel);
    let st = raw.stats;
    if (st === undefined) {
      // fs.scandir's lstat failed and (throwErrorOnBrokenSymbolicLink: false) hid why: ask again.
      try {
        st = await lstat(abs);
      } catch (err) {
        return skipOrThrow(err, rel, 'stat');
      }
      const special = specialKind(st);
      if (special !== null) {
        onWarning('SPECIAL_FILE', `${rel} skipped: ${special}`, rel);
        return null;
      }
      if (st.isDirectory()) {
        // It was not entered (see deepFilter): yielding it would pass off an unread subtree as empty.
        onWarning('FILE_UNSTABLE', `${rel}: changed while it was listed; skipped until the next scan`, rel);
        return null;
      }
    }
    const common = { path: rel, mtimeMs: wholeMs(st.mtimeMs), mode: st.mode & 0o7777, ino: st.ino };
    if (st.isFile()) return { ...common, kind: 'file', size: st.size, target: null };
    if (st.isDirectory()) return { ...common, kind: 'dir', size: 0, target: null };
    let bytes: Buffer;
    try {
      bytes = await readlink(abs, { encoding: 'buffer' });
    } catch (err) {
      if (codeOf(err) === 'EINVAL') {
        onWarning('FILE_UNSTABLE', `${rel}: no longer a symlink; skipped until the next scan`, rel);
        return null;
      }
      return skipOrThrow(err, rel, 'read the link');
    }
    const target = bytes.toString('utf8');
    if (!Buffer.from(target, 'utf8').equals(bytes)) {
      onWarning('UNSYNCABLE_NAME', `${rel} skipped: its symlink target is not valid UTF-8`);
      return null;
    }
    return { ...common, kind: 'symlink', size: bytes.length, target };
  }

  function skipOrThrow(err: unknown, rel: string, what: string): null {
    const code = codeOf(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    if (code === 'EACCES' || code === 'EPERM') {
      onWarning('UNREADABLE', `${rel}: cannot ${what} (${code}); skipped`, rel);
      return null;
    }
    throw new WarmsyncError('SCAN_FAILED', `${toAbs(rel)}: cannot ${what}: ${describeError(err)}`, { cause: err });
  }
}

async function checkRoot(root: string, absRoot: string): Promise<void> {
  // fs.walk splits the root on both separators, so a backslash in it would name another directory.
  if (absRoot.includes('\\')) {
    throw new WarmsyncError('SCAN_FAILED', `source root ${root} contains a backslash, which the walker cannot handle`);
  }
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

/** Why this name cannot be synced, or null. `relPath` ends with `name`. */
function nameProblem(relPath: string, name: string): string | null {
  if (name.includes('\uFFFD')) return 'the name is not valid UTF-8 (or contains U+FFFD)';
  return relPathProblem(relPath);
}

function specialKind(st: fs.Stats): string | null {
  if (st.isFile() || st.isDirectory() || st.isSymbolicLink()) return null;
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  return 'not a file, directory or symlink';
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
