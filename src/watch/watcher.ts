/**
 * inotify -> dirty relative paths, through warmsync's own inotify addon (./inotify.ts): one
 * instance, one watch per directory (wd -> directory), nothing per file. Driven by the same exclude
 * predicate as the scanner, so what is excluded never depends on how it was found; excluded
 * directories are not watched at all. Symlinks are never followed (IN_DONT_FOLLOW, IN_ONLYDIR).
 *
 * A directory is watched *before* it is listed, so nothing created in it can fall between the
 * listing and the watch. A directory that appears later is watched (with everything below it) as
 * soon as its parent reports it, and handed out as a `subtree` carrying the time of the event that
 * revealed it: what was written inside before the watch existed is found by looking at the whole
 * subtree. A directory that vanishes or is renamed away loses its watches (inotify follows the
 * inode, so a stale watch would report the old path).
 *
 * Every mark carries a time no later than its change was made: the last time the kernel's queue
 * had been read to the end before its batch (a batch's read time, or an empty `drain()`), since the
 * kernel queues an event before the system call that made the change returns. A watermark computed
 * from a clock read *before* a `drain()` thus needs no margin for events still in the pipe.
 *
 * Completeness: `onIncomplete` says when the feed may have missed events, and `since` when the
 * first of them may have happened:
 * - 'overflow': the kernel queue (fs.inotify.max_queued_events) overflowed; events may be missing
 *   from any directory, from the previous batch's read (`since`) until `at`. The watcher then walks
 *   the tree again to repair its own watches (directories created or moved meanwhile), and hands out
 *   every directory it had to watch anew as a `subtree` with the overflow's `at`.
 * - 'watch-limit': a directory could not be watched for lack of inotify watches or file handles
 *   (ENOSPC, EMFILE, ENFILE); reported for each such directory. Nothing below it is watched.
 * - 'watch-lost': the kernel removed a watch (IN_IGNORED) on a directory we did not drop and which
 *   is still there (an unmount, for one). It is watched again and handed out as a `subtree`.
 * An unreadable or vanished directory is skipped silently (the scan reports the former).
 *
 * While a new directory's watches are being put in place (or repaired after an overflow or a lost
 * watch), `pendingSince()` is the time of the event that revealed it: what lies below cannot be
 * handed out yet, so nothing after that moment may be vouched for. `drain()` takes every event the
 * kernel holds now, so that a caller about to vouch for "everything before now" has seen them.
 */
import { lstat, readdir } from 'node:fs/promises';
import { isTooDeep } from '../relpath.js';
import { Inotify, inotifyConstants, type InotifyEvent } from './inotify.js';

export type IncompleteReason = 'overflow' | 'watch-limit' | 'watch-lost';

export interface WatchOptions {
  /** Same predicate as the scanner's: is this path (a dir when isDir) excluded? */
  readonly isExcluded: (relPath: string, isDir: boolean) => boolean;
  /**
   * A path changed; `subtree` when a directory appeared (look at everything below it). `at` (epoch
   * ms): no later than the change that revealed it (see the header); for a subtree, possibly well
   * before this call.
   */
  readonly onDirty: (relPath: string, subtree: boolean, at: number) => void;
  /**
   * The feed may have missed events (see the header): changes made from `since` on (epoch ms); `at`
   * is when that was read.
   */
  readonly onIncomplete: (reason: IncompleteReason, since: number, at: number, detail: string) => void;
  /** Any other error (not a vanished or unreadable directory, not a limit). */
  readonly onError: (err: NodeJS.ErrnoException) => void;
}

export interface TreeWatcher {
  /** Resolves once every directory present at the start is watched. */
  readonly ready: Promise<void>;
  /** Directories watched now. */
  readonly size: number;
  /** The oldest event whose new directory is not handed out yet (see the header), or null. */
  pendingSince(): number | null;
  /** Reads and hands out every event the kernel holds now, before returning. */
  drain(): void;
  close(): Promise<void>;
}

/** Errors that say "no more watches": the feed is incomplete, rescans stand in. */
const LIMIT_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE']);
/** Errors that say "this directory is not there (any more), not ours to read or too deep to name": skipped (the scan warns). */
const SKIP_CODES = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP', 'ENAMETOOLONG']);

interface Watch { readonly wd: number; readonly ino: number }

/** The addon reads at most 64 x 256 KiB per batch; a batch this large may not have emptied the queue. */
const CUT_BYTES = 64 * 256 * 1024 - 256 * 1024;

export function watchTree(root: string, options: WatchOptions): TreeWatcher {
  const C = inotifyConstants();
  const MASK = C.IN_CREATE | C.IN_DELETE | C.IN_MODIFY | C.IN_CLOSE_WRITE | C.IN_ATTRIB | C.IN_MOVED_FROM |
    C.IN_MOVED_TO | C.IN_DELETE_SELF | C.IN_MOVE_SELF | C.IN_EXCL_UNLINK | C.IN_DONT_FOLLOW | C.IN_ONLYDIR;
  const LISTING = C.IN_CREATE | C.IN_DELETE | C.IN_MOVED_FROM | C.IN_MOVED_TO;
  const APPEARED = C.IN_CREATE | C.IN_MOVED_TO;
  const CONTENT = C.IN_MODIFY | C.IN_ATTRIB | C.IN_CLOSE_WRITE;
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const toAbs = (rel: string): string => (rel === '' ? root : prefix + rel);
  const below = (rel: string, dir: string): boolean => rel === '' || dir === rel || dir.startsWith(`${rel}/`);
  /** Relative dir path ('' = root) -> its watch; `dirs` is the inverse, wd -> path. */
  const watches = new Map<string, Watch>();
  const dirs = new Map<number, string>();
  /** Watches whose filesystem reported IN_UNMOUNT: their IN_IGNORED is a loss whatever the inode. */
  const unmounted = new Set<number>();
  let closed = false;
  /**
   * A lower bound of when the events of the next batch happened: the last time the kernel's queue
   * was read to the end (a batch's read time, or an empty drain). Marks carry it, not the read time:
   * a change read late still holds the watermark below the moment it was made.
   */
  let lastRead = Date.now();
  /** The last batch may have left events in the kernel's queue (see mayBeCut). */
  let cutShort = false;
  const mayBeCut = (events: readonly InotifyEvent[]): boolean => {
    let bytes = 0;
    for (const ev of events) bytes += 16 + (ev.name === null ? 0 : Math.ceil((ev.name.length + 1) / 16) * 16);
    cutShort = bytes >= CUT_BYTES;
    return cutShort;
  };
  /** A re-walk after an overflow: running, and the `at` of an overflow that arrived during it. */
  let rewalking = false;
  let rewalkAgain: number | null = null;
  /** Directories being watched whose subtree is not handed out yet -> the `at` that revealed each. */
  const adding = new Map<symbol, number>();
  /** Runs `work` (watches being put in place for what `at` revealed) with `at` pending meanwhile. */
  const whilePending = async <T>(at: number, work: () => Promise<T>): Promise<T> => {
    const token = Symbol('adding');
    adding.set(token, at);
    try {
      return await work();
    } finally {
      adding.delete(token);
    }
  };

  const inotify = new Inotify((events, at) => onBatch(events, at));

  const dirty = (rel: string, subtree: boolean, at: number): void => {
    if (!closed) options.onDirty(rel, subtree, at);
  };

  const skipOrReport = (err: unknown, dir: string, at: number): void => {
    if (closed) return;
    const e = err as NodeJS.ErrnoException;
    const code = e.code ?? '';
    if (LIMIT_CODES.has(code)) options.onIncomplete('watch-limit', at, at, `${code} at ${dir === '' ? '.' : dir}: ${e.message}`);
    else if (!SKIP_CODES.has(code)) options.onError(e);
  };

  /** Drops the bookkeeping of `dir`'s watch (not the watch itself). */
  const forget = (dir: string): void => {
    const w = watches.get(dir);
    if (w === undefined) return;
    watches.delete(dir);
    if (dirs.get(w.wd) === dir) dirs.delete(w.wd);
  };

  /** Removes the watches of `rel` and of every directory below it. */
  const dropTree = (rel: string): void => {
    for (const [dir, w] of watches) {
      if (!below(rel, dir)) continue;
      forget(dir);
      inotify.rmWatch(w.wd);
    }
  };

  /** Watches `dir`: 'new' when this path was not watched on this inode before, 'known' when it was. */
  const addWatch = async (dir: string, at: number): Promise<'new' | 'known' | null> => {
    let ino: number;
    try {
      // Taken before the watch: if the directory is replaced in between, its parent reports that.
      ino = (await lstat(toAbs(dir))).ino;
    } catch (err) {
      skipOrReport(err, dir, at);
      return null;
    }
    if (closed) return null;
    let wd: number;
    try {
      wd = inotify.addWatch(toAbs(dir), MASK);
    } catch (err) {
      skipOrReport(err, dir, at);
      return null;
    }
    const known = watches.get(dir);
    if (known?.wd === wd) return 'known';
    if (known !== undefined) dropTree(dir); // another directory under this name now: the old watches see the old one
    const previous = dirs.get(wd);
    if (previous !== undefined) forget(previous); // the same directory, moved here: it answers to this name now
    watches.set(dir, { wd, ino });
    dirs.set(wd, dir);
    return 'new';
  };

  /**
   * Watches `rel` and every directory below it that can be watched. A plain walk skips what is
   * watched already; a re-walk visits everything and returns the tops of what it had to watch anew.
   */
  const addTree = async (rel: string, at: number, rewalk = false, visited?: Set<number>): Promise<string[]> => {
    const fresh: string[] = [];
    const pending = [rel];
    while (pending.length > 0 && !closed) {
      const dir = pending.pop() as string;
      if (!rewalk && watches.has(dir)) continue;
      const added = await addWatch(dir, at);
      const w = watches.get(dir);
      if (added === null || w === undefined) continue;
      visited?.add(w.wd);
      if (added === 'new' && !fresh.some((top) => below(top, dir))) fresh.push(dir);
      let names;
      try {
        names = await readdir(toAbs(dir), { withFileTypes: true });
      } catch (err) {
        skipOrReport(err, dir, at);
        continue;
      }
      for (const d of names) {
        if (!d.isDirectory()) continue;
        const child = dir === '' ? d.name : `${dir}/${d.name}`;
        // Too deep to sync (relpath.ts MAX_SYNC_DEPTH): the scan warns once, events from there would only repeat it.
        if (!options.isExcluded(child, true) && !isTooDeep(child)) pending.push(child);
      }
    }
    return fresh;
  };

  /** After an overflow: every directory watched under its current name, stale watches dropped. */
  const rewalk = async (at: number): Promise<void> => {
    if (rewalking) {
      rewalkAgain = Math.min(rewalkAgain ?? at, at);
      return;
    }
    rewalking = true;
    try {
      await whilePending(at, () => rewalkOnce(at));
    } finally {
      rewalking = false;
    }
    if (rewalkAgain !== null && !closed) {
      const again = rewalkAgain;
      rewalkAgain = null;
      await rewalk(again);
    }
  };

  /** One re-walk: watches what is unwatched, drops stale watches, hands out what was watched anew. */
  const rewalkOnce = async (at: number): Promise<void> => {
    const before = new Set(dirs.keys());
    const visited = new Set<number>();
    const fresh = await addTree('', at, true, visited);
    if (closed) return;
    for (const wd of before) {
      const dir = dirs.get(wd);
      if (visited.has(wd) || dir === undefined) continue;
      forget(dir);
      inotify.rmWatch(wd);
    }
    for (const dir of fresh) dirty(dir, true, at);
  };

  /** The kernel removed the watch `wd` (IN_IGNORED): a loss unless its directory went away. */
  const onIgnored = (wd: number, since: number, at: number): void => {
    const dir = dirs.get(wd);
    const wasUnmounted = unmounted.delete(wd);
    if (dir === undefined) return; // dropped by us
    const w = watches.get(dir) as Watch;
    forget(dir);
    void whilePending(at, async () => {
      const st = await lstat(toAbs(dir)).catch(() => null);
      if (st === null || closed || !st.isDirectory() || watches.has(dir)) return;
      if (st.ino !== w.ino && !wasUnmounted) return; // replaced: its parent reports the new one
      options.onIncomplete('watch-lost', since, at, `the kernel removed the watch on ${dir === '' ? '.' : dir}${wasUnmounted ? ' (its filesystem was unmounted)' : ''}`);
      await addTree(dir, at);
      dirty(dir, true, at);
    });
  };

  const onEvent = (ev: InotifyEvent, since: number, at: number): void => {
    if (ev.mask & C.IN_IGNORED) return onIgnored(ev.wd, since, at);
    if (ev.mask & C.IN_UNMOUNT) unmounted.add(ev.wd);
    const dir = dirs.get(ev.wd);
    // Events on the directory itself (IN_DELETE_SELF, IN_MOVE_SELF, IN_ATTRIB) are reported by its parent.
    if (dir === undefined || ev.name === null) return;
    // Names that are not valid UTF-8 are decoded lossily (as fs.watch did); the scan warns about them.
    const name = ev.name.toString();
    const rel = dir === '' ? name : `${dir}/${name}`;
    if (isTooDeep(rel)) {
      if (dir !== '') dirty(dir, false, since);
      return;
    }
    const isDir = (ev.mask & C.IN_ISDIR) !== 0;
    const excluded = options.isExcluded(rel, isDir);
    if (ev.mask & CONTENT) {
      if (!excluded) dirty(rel, false, since);
    }
    if ((ev.mask & LISTING) === 0) return;
    // The name appeared or vanished: its directory's listing (and mtime) changed too.
    if (dir !== '') dirty(dir, false, since);
    // Marked at once, so the watermark waits for it while a new subtree's watches are put in place.
    if (!excluded) dirty(rel, false, since);
    if (!isDir) return;
    if (ev.mask & (C.IN_DELETE | C.IN_MOVED_FROM)) dropTree(rel);
    if (ev.mask & APPEARED && !excluded) {
      if (watches.has(rel)) dropTree(rel); // renamed over a watched directory
      // Watched before the caller looks below it, so nothing written there can be missed.
      void whilePending(since, async () => {
        await addTree(rel, since);
        dirty(rel, true, since);
      });
    }
  };

  const onBatch = (events: InotifyEvent[], at: number): void => {
    if (closed) return;
    const since = lastRead;
    // A batch that may have stopped short of the kernel's queue (the addon reads at most 16 MiB)
    // leaves events queued before `at`: the next batch then keeps this one's `since`.
    if (!mayBeCut(events)) lastRead = at;
    let overflow = false;
    for (const ev of events) {
      if (ev.wd === -1) overflow ||= (ev.mask & C.IN_Q_OVERFLOW) !== 0;
      else onEvent(ev, since, at);
      if (closed) return;
    }
    if (!overflow) return;
    options.onIncomplete('overflow', since, at, `the inotify queue overflowed (fs.inotify.max_queued_events): events since ${new Date(since).toISOString()} may be missing anywhere in the tree`);
    void rewalk(at);
  };

  const ready = addTree('', Date.now()).then(() => undefined);
  return {
    ready,
    get size() {
      return watches.size;
    },
    pendingSince: () => {
      let oldest: number | null = null;
      for (const at of adding.values()) if (oldest === null || at < oldest) oldest = at;
      return oldest;
    },
    drain: () => {
      if (closed) return;
      const before = Date.now();
      cutShort = false;
      inotify.readNow();
      // Read empty (or a batch was read after `before`): whatever comes next was queued after `before`.
      if (lastRead < before && !cutShort) lastRead = before;
    },
    close: async () => {
      closed = true;
      inotify.close();
      watches.clear();
      dirs.clear();
      await ready.catch(() => undefined);
    },
  };
}
