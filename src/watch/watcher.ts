/**
 * chokidar -> dirty relative paths. Driven by the same exclude predicate as the scanner, so what is
 * excluded never depends on how it was found. Symlinks are never followed. A watcher error (for
 * example the inotify watch limit) is reported to the caller, which falls back to rescans.
 */
import { relative, sep } from 'node:path';
import type { Stats } from 'node:fs';
import { watch, type FSWatcher } from 'chokidar';
import { parentOf } from '../relpath.js';

export interface WatchOptions {
  /** Same predicate as the scanner's: is this path (a dir when isDir) excluded? */
  readonly isExcluded: (relPath: string, isDir: boolean) => boolean;
  /** A path changed; `subtree` when a directory appeared (look at everything below it). */
  readonly onDirty: (relPath: string, subtree: boolean) => void;
  readonly onError: (err: NodeJS.ErrnoException) => void;
}

export interface TreeWatcher {
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

export function watchTree(root: string, options: WatchOptions): TreeWatcher {
  const toRel = (abs: string): string => relative(root, abs).split(sep).join('/');
  const watcher: FSWatcher = watch(root, {
    ignoreInitial: true,
    followSymlinks: false,
    persistent: true,
    atomic: false,
    ignored: (abs: string, stats?: Stats) => {
      const rel = toRel(abs);
      if (rel === '' || rel.startsWith('..')) return false;
      // Without stats chokidar asks again with them; only a dir-only rule needs to know.
      return options.isExcluded(rel, stats?.isDirectory() ?? false);
    },
  });
  watcher.on('all', (event, abs) => {
    const rel = toRel(abs);
    if (rel === '' || rel.startsWith('..')) return;
    options.onDirty(rel, event === 'addDir');
    // Adding or removing a name changes its directory's mtime, which the standby mirrors too.
    const parent = parentOf(rel);
    if (event !== 'change' && parent !== '') options.onDirty(parent, false);
  });
  watcher.on('error', (err) => options.onError(err as NodeJS.ErrnoException));
  const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return { ready, close: () => watcher.close() };
}
