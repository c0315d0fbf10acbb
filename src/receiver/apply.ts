/**
 * Changes to the standby tree other than file content: directories, symlinks, metadata, and making
 * room when a path changes kind. Every method takes a path the PathGuard has already resolved.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, lchownSync, lstatSync, mkdirSync, utimesSync } from 'node:fs';
import { lstat, lutimes, mkdir, open, readdir, rename, rmdir, symlink, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseSpecialNode, utimeValue, type EntryKind } from '../entry.js';
import { WarmsyncError } from '../errors.js';
import type { TargetIds } from '../owner/policy.js';
import { mknod } from './mknod.js';
import { tempPathBeside } from './staging.js';
import { lstatOrNull } from '../lstat.js';

export type RemovalLog = (path: string, reason: string) => void;

function kindOf(st: { isDirectory(): boolean; isSymbolicLink(): boolean; isFile(): boolean }): EntryKind {
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFile()) return 'file';
  return 'special';
}

/** Gives `abs` (never followed) its owner and group; before any chmod, since chown clears setuid and setgid. */
function chownPath(abs: string, ids: TargetIds | null | undefined): void {
  if (ids !== undefined && ids !== null) lchownSync(abs, ids.uid, ids.gid);
}

export class TreeWriter {
  /**
   * @param displacedDir where a non-empty directory goes when the source replaced it by a file or
   *   symlink: it may hold files the gate still protects, so it is moved aside, never deleted.
   */
  constructor(private readonly displacedDir: string, private readonly logRemoval: RemovalLog) {}

  /**
   * Clears `abs` when something of another kind than `kind` sits there. What stood there may be a
   * file the gate still protects, so it is moved aside into the displaced dir, never deleted (a
   * file or symlink about to be replaced by a file or symlink is simply renamed over, as any update).
   * Returns true when a directory tree was moved (the caller drops its manifest rows).
   */
  async makeRoomFor(rel: string, abs: string, kind: EntryKind): Promise<boolean> {
    const st = lstatOrNull(abs);
    if (st === null) return false;
    const existing = kindOf(st);
    if (existing === kind || (existing !== 'dir' && kind !== 'dir')) return false;
    if (existing === 'dir' && (await readdir(abs)).length === 0) {
      await rmdir(abs);
      this.logRemoval(rel, `replaced: empty directory became ${kind} on the source`);
      return true;
    }
    const aside = join(this.displacedDir, `${Date.now()}-${randomBytes(4).toString('hex')}`, rel);
    await mkdir(dirname(aside), { recursive: true, mode: 0o700 });
    await rename(abs, aside);
    this.logRemoval(rel, `displaced to ${aside}: ${existing} became ${kind} on the source`);
    return existing === 'dir';
  }

  // ensureDir and setDirTime are synchronous: metadata calls of microseconds, which as promises
  // would queue in libuv's pool behind the group commit's fsyncs (see staging.ts).

  /**
   * Creates the directory if needed and sets its owner (`ids`, when given) and mode; its mtime is
   * set by `setDirTime` once its contents settle.
   */
  async ensureDir(abs: string, mode: number, ids?: TargetIds | null): Promise<void> {
    try {
      mkdirSync(abs, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (!lstatSync(abs).isDirectory()) throw new WarmsyncError('APPLY_FAILED', `${abs} is not a directory after mkdir`);
    chownPath(abs, ids);
    chmodSync(abs, mode);
  }

  async setDirTime(abs: string, mtimeMs: number): Promise<void> {
    const t = utimeValue(mtimeMs);
    try {
      utimesSync(abs, t, t);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** Creates or replaces a symlink atomically: a temporary link renamed over the path. */
  async writeSymlink(abs: string, target: string, mtimeMs: number, ids?: TargetIds | null): Promise<void> {
    const temp = tempPathBeside(abs);
    await symlink(target, temp);
    try {
      chownPath(temp, ids);
      const t = utimeValue(mtimeMs);
      await lutimes(temp, t, t);
      await rename(temp, abs);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  /**
   * A FIFO, socket or device node (`node` as src/entry.ts spells it), created under a temporary
   * name with mknod, given its owner, mode and mtime, and renamed over the path: never opened.
   */
  async writeSpecial(abs: string, node: string, mode: number, mtimeMs: number, ids?: TargetIds | null): Promise<void> {
    const parsed = parseSpecialNode(node);
    if (parsed === null) throw new WarmsyncError('APPLY_FAILED', `${abs}: not a special file node: ${JSON.stringify(node)}`);
    const temp = tempPathBeside(abs);
    mknod(temp, parsed, 0o600);
    try {
      chownPath(temp, ids);
      chmodSync(temp, mode);
      const t = utimeValue(mtimeMs);
      await lutimes(temp, t, t);
      await rename(temp, abs);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  /** Owner, mode and mtime of a regular file whose content is already right; fsynced so the change is durable. */
  async setFileMeta(abs: string, mode: number, mtimeMs: number, ids?: TargetIds | null): Promise<void> {
    const st = await lstat(abs);
    if (!st.isFile()) throw new WarmsyncError('APPLY_FAILED', `${abs} is not a regular file on the standby`);
    const handle = await open(abs, 'r');
    try {
      if (ids !== undefined && ids !== null) await handle.chown(ids.uid, ids.gid);
      await handle.chmod(mode);
      const t = utimeValue(mtimeMs);
      await handle.utimes(t, t);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Is the file at `abs` present with this size? (a cheap check before trusting a setMeta). */
  async hasFile(abs: string, size: number): Promise<boolean> {
    const st = lstatOrNull(abs);
    return st !== null && st.isFile() && st.size === size;
  }

  async hasKind(abs: string, kind: EntryKind): Promise<boolean> {
    const st = lstatOrNull(abs);
    return st !== null && kindOf(st) === kind;
  }
}
