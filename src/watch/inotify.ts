/**
 * Typed wrapper around the inotify part of warmsync's own addon (native/warmsync_native.c, loaded
 * by ../native.ts). Unlike node's `fs.watch` it delivers every
 * event the kernel queues, IN_Q_OVERFLOW (wd -1) and IN_IGNORED included, with names as raw bytes.
 *
 * Events arrive in batches: one callback per time the descriptor turns readable, holding everything
 * read then (the kernel queue drained, up to 16 MiB), with the wall-clock time of the first read.
 * The addon is loaded on first use, so commands that never watch do not need it built.
 */
import { loadNative } from '../native.js';

export interface InotifyEvent {
  /** The watch descriptor, -1 for IN_Q_OVERFLOW. */
  readonly wd: number;
  readonly mask: number;
  /** Pairs an IN_MOVED_FROM with its IN_MOVED_TO. */
  readonly cookie: number;
  /** The entry's name inside the watched directory, byte for byte; null for events on the directory itself. */
  readonly name: Buffer | null;
}

export type InotifyConstants = Readonly<Record<
  'IN_ACCESS' | 'IN_MODIFY' | 'IN_ATTRIB' | 'IN_CLOSE_WRITE' | 'IN_CLOSE_NOWRITE' | 'IN_OPEN' | 'IN_MOVED_FROM' |
  'IN_MOVED_TO' | 'IN_CREATE' | 'IN_DELETE' | 'IN_DELETE_SELF' | 'IN_MOVE_SELF' | 'IN_UNMOUNT' | 'IN_Q_OVERFLOW' |
  'IN_IGNORED' | 'IN_ONLYDIR' | 'IN_DONT_FOLLOW' | 'IN_EXCL_UNLINK' | 'IN_MASK_ADD' | 'IN_ISDIR' | 'IN_ONESHOT',
  number
>>;

/** One batch of events and when it was read (epoch ms). */
export type InotifyListener = (events: InotifyEvent[], readTimeMs: number) => void;

interface Addon {
  open(callback: InotifyListener): object;
  addWatch(handle: object, path: string | Buffer, mask: number): number;
  rmWatch(handle: object, wd: number): void;
  readNow(handle: object): void;
  close(handle: object): void;
  readonly constants: InotifyConstants;
}

function load(): Addon {
  return loadNative<Addon>();
}

/** The IN_* masks (loads the addon). */
export function inotifyConstants(): InotifyConstants {
  return load().constants;
}

/** One inotify instance (inotify_init1(IN_NONBLOCK | IN_CLOEXEC)), read on the event loop. */
export class Inotify {
  private readonly addon: Addon;
  private readonly handle: object;
  private closed = false;

  /** While open, the instance keeps the process alive; close() lets it exit. */
  constructor(listener: InotifyListener) {
    this.addon = load();
    this.handle = this.addon.open(listener);
  }

  /**
   * inotify_add_watch: the watch descriptor (the same one again for an inode already watched).
   * Throws an Error whose `code` is the errno name (ENOENT, ENOTDIR, ENOSPC, ...).
   */
  addWatch(path: string | Buffer, mask: number): number {
    return this.addon.addWatch(this.handle, path, mask);
  }

  /** inotify_rm_watch; a watch the kernel already removed is ignored. The kernel still queues an IN_IGNORED. */
  rmWatch(wd: number): void {
    this.addon.rmWatch(this.handle, wd);
  }

  /**
   * Reads whatever the kernel has queued now and hands it to the listener before returning, as one
   * batch (nothing when the queue is empty), without waiting for the event loop to poll.
   */
  readNow(): void {
    if (!this.closed) this.addon.readNow(this.handle);
  }

  /** Stops reading and closes the descriptor: no callback after this. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }
}
