/**
 * A full scan of the source tree: walk, then hash only the files the cache cannot vouch for.
 *
 * The cache vouches for a file when its size, mtime (integer ms) and inode all match the row
 * recorded when it was last hashed. Like rsync's quick check, a change that keeps size and mtime
 * (content rewritten, then the mtime restored with utimes) is therefore not seen; that is the
 * documented price of not re-reading every file on every start. `verify` on the receiver re-hashes.
 *
 * Racy files (git's "racily clean" problem): the kernel stamps mtimes from a coarse clock, so a
 * second same-size write within the same tick as the first leaves size and mtime unchanged. A hash
 * is therefore cached only if the file's mtime was at least `racyMs` old when hashing finished;
 * a younger file is hashed again on the next scan.
 *
 * Files that change while being hashed are retried, then skipped with FILE_UNSTABLE; unreadable
 * files and directories are skipped with UNREADABLE. Their paths are listed in
 * `ScanResult.incomplete`: the caller must keep what it knew about them (and, for a directory,
 * everything below it) instead of treating them as deleted. A file that vanished is simply absent.
 */
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Entry } from '../entry.js';
import { describeError, WarmsyncError } from '../errors.js';
import { localNames, ownerOf } from '../owner/names.js';
import { compareTreeOrder } from '../relpath.js';
import { CacheCursor, type AgentCache, type CacheRow } from './cache.js';
import type { FileHasher, HashResult } from './hash.js';
import { walkTree, type WalkEntry, type WalkOptions, type WarningHandler } from './walk.js';

export interface ScanOptions extends WalkOptions {
  /** Hash cache; null scans without one (everything is hashed, nothing remembered). */
  cache: AgentCache | null;
  hasher: FileHasher;
  /**
   * Files hashed at once.
   * @default 8
   */
  concurrency?: number;
  /**
   * A hash is cached only when the file's mtime is at least this old when hashing ends.
   * @default RACY_MS
   */
  racyMs?: number;
  /**
   * Retries (50 ms apart) of a file that changed while it was hashed, before it is skipped as
   * FILE_UNSTABLE.
   * @default HASH_RETRIES
   */
  hashRetries?: number;
  /**
   * Whether a file the cache cannot vouch for must be hashed now. False: it is listed with a null
   * hash, for the sender to hash as it sends it (a file the plan transfers whatever its hash).
   * @default every file is hashed
   */
  needsHash?: (path: string, size: number) => boolean;
  /**
   * The hash known elsewhere for the file as it is now (size, mtime, inode), or null: for a scan
   * without `cache` (a subtree of the live agent's tree) the cache's; for a full scan, the cache as
   * it is now (its cursor reads it as it was when the scan began, before a scan beside it ended).
   * Asked only of a file this scan would otherwise read and hash.
   */
  knownHash?: (path: string, size: number, mtimeMs: number, ino: number) => string | null;
  /**
   * Takes each entry, in tree order, as soon as it is known (a file once hashed, if it is hashed),
   * instead of the result's `entries`, which then stay empty: a full pass plans as it scans and
   * never holds the tree. needsHash is asked in tree order too, before the file's entry comes.
   */
  onEntry?: (entry: Entry) => void;
  /**
   * Asked before each path the walk takes: null to go on, or a promise to wait for first (the
   * taker of `onEntry`'s entries is behind). A rejection ends the scan with its reason.
   */
  room?: () => Promise<void> | null;
}

export interface ScanStats {
  files: number;
  dirs: number;
  symlinks: number;
  /** FIFOs, sockets and device nodes. */
  specials: number;
  /** Total size of the files in `entries`. */
  bytes: number;
  /** Files read and hashed by this scan, and their bytes. */
  hashed: number;
  hashedBytes: number;
  /** Files whose hash came from the cache. */
  cached: number;
  /** Files listed with a null hash (see needsHash), and their bytes. */
  unhashed: number;
  unhashedBytes: number;
}

export interface ScanResult {
  /** Everything found, sorted with compareTreeOrder (parents before children); empty with `onEntry`. */
  entries: Entry[];
  stats: ScanStats;
  /**
   * Paths whose current state this scan could not establish (UNREADABLE, FILE_UNSTABLE), sorted.
   * A directory here was listed in `entries` but its contents were not read. Keep, don't delete.
   */
  incomplete: string[];
  /**
   * The files this scan hashed whose mtime was old enough to cache (see racyMs). Already in
   * `cache` when there is one; a caller scanning without it (a subtree) can remember them itself.
   */
  cacheable: CacheRow[];
  /** The files this scan hashed too soon after their mtime to cache: each to be looked at again once it is old enough. */
  racy: RacyFile[];
}

/** A file whose hash could not be cached yet (see racyMs), and its mtime. */
export interface RacyFile { readonly path: string; readonly mtimeMs: number }

/** A file is racily clean (see the top of this file) until its mtime is this old. */
export const RACY_MS = 1000;

/** May a hash of a file with this mtime, finished at `hashedAt`, be cached? (see racyMs) */
export function isCacheable(mtimeMs: number, hashedAt: number, racyMs = RACY_MS): boolean {
  return hashedAt - mtimeMs >= racyMs;
}

/** Retries after FILE_CHANGED before a file is skipped as FILE_UNSTABLE. */
export const HASH_RETRIES = 3;
const RETRY_DELAY_MS = 50;

export async function scanTree(root: string, options: ScanOptions): Promise<ScanResult> {
  const { hasher, isExcluded } = options;
  const concurrency = options.concurrency ?? 8;
  const racyMs = options.racyMs ?? RACY_MS;
  const hashRetries = options.hashRetries ?? HASH_RETRIES;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new WarmsyncError('INVALID_OPTION', `scan concurrency must be a positive integer, got ${concurrency}`);
  }
  const absRoot = path.resolve(root);
  const rootPrefix = absRoot.endsWith('/') ? absRoot : `${absRoot}/`;

  const entries: Entry[] = [];
  const incomplete: string[] = [];
  const fresh: CacheRow[] = [];
  const racy: RacyFile[] = [];
  const stats: ScanStats = { files: 0, dirs: 0, symlinks: 0, specials: 0, bytes: 0, hashed: 0, hashedBytes: 0, cached: 0, unhashed: 0, unhashedBytes: 0 };
  const needsHash = options.needsHash ?? ((): boolean => true);
  let cache = options.cache;
  let known = CacheCursor.empty();

  const onWarning: WarningHandler = (code, message, relPath) => {
    if (relPath !== undefined && (code === 'UNREADABLE' || code === 'FILE_UNSTABLE')) incomplete.push(relPath);
    options.onWarning(code, message, relPath);
  };
  const dropCache = (err: unknown): void => {
    cache = null;
    known.close();
    known = CacheCursor.empty();
    onWarning('CACHE_FAILED', `${describeError(err)}; continuing without the cache`);
  };
  /** The cache's hash for a file as the walk found it; asked of every file, in the walk's (tree) order. */
  const cachedHash = (w: WalkEntry): string | null => {
    try {
      return known.claimIfSame(w.path, w.size, w.mtimeMs, w.ino);
    } catch (err) {
      dropCache(err); // a read failing half-way: nothing is remembered or forgotten this time
      return null;
    }
  };
  const names = localNames();
  const found = new InWalkOrder(options.onEntry ?? ((e) => entries.push(e)));
  const fileEntry = (w: WalkEntry, size: number, mtimeMs: number, mode: number, hash: string | null): Entry => {
    stats.files++;
    stats.bytes += size;
    return { path: w.path, kind: 'file', size, mtimeMs, mode, hash, target: null, owner: ownerOf(w.uid, w.gid, names) };
  };

  const hashOne = async (w: WalkEntry): Promise<Entry | null> => {
    const absPath = rootPrefix + w.path;
    let result: HashResult;
    try {
      result = await hashWithRetry(hasher, absPath, w, hashRetries);
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null; // deleted meanwhile: absent, as it should be
      if (code === 'FILE_CHANGED') {
        onWarning('FILE_UNSTABLE', `${w.path} kept changing while it was hashed; skipped until the next scan`, w.path);
        return null;
      }
      if (code === 'EACCES' || code === 'EPERM') {
        onWarning('UNREADABLE', `${w.path}: cannot read (${code}); skipped`, w.path);
        return null;
      }
      throw new WarmsyncError('SCAN_FAILED', `${absPath}: cannot hash: ${describeError(err)}`, { cause: err });
    }
    const hashedAt = Date.now();
    if (result.shared === true) {
      stats.cached++; // read for a scan beside this one (hash.ts sharingHashes)
    } else {
      stats.hashed++;
      stats.hashedBytes += result.size;
    }
    if (isCacheable(result.mtimeMs, hashedAt, racyMs)) {
      fresh.push({ path: w.path, size: result.size, mtimeMs: result.mtimeMs, ino: result.ino, hash: result.hash });
    } else {
      racy.push({ path: w.path, mtimeMs: result.mtimeMs });
    }
    // Metadata from the hashed bytes' own fstat: it may be newer than the walk's lstat after a retry.
    return fileEntry(w, result.size, result.mtimeMs, result.mode, result.hash);
  };

  if (cache !== null) {
    try {
      known = cache.readInTreeOrder();
    } catch (err) {
      dropCache(err);
    }
  }

  // A small promise pool: the walk waits while `concurrency` hashes are running.
  const inFlight = new Set<Promise<void>>();
  const failures: unknown[] = [];
  try {
    for await (const w of walkTree(root, { isExcluded, onWarning, levelsAbove: options.levelsAbove ?? 0 })) {
      if (failures.length > 0) break;
      const behind = options.room?.() ?? null;
      if (behind !== null) await behind;
      if (w.kind === 'dir') {
        found.put({ path: w.path, kind: 'dir', size: 0, mtimeMs: w.mtimeMs, mode: w.mode, hash: null, target: null, owner: ownerOf(w.uid, w.gid, names) });
        stats.dirs++;
        continue;
      }
      if (w.kind === 'symlink' || w.kind === 'special') {
        found.put({ path: w.path, kind: w.kind, size: w.size, mtimeMs: w.mtimeMs, mode: w.mode, hash: null, target: w.target, owner: ownerOf(w.uid, w.gid, names) });
        if (w.kind === 'symlink') stats.symlinks++;
        else stats.specials++;
        continue;
      }
      const cached = cachedHash(w);
      if (cached !== null) {
        stats.cached++;
        found.put(fileEntry(w, w.size, w.mtimeMs, w.mode, cached));
        continue;
      }
      if (!needsHash(w.path, w.size)) {
        stats.unhashed++;
        stats.unhashedBytes += w.size;
        found.put(fileEntry(w, w.size, w.mtimeMs, w.mode, null));
        continue;
      }
      const remembered = options.knownHash?.(w.path, w.size, w.mtimeMs, w.ino) ?? null;
      if (remembered !== null) {
        stats.cached++;
        found.put(fileEntry(w, w.size, w.mtimeMs, w.mode, remembered));
        continue;
      }
      // Entries found behind a file still being hashed wait for it: a bounded number of them.
      while ((inFlight.size >= concurrency || found.waiting >= MAX_WAITING) && inFlight.size > 0) await Promise.race(inFlight);
      const place = found.reserve();
      // Whatever fails here (the hash, or the taker of the entries it lets go) fails the scan.
      const settle = (entry: Entry | null): void => {
        try {
          found.fill(place, entry);
        } catch (err) {
          failures.push(err);
        }
      };
      const task: Promise<void> = hashOne(w)
        .then(settle, (err: unknown) => {
          failures.push(err);
          settle(null);
        })
        .finally(() => { inFlight.delete(task); });
      inFlight.add(task);
    }
  } catch (err) {
    known.close();
    throw err;
  } finally {
    // Also on a walk error: never leave hashes running (and file handles open) behind a rejection.
    await Promise.all(inFlight);
  }
  if (failures.length > 0) {
    known.close();
    throw failures[0];
  }

  if (cache !== null) {
    try {
      cache.remember(fresh);
      cache.forget(known.unclaimed()); // the files the scan did not find
    } catch (err) {
      dropCache(err);
    }
  }

  incomplete.sort(compareTreeOrder);
  return { entries, stats, incomplete, cacheable: fresh, racy };
}

/** Entries found while earlier files were still being hashed, at most: past it, the walk waits. */
const MAX_WAITING = 4096;

/**
 * Entries handed over in the walk's order (tree order), though files finish hashing in any order:
 * a file being hashed holds its place, and the entries behind it wait for it.
 */
class InWalkOrder {
  /** Entries not handed over yet, from `#start` on: undefined while still being found, null for none (skipped). */
  readonly #places: (Entry | null | undefined)[] = [];
  #start = 0;
  /** Places dropped from the front of `#places` so far: a place's number minus this is its index. */
  #dropped = 0;

  constructor(private readonly deliver: (entry: Entry) => void) {}

  /** Entries found and not handed over yet (all behind a file still being hashed). */
  get waiting(): number {
    return this.#places.length - this.#start;
  }

  /** An entry known now. */
  put(entry: Entry): void {
    if (this.waiting === 0) this.deliver(entry);
    else this.#places.push(entry);
  }

  /** A place for an entry still being found; `fill` it with the entry, or null for none. */
  reserve(): number {
    this.#places.push(undefined);
    return this.#dropped + this.#places.length - 1;
  }

  fill(place: number, entry: Entry | null): void {
    this.#places[place - this.#dropped] = entry;
    while (this.#start < this.#places.length) {
      const next = this.#places[this.#start];
      if (next === undefined) break;
      this.#start++;
      if (next !== null) this.deliver(next);
    }
    if (this.#start === this.#places.length || (this.#start > 1024 && this.#start * 2 > this.#places.length)) {
      this.#places.splice(0, this.#start);
      this.#dropped += this.#start;
      this.#start = 0;
    }
  }
}

async function hashWithRetry(hasher: FileHasher, absPath: string, w: WalkEntry, retries: number): Promise<HashResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      // First attempt: the bytes must be the file the walk listed. Retries take it as it now is.
      return await hasher.hashFile(absPath, attempt === 0 ? { size: w.size, mtimeMs: w.mtimeMs, ino: w.ino } : undefined);
    } catch (err) {
      if (codeOf(err) !== 'FILE_CHANGED' || attempt >= retries) throw err;
      await delay(RETRY_DELAY_MS);
    }
  }
}

function codeOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
