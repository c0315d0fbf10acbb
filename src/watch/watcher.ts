/**
 * inotify -> dirty relative paths, through node's `fs.watch`, one non-recursive watch per directory
 * (Linux puts one inotify watch on each). Driven by the same exclude predicate as the scanner, so
 * what is excluded never depends on how it was found; excluded directories are not watched at all.
 * Symlinks are never followed.
 *
 * A directory is watched *before* it is listed, so nothing created in it can fall between the
 * listing and the watch. A directory that appears later is watched (with everything below it) as
 * soon as its parent reports it, and handed out as a `subtree`: what was written inside before the
 * watch existed is found by looking at the whole subtree. A directory that vanishes or is renamed
 * away loses its watches (inotify follows the inode, so a stale watch would report the old path).
 *
 * A watch that cannot be added for lack of inotify watches or file handles (ENOSPC, EMFILE) is
 * reported once to the caller, which falls back to rescans; an unreadable or vanished directory
 * is skipped silently (the scan reports the former).
 */
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { isTooDeep } from '../relpath.js';

export interface WatchOptions {
  /** Same predicate as the scanner's: is this path (a dir when isDir) excluded? */
  readonly isExcluded: (relPath: string, isDir: boolean) => boolean;
  /** A path changed; `subtree` when a directory appeared (look at everything below it). */
  readonly onDirty: (relPath: string, subtree: boolean) => void;
  readonly onError: (err: NodeJS.ErrnoException) => void;
}

export interface TreeWatcher {
  /** Resolves once every directory present at the start is watched. */
  readonly ready: Promise<void>;
  /** Directories watched now. */
  readonly size: number;
  close(): Promise<void>;
}

/** Errors that say "no more watches": reported once, then rescans stand in. */
const LIMIT_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE']);
/** Errors that say "this directory is not there (any more), not ours to read or too deep to name": skipped (the scan warns). */
const SKIP_CODES = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP', 'ENAMETOOLONG']);

export function watchTree(root: string, options: WatchOptions): TreeWatcher {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const toAbs = (rel: string): string => (rel === '' ? root : prefix + rel);
  /** Relative dir path ('' = root) -> its watch and the inode it was put on. */
  const watches = new Map<string, { w: FSWatcher; ino: number }>();
  let closed = false;
  let limitReported = false;

  const report = (err: NodeJS.ErrnoException): void => {
    if (closed) return;
    if (LIMIT_CODES.has(err.code ?? '')) {
      if (limitReported) return;
      limitReported = true;
    }
    options.onError(err);
  };

  /** Watches `rel` and every directory below it that can be watched. */
  const addTree = async (rel: string): Promise<void> => {
    const pending = [rel];
    while (pending.length > 0 && !closed) {
      const dir = pending.pop() as string;
      if (watches.has(dir) || !(await addWatch(dir))) continue;
      let names;
      try {
        names = await readdir(toAbs(dir), { withFileTypes: true });
      } catch (err) {
        skipOrReport(err);
        continue;
      }
      for (const d of names) {
        if (!d.isDirectory()) continue;
        const child = dir === '' ? d.name : `${dir}/${d.name}`;
        // Too deep to sync (relpath.ts MAX_SYNC_DEPTH): the scan warns once, events from there would only repeat it.
        if (!options.isExcluded(child, true) && !isTooDeep(child)) pending.push(child);
      }
    }
  };

  const skipOrReport = (err: unknown): void => {
    const e = err as NodeJS.ErrnoException;
    if (!SKIP_CODES.has(e.code ?? '')) report(e);
  };

  const addWatch = async (dir: string): Promise<boolean> => {
    let ino: number;
    try {
      // Taken before the watch: if the directory is replaced in between, its parent reports that,
      // and the inode no longer matching makes onEvent watch the new one.
      ino = (await lstat(toAbs(dir))).ino;
    } catch (err) {
      skipOrReport(err);
      return false;
    }
    if (closed || watches.has(dir)) return false;
    let w: FSWatcher;
    try {
      w = watch(toAbs(dir), { persistent: true }, (event, name) => onEvent(dir, event, name));
    } catch (err) {
      skipOrReport(err);
      return false;
    }
    w.on('error', (err: NodeJS.ErrnoException) => {
      dropTree(dir);
      skipOrReport(err);
    });
    watches.set(dir, { w, ino });
    return true;
  };

  /** Closes the watches of `rel` and of every directory below it. */
  const dropTree = (rel: string): void => {
    const below = `${rel}/`;
    for (const [dir, { w }] of watches) {
      if (dir === rel || dir.startsWith(below)) {
        w.close();
        watches.delete(dir);
      }
    }
  };

  const onEvent = (dir: string, event: string, name: string | Buffer | null): void => {
    if (closed || name === null) return;
    // Names that are not valid UTF-8 arrive as Buffers only on request; the scan warns about them.
    const rel = dir === '' ? String(name) : `${dir}/${String(name)}`;
    if (isTooDeep(rel)) {
      if (dir !== '') options.onDirty(dir, false);
      return;
    }
    if (event === 'change') {
      if (!options.isExcluded(rel, watches.has(rel))) options.onDirty(rel, false);
      return;
    }
    // 'rename': the name appeared or vanished (as a file or a directory); its directory's mtime changed too.
    if (dir !== '') options.onDirty(dir, false);
    // Marked at once, so the watermark waits for it while the lstat (and a new subtree's watches) run.
    const excludedBothWays = options.isExcluded(rel, false) && options.isExcluded(rel, true);
    if (!excludedBothWays) options.onDirty(rel, false);
    void lstat(toAbs(rel)).then(
      (st) => {
        if (closed) return;
        const isDir = st.isDirectory();
        if (options.isExcluded(rel, isDir)) return;
        if (!isDir) {
          if (watches.has(rel)) dropTree(rel); // a directory replaced by a file
          return;
        }
        const known = watches.get(rel);
        if (known?.ino === st.ino) return;
        if (known !== undefined) dropTree(rel); // replaced by another directory: the old watches see the old one
        // Watched before the caller looks below it, so nothing written there can be missed.
        void addTree(rel).finally(() => options.onDirty(rel, true));
      },
      () => {
        if (!closed) dropTree(rel);
      },
    );
  };

  const ready = addTree('');
  return {
    ready,
    get size() {
      return watches.size;
    },
    close: async () => {
      closed = true;
      for (const { w } of watches.values()) w.close();
      watches.clear();
      await ready.catch(() => undefined);
    },
  };
}
