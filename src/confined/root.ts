/**
 * The confined file layer (DESIGN.md invariant 3, "Confined"): every file-system operation the
 * receiver, the gate executor (tombstones, promote, restore) and crash recovery make on the standby
 * is resolved beneath a directory descriptor of the root, without following a symlink at any step,
 * at the moment it happens. There is no check-then-use: a path is never looked at and then used
 * again by name, so a local user who swaps a directory for a symlink between two calls cannot make
 * the receiver write, rename, remove, chmod or utime anything outside the root.
 *
 * How: the native addon (native/confined.c) opens a directory with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) (component by component with O_NOFOLLOW where
 * openat2 is missing), and every other call (mkdirat, renameat2, unlinkat, symlinkat, utimensat,
 * fstatat, openat of a file) takes that directory's descriptor and ONE name. Data and metadata go
 * through the descriptors it returns (Node's fs.write, fchmod, futimes, fsync).
 *
 * A symlink in a directory part of a path is refused with UNSAFE_PATH; a symlink at the final name
 * is never followed (stat reports it, rename replaces it, open refuses it with ELOOP).
 *
 * Directory descriptors are shared while in use (`dir` counts references; the last release closes
 * it), so the files of one commit group in one directory cost one resolution, not one per file.
 * Nothing is kept once unused: a kept descriptor of a directory that was later renamed elsewhere
 * would keep writing there. While one is in use that can still happen (a local user renames the
 * directory, or a gate command moves it into the quarantine); so the receiver checks, under the
 * manifest's write lock and just before its renames, that each descriptor is still the directory
 * at its path (`stillAt`), and this layer marks descriptors below a directory it moves itself as
 * stale. What an attacker who can rename directories inside the root can still do is move our
 * files out afterwards, which needs no race: the threat model in docs/reliability.md says so.
 */
import { closeSync, constants, fstatSync, fsync, fsyncSync, futimesSync, openSync, readSync, writeSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ProtocolError, WarmsyncError } from '../errors.js';
import { loadNative } from '../native.js';
import { baseName, checkRelPath, isWithin, parentOf } from '../relpath.js';

const { O_RDONLY, O_WRONLY, O_DIRECTORY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = constants;
const DIR_FLAGS = O_RDONLY | O_DIRECTORY;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL;
const fsyncAsync = promisify(fsync);

export type DirentType = 'file' | 'dir' | 'symlink' | 'other' | 'unknown';

interface RawStat { mode: number; nlink: number; size: number; ino: number; dev: number; uid: number; mtimeMs: number }

/** The confined part of the addon (native/confined.c documents each call). */
interface ConfinedAddon {
  openBeneath(dirfd: number, path: string | Buffer, flags: number, mode: number): number;
  openBeneathAsync(dirfd: number, path: string | Buffer, flags: number, mode: number): Promise<number>;
  mkdirAt(dirfd: number, name: string | Buffer, mode: number): void;
  renameAt(fromDirfd: number, fromName: string | Buffer, toDirfd: number, toName: string | Buffer, noReplace: boolean): void;
  unlinkAt(dirfd: number, name: string | Buffer, isDir: boolean): void;
  symlinkAt(target: string | Buffer, dirfd: number, name: string | Buffer): void;
  utimesAt(dirfd: number, name: string | Buffer, atimeMs: number, mtimeMs: number): void;
  statAt(dirfd: number, name: string | Buffer): RawStat | null;
  readlinkAt(dirfd: number, name: string | Buffer): Buffer;
  readdirFd(dirfd: number): Array<{ name: Buffer; type: DirentType }>;
  confinedInfo(): { openat2: boolean };
  setOpenat2(on: boolean): void;
}

let addon: ConfinedAddon | null = null;
function native(): ConfinedAddon {
  addon ??= loadNative<ConfinedAddon>();
  return addon;
}

/**
 * Where file creates are made. On a local journaled file system a create costs ~8 us of CPU; sent
 * to libuv's pool it cost 19 us (a promise, a pool thread woken, a callback on the loop, and the
 * pool's threads contending for the directory's lock), and the receiver's CPU per file is what
 * bounds a burst. On NFS, or on an ext4 without a journal that skips recently freed inodes, a
 * create takes about a millisecond, which the caller's thread should not sit through: there the
 * pool runs several at once. So creates are made on the caller's thread and timed; when their
 * running mean (the last ~16) passes SLOW_CREATE_MS, the creates of the next POOL_SPELL_MS go to
 * the pool, and then one on the thread starts the mean afresh. A lone slow create (a journal
 * commit waited for: a few per 50,000 on ext4) does not move the mean that far. Pure: the clock
 * is passed in.
 */
export class CreatePlacement {
  private meanMs = 0;
  private poolUntil = -Infinity;
  /** The next create timed is the first after a spell on the pool. */
  private afresh = false;

  /** Whether a create at `now` (ms) is made on the caller's thread. */
  inline(now: number): boolean {
    return now >= this.poolUntil;
  }

  /** A create made on the caller's thread took `ms`, ending at `now`. */
  took(ms: number, now: number): void {
    this.meanMs = this.afresh ? ms : this.meanMs + (ms - this.meanMs) / MEAN_OVER;
    this.afresh = false;
    if (this.meanMs > SLOW_CREATE_MS) {
      this.poolUntil = now + POOL_SPELL_MS;
      this.afresh = true;
    }
  }
}

const MEAN_OVER = 16;
export const SLOW_CREATE_MS = 0.25;
export const POOL_SPELL_MS = 250;
let createPlacement = new CreatePlacement();

/** What resolves paths: openat2 (true) or the component-by-component fallback (false, or ENOSYS was seen). */
export function usesOpenat2(): boolean {
  return native().confinedInfo().openat2;
}

/**
 * Opens `rel` beneath the directory `dirfd` without following a symlink at any step (openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or the component-by-component fallback): ELOOP for a
 * symlink, EXDEV for a path leaving the directory, as errno errors. For callers holding their own
 * directory descriptor (the agent's source root).
 */
export function openBeneath(dirfd: number, rel: string, flags: number): number {
  return native().openBeneath(dirfd, rel, flags, 0);
}

/** Tests: force the fallback (false) or try openat2 again (true). */
export function setOpenat2ForTests(on: boolean): void {
  native().setOpenat2(on);
}

/** Tests of the pool path: every create goes to the pool (true), or placement is as in production (false). */
export function setCreatesOnPoolForTests(on: boolean): void {
  createPlacement = new CreatePlacement();
  if (on) createPlacement.took(Infinity, Infinity);
}

export type EntryKindOnDisk = 'file' | 'dir' | 'symlink' | 'other';

/** An lstat of one entry (never through a symlink). */
export interface FileStat {
  readonly kind: EntryKindOnDisk;
  readonly mode: number;
  readonly nlink: number;
  readonly size: number;
  readonly ino: number;
  readonly dev: number;
  readonly mtimeMs: number;
}

export function kindOfMode(mode: number): EntryKindOnDisk {
  switch (mode & S_IFMT) {
    case S_IFREG: return 'file';
    case S_IFDIR: return 'dir';
    case S_IFLNK: return 'symlink';
    default: return 'other';
  }
}

function toStat(raw: RawStat | null): FileStat | null {
  return raw === null ? null : { ...raw, kind: kindOfMode(raw.mode) };
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function isUnsafeCode(code: string | undefined): boolean {
  return code === 'ELOOP' || code === 'ENOTDIR' || code === 'EXDEV';
}

function unsafe(rel: string, cause: unknown): ProtocolError {
  return new ProtocolError('UNSAFE_PATH', `refusing ${JSON.stringify(rel)}: it or a directory above it is not a directory on the standby (a symlink is never written through)`, { cause });
}

/** An Error with an errno `code`, as Node's fs throws (the receiver reports it under that code). */
function errnoError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

function missing(what: string): NodeJS.ErrnoException {
  return errnoError('ENOENT', `${what} does not exist on the standby`);
}

/**
 * A directory of the root, open (O_RDONLY | O_DIRECTORY), shared while in use. Its methods act on
 * one direct child `name` (one path component) and never follow a symlink there.
 */
export class DirRef {
  /** @internal */ refs = 1;
  /** Set when this layer moved the directory (or one above it) away: do not use it for new work. */
  stale = false;

  /** @internal */
  constructor(private readonly owner: ConfinedRoot, readonly rel: string, readonly fd: number) {}

  /** One more user; each retain needs its own release. */
  retain(): DirRef {
    this.refs++;
    return this;
  }

  release(): void {
    this.owner.releaseDir(this);
  }

  stat(name: string | Buffer): FileStat | null {
    return toStat(native().statAt(this.fd, name));
  }

  /** openat(fd, name, flags | O_NOFOLLOW): a symlink there fails with ELOOP. */
  open(name: string | Buffer, flags: number, mode = 0): number {
    return native().openBeneath(this.fd, name, flags | O_NOFOLLOW, mode);
  }

  /** `open` on libuv's thread pool (creating a file can take a millisecond: createPlacement). */
  openAsync(name: string | Buffer, flags: number, mode = 0): Promise<number> {
    return native().openBeneathAsync(this.fd, name, flags | O_NOFOLLOW, mode);
  }

  /**
   * Creates a new file (O_CREAT | O_EXCL: never opens what is there) and returns its descriptor:
   * on this thread while creates are fast, on libuv's pool while they are slow (createPlacement).
   */
  createFile(name: string, mode: number): Promise<number> {
    try {
      const fd = this.createFileNow(name, mode);
      return fd === null ? this.openAsync(name, CREATE_FLAGS, mode) : Promise.resolve(fd);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * `createFile` when creates are fast: the descriptor, made on this thread (a failure throws);
   * null when they are slow, for the caller to create it on the pool (`createFile`).
   */
  createFileNow(name: string, mode: number): number | null {
    const started = performance.now();
    if (!createPlacement.inline(started)) return null;
    const fd = this.open(name, CREATE_FLAGS, mode);
    const now = performance.now();
    createPlacement.took(now - started, now);
    return fd;
  }

  mkdir(name: string | Buffer, mode: number): void {
    native().mkdirAt(this.fd, name, mode);
  }

  /** renameat2 to `to`/`toName`; `noReplace`: fail with EEXIST instead of replacing what is there. */
  rename(name: string | Buffer, to: DirRef, toName: string | Buffer, noReplace = false): void {
    native().renameAt(this.fd, name, to.fd, toName, noReplace);
  }

  unlink(name: string | Buffer, isDir = false): void {
    native().unlinkAt(this.fd, name, isDir);
  }

  symlink(target: string, name: string): void {
    native().symlinkAt(target, this.fd, name);
  }

  /** Times of the entry itself (a symlink's own, never its target's), epoch ms. */
  utimes(name: string, atimeMs: number, mtimeMs: number): void {
    native().utimesAt(this.fd, name, atimeMs, mtimeMs);
  }

  readlink(name: string | Buffer): Buffer {
    return native().readlinkAt(this.fd, name);
  }

  list(): Array<{ name: Buffer; type: DirentType }> {
    return native().readdirFd(this.fd);
  }
}

/**
 * One directory tree the receiver owns (the standby root, or its state dir), open by descriptor.
 * Paths are canonical relative paths (relpath.ts); `excludedRel` (the state dir when it lies inside
 * the root) is refused like a bad path.
 */
export class ConfinedRoot {
  private readonly dirs = new Map<string, DirRef>();
  private closed = false;
  /** What `abs` puts before a canonical path: join's result for one, without normalizing each. */
  private readonly absPrefix: string;

  private constructor(readonly path: string, readonly excludedRel: string | null, private readonly fd: number) {
    this.absPrefix = join(path, 'x').slice(0, -1);
  }

  /** Opens `path` (the operator's own setting, resolved as given: it may itself be a symlink). */
  static open(path: string, excludedRel: string | null = null): ConfinedRoot {
    let fd: number;
    try {
      fd = openSync(path, DIR_FLAGS);
    } catch (err) {
      if (err instanceof WarmsyncError) throw err;
      throw new WarmsyncError(errnoCode(err) === 'ENOENT' ? 'ROOT_MISSING' : 'ROOT_NOT_DIR', `cannot open ${path} as a directory: ${(err as Error).message}`, { cause: err });
    }
    return new ConfinedRoot(path, excludedRel, fd);
  }

  /** The device and inode of the directory this root holds (whatever its path names by now). */
  stat(): Stats {
    return fstatSync(this.fd);
  }

  /** Closes the root's descriptor (descriptors still in use stay open until released). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  /**
   * Validates `rel` (a path from the peer or the manifest). Throws ProtocolError BAD_PATH naming
   * the problem. It builds nothing: it runs for every op, and the absolute path (`abs`) is for messages.
   */
  check(rel: string): void {
    checkRelPath(rel);
    if (this.excludedRel !== null && isWithin(rel, this.excludedRel)) {
      throw new ProtocolError('BAD_PATH', `invalid path ${JSON.stringify(rel)}: inside the receiver's state dir`);
    }
  }

  /** The absolute path of `rel` (a canonical path: see `check`), for messages. */
  abs(rel: string): string {
    return rel === '' ? this.path : this.absPrefix + rel;
  }

  /**
   * The directory `rel` ('' for the root), shared while in use: release it when done. Missing:
   * null, or with `createMode` it is created (and its missing ancestors, with the same mode).
   * Throws ProtocolError UNSAFE_PATH when a component is a symlink or not a directory.
   */
  dir(rel: string, createMode: number | null = null): DirRef | null {
    const cached = this.dirs.get(rel);
    if (cached !== undefined) return cached.retain();
    let fd: number;
    try {
      fd = native().openBeneath(this.fd, rel, DIR_FLAGS, 0);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' && createMode !== null && rel !== '') fd = this.createDir(rel, createMode);
      else if (code === 'ENOENT') return null;
      else if (isUnsafeCode(code)) throw unsafe(rel, err);
      else throw err;
    }
    const ref = new DirRef(this, rel, fd);
    this.dirs.set(rel, ref);
    return ref;
  }

  /** `dir`, for a directory that must exist: throws ENOENT when it does not. */
  needDir(rel: string, createMode: number | null = null): DirRef {
    const ref = this.dir(rel, createMode);
    if (ref === null) throw missing(JSON.stringify(rel === '' ? '.' : rel));
    return ref;
  }

  private createDir(rel: string, mode: number): number {
    const parent = this.needDir(parentOf(rel), mode);
    const name = baseName(rel);
    try {
      try {
        parent.mkdir(name, mode);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      // Whatever is there now must be a real directory: opened without following anything.
      return native().openBeneath(parent.fd, name, DIR_FLAGS | O_NOFOLLOW, 0);
    } catch (err) {
      if (isUnsafeCode(errnoCode(err))) throw unsafe(rel, err);
      throw err;
    } finally {
      parent.release();
    }
  }

  /** @internal (DirRef.release) */
  releaseDir(ref: DirRef): void {
    if (--ref.refs > 0) return;
    if (this.dirs.get(ref.rel) === ref) this.dirs.delete(ref.rel);
    closeSync(ref.fd);
  }

  /**
   * Is `ref` still the directory at its path (same device and inode, reached without a symlink)?
   * When not, it is marked stale and no longer handed out.
   */
  stillAt(ref: DirRef): boolean {
    if (ref.stale) return false;
    let fd = -1;
    try {
      fd = native().openBeneath(this.fd, ref.rel, DIR_FLAGS, 0);
      const now = fstatSync(fd);
      const held = fstatSync(ref.fd);
      if (now.ino === held.ino && now.dev === held.dev) return true;
    } catch {
      // gone, or a symlink now: not the same
    } finally {
      if (fd >= 0) closeSync(fd);
    }
    this.forget(ref.rel);
    return false;
  }

  /** Marks every descriptor at or below `rel` stale (this layer moved or removed that directory). */
  private forget(rel: string): void {
    for (const [key, ref] of this.dirs) {
      if (rel === '' || isWithin(key, rel)) {
        ref.stale = true;
        this.dirs.delete(key);
      }
    }
  }

  /** lstat of `rel`; null when it or an ancestor is missing. Throws UNSAFE_PATH for a symlink or file in its directory part. */
  lstat(rel: string): FileStat | null {
    const parent = this.dir(parentOf(rel));
    if (parent === null) return null;
    try {
      return parent.stat(baseName(rel));
    } finally {
      parent.release();
    }
  }

  /** `lstat`, with null for an unsafe directory part as well (for "is it still there?" checks). */
  probe(rel: string): FileStat | null {
    try {
      return this.lstat(rel);
    } catch (err) {
      if (err instanceof ProtocolError && err.code === 'UNSAFE_PATH') return null;
      throw err;
    }
  }

  /**
   * Opens the file `rel` with `flags` | O_NOFOLLOW | O_NONBLOCK (a FIFO planted there cannot block):
   * a symlink anywhere in the path, the last component included, is refused (UNSAFE_PATH).
   */
  openFile(rel: string, flags: number, mode = 0): number {
    try {
      return native().openBeneath(this.fd, rel, flags | O_NOFOLLOW | O_NONBLOCK, mode);
    } catch (err) {
      if (errnoCode(err) === 'ELOOP' || errnoCode(err) === 'EXDEV') throw unsafe(rel, err);
      throw err;
    }
  }

  /** Creates the directory `rel` if missing (ancestors with `parentMode`); true when it was created. */
  mkdir(rel: string, mode: number, parentMode = 0o755): boolean {
    const parent = this.needDir(parentOf(rel), parentMode);
    try {
      parent.mkdir(baseName(rel), mode);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') return false;
      throw err;
    } finally {
      parent.release();
    }
  }

  /** Removes the file, symlink or empty directory `rel` (never through a symlink). */
  remove(rel: string, isDir: boolean): void {
    const parent = this.needDir(parentOf(rel));
    try {
      parent.unlink(baseName(rel), isDir);
    } finally {
      parent.release();
    }
    if (isDir) this.forget(rel);
  }

  /**
   * Moves `rel` to `toRel` in `to` (this root or another, e.g. the state dir), creating the
   * destination's missing directories with `createMode`; never replaces anything there (EEXIST).
   * Across file systems (EXDEV) a file or symlink is copied (data fsynced) and then removed here.
   */
  move(rel: string, to: ConfinedRoot, toRel: string, createMode = 0o700): void {
    const from = this.needDir(parentOf(rel));
    try {
      const dest = to.needDir(parentOf(toRel), createMode);
      try {
        try {
          from.rename(baseName(rel), dest, baseName(toRel), true);
        } catch (err) {
          if (errnoCode(err) !== 'EXDEV') throw err;
          copyEntry(from, baseName(rel), dest, baseName(toRel));
          from.unlink(baseName(rel), false);
        }
      } finally {
        dest.release();
      }
    } finally {
      from.release();
    }
    this.forget(rel);
  }

  /**
   * fsyncs each directory once. A directory held open (in use) is fsynced through that descriptor;
   * one that no longer exists, or is no longer reachable without a symlink, is skipped.
   */
  async fsyncDirs(rels: Iterable<string>): Promise<void> {
    await Promise.all([...new Set(rels)].map(async (rel) => {
      let ref: DirRef | null;
      try {
        ref = this.dir(rel);
      } catch (err) {
        if (err instanceof ProtocolError && err.code === 'UNSAFE_PATH') return;
        throw err;
      }
      if (ref === null) return;
      try {
        await fsyncAsync(ref.fd);
      } finally {
        ref.release();
      }
    }));
  }

  /**
   * Removes every non-directory whose name `matches` below the root, skipping the directory
   * `skipRel` (the state dir); returns how many. Directories are entered by descriptor, never
   * through a symlink; names are bytes, so any name the file system holds is handled.
   */
  sweep(matches: (name: string) => boolean, skipRel: string | null): number {
    let removed = 0;
    const pending: Buffer[] = [Buffer.alloc(0)];
    while (pending.length > 0) {
      const rel = pending.pop() as Buffer;
      let fd: number;
      try {
        fd = native().openBeneath(this.fd, rel.length === 0 ? '.' : rel, DIR_FLAGS, 0);
      } catch {
        continue; // gone or swapped for a symlink meanwhile: nothing of ours below it
      }
      try {
        for (const { name, type } of native().readdirFd(fd)) {
          const childRel = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
          const kind = type === 'unknown' ? toStat(native().statAt(fd, name))?.kind ?? 'other' : type;
          if (kind === 'dir') {
            if (skipRel === null || childRel.toString() !== skipRel) pending.push(childRel);
          } else if (matches(name.toString())) {
            try {
              native().unlinkAt(fd, name, false);
              removed++;
            } catch {
              // already gone
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    }
    return removed;
  }
}

/** Copies a file or symlink `name` in `from` to `toName` in `to` (another file system), durably. */
function copyEntry(from: DirRef, name: string, to: DirRef, toName: string): void {
  const st = from.stat(name);
  if (st === null) throw missing(name);
  if (st.kind === 'symlink') {
    to.symlink(from.readlink(name).toString(), toName);
    return;
  }
  if (st.kind !== 'file') throw errnoError('EXDEV', `cannot move the ${st.kind} ${name} to another file system`);
  const src = from.open(name, O_RDONLY | O_NONBLOCK);
  try {
    const dst = native().openBeneath(to.fd, toName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, st.mode & 0o7777);
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let n = readSync(src, buf); n > 0; n = readSync(src, buf)) {
        for (let done = 0; done < n;) done += writeSync(dst, buf, done, n - done);
      }
      const t = st.mtimeMs / 1000;
      futimesSync(dst, t, t);
      fsyncSync(dst); // synchronous: a cross-device move is rare (a state dir on another disk)
    } finally {
      closeSync(dst);
    }
  } finally {
    closeSync(src);
  }
}
