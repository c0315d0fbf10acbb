/**
 * Changes to the standby tree other than file content: directories, symlinks, metadata, and making
 * room when a path changes kind or an unrelated file stands in the way. Every call goes through
 * the confined layer (../confined/root.ts) with relative paths: nothing is followed, nothing is
 * done by absolute path.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, fsync, futimesSync } from 'node:fs';
import { promisify } from 'node:util';
import type { ConfinedRoot, DirRef, FileStat } from '../confined/root.js';
import { nextTempName } from '../confined/temp.js';
import { parseSpecialNode, utimeValue, type EntryKind } from '../entry.js';
import { ProtocolError, WarmsyncError } from '../errors.js';
import type { TargetIds } from '../owner/policy.js';
import { baseName, parentOf } from '../relpath.js';
import { chmodAt, chownAt, mknodAt } from './special.js';

const fsyncAsync = promisify(fsync);

export type RemovalLog = (path: string, reason: string) => void;

/** What sits on disk, as the manifest names kinds: FIFOs, sockets and devices are 'special'. */
function entryKindOf(st: FileStat): EntryKind {
  return st.kind === 'other' ? 'special' : st.kind;
}

export class TreeWriter {
  /**
   * @param root the standby root
   * @param state the state dir, where `displacedRel` is: a non-empty directory the source replaced
   *   by a file or symlink, and an unrelated file in the way of a first sync, go there (they may
   *   hold files the gate still protects, or someone's data), moved aside, never deleted.
   */
  constructor(
    readonly root: ConfinedRoot,
    private readonly state: ConfinedRoot,
    private readonly displacedRel: string,
    private readonly logRemoval: RemovalLog,
  ) {}

  /**
   * The directory `rel` will be in, created if missing (mode 0755), held open: release it when
   * done. Throws UNSAFE_PATH when a component of it is a symlink or not a directory.
   */
  prepareParent(rel: string): DirRef {
    this.root.check(rel);
    return this.root.needDir(parentOf(rel), 0o755);
  }

  /** The directory `rel` will be in when it exists, held open (release it), or null; never creates. */
  existingParent(rel: string): DirRef | null {
    this.root.check(rel);
    return this.root.dir(parentOf(rel));
  }

  /** The directories above `rel` missing on disk, nearest the root first: what prepareParent creates. */
  missingAncestors(rel: string): string[] {
    const missing: string[] = [];
    for (let dir = parentOf(rel); dir !== ''; dir = parentOf(dir)) {
      const ref = this.root.dir(dir);
      if (ref !== null) {
        ref.release();
        break;
      }
      missing.unshift(dir);
    }
    return missing;
  }

  /**
   * Clears `rel` when something of another kind than `kind` sits there, or, when the manifest
   * does not know the path (`known` false), anything at all but a directory for a directory. What
   * stood there may be a file the gate still protects, or a file someone put on the standby, so it
   * is moved aside into the displaced dir, never deleted nor overwritten (a file or symlink the
   * manifest knows, about to be replaced by a file or symlink, is simply renamed over, as any
   * update). Returns true when a directory tree was moved (the caller drops its manifest rows).
   */
  async makeRoomFor(rel: string, kind: EntryKind, known: boolean): Promise<boolean> {
    const parent = this.root.needDir(parentOf(rel));
    try {
      const name = baseName(rel);
      const st = parent.stat(name);
      if (st === null) return false;
      const existing = entryKindOf(st);
      if (existing === kind && (kind === 'dir' || known)) return false;
      if (known && existing !== 'dir' && kind !== 'dir') return false;
      if (existing === 'dir') {
        const dir = this.root.needDir(rel);
        let empty: boolean;
        try {
          empty = dir.list().length === 0;
        } finally {
          dir.release();
        }
        if (empty) {
          this.root.remove(rel, true);
          this.logRemoval(rel, `replaced: empty directory became ${kind} on the source`);
          return true;
        }
      }
      const aside = `${this.displacedRel}/${Date.now()}-${randomBytes(4).toString('hex')}/${rel}`;
      this.root.move(rel, this.state, aside);
      const why = existing === kind || (existing !== 'dir' && kind !== 'dir')
        ? `an unrelated ${existing} stood at a path the manifest does not know (first sync)`
        : `${existing} became ${kind} on the source`;
      this.logRemoval(rel, `displaced to ${this.state.abs(aside)}: ${why}`);
      return existing === 'dir';
    } finally {
      parent.release();
    }
  }

  // The calls below are synchronous: metadata calls of microseconds, which as promises would
  // queue in libuv's pool behind the group commit's fsyncs (see staging.ts).

  /**
   * Creates the directory if needed and sets its owner (`ids`, when given) and mode; its mtime is
   * set by `setDirTime` once its contents settle.
   */
  async ensureDir(rel: string, mode: number, ids?: TargetIds | null): Promise<void> {
    this.root.mkdir(rel, mode);
    const dir = this.root.needDir(rel);
    try {
      // chown before chmod: chown clears the setgid bit.
      if (ids !== undefined && ids !== null) fchownSync(dir.fd, ids.uid, ids.gid);
      fchmodSync(dir.fd, mode);
    } finally {
      dir.release();
    }
  }

  /**
   * Sets a directory's mtime; nothing when it is gone ('gone') or no longer reachable without a
   * symlink ('unreachable': the caller records that its time may now be wrong).
   */
  async setDirTime(rel: string, mtimeMs: number): Promise<'set' | 'gone' | 'unreachable'> {
    let dir: DirRef | null;
    try {
      dir = this.root.dir(rel);
    } catch (err) {
      if (err instanceof ProtocolError && err.code === 'UNSAFE_PATH') return 'unreachable';
      throw err;
    }
    if (dir === null) return 'gone';
    try {
      const t = utimeValue(mtimeMs);
      futimesSync(dir.fd, t, t);
      return 'set';
    } finally {
      dir.release();
    }
  }

  /** Creates or replaces a symlink atomically: a temporary link renamed over the name, in one held directory. */
  async writeSymlink(rel: string, target: string, mtimeMs: number, ids?: TargetIds | null): Promise<void> {
    await this.placeNew(rel, (parent, temp) => {
      parent.symlink(target, temp);
      if (ids !== undefined && ids !== null) chownAt(parent, temp, ids);
      parent.utimes(temp, mtimeMs, mtimeMs);
    });
  }

  /**
   * A FIFO, socket or device node (`node` as src/entry.ts spells it), created under a temporary
   * name with mknodat, given its owner, mode and mtime, and renamed over the name: never opened.
   */
  async writeSpecial(rel: string, node: string, mode: number, mtimeMs: number, ids?: TargetIds | null): Promise<void> {
    const parsed = parseSpecialNode(node);
    if (parsed === null) throw new WarmsyncError('APPLY_FAILED', `${this.root.abs(rel)}: not a special file node: ${JSON.stringify(node)}`);
    await this.placeNew(rel, (parent, temp) => {
      mknodAt(parent, temp, parsed, 0o600);
      if (ids !== undefined && ids !== null) chownAt(parent, temp, ids);
      chmodAt(parent, temp, mode);
      parent.utimes(temp, mtimeMs, mtimeMs);
    });
  }

  /** Makes a new entry under a temporary name in `rel`'s held directory with `make`, then renames it over `rel`. */
  private async placeNew(rel: string, make: (parent: DirRef, temp: string) => void): Promise<void> {
    const parent = this.root.needDir(parentOf(rel));
    const temp = nextTempName();
    try {
      try {
        make(parent, temp);
        parent.rename(temp, parent, baseName(rel));
      } catch (err) {
        try {
          parent.unlink(temp);
        } catch {
          // never made, or already gone
        }
        throw err;
      }
    } finally {
      parent.release();
    }
  }

  /**
   * Owner, mode and mtime of a regular file whose content is already right, set on its descriptor (opened
   * without following anything) and fsynced. A file with more than one name is a hard link the
   * receiver did not make (it only ever renames new files into place): changing it would change
   * the inode's other names too, possibly outside the root, so it is refused with NEEDS_CONTENT and
   * the agent sends the content again, which renames a new file over this name.
   */
  async setFileMeta(rel: string, mode: number, mtimeMs: number, ids?: TargetIds | null): Promise<void> {
    const fd = this.root.openFile(rel, constants.O_RDONLY);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new WarmsyncError('APPLY_FAILED', `${this.root.abs(rel)} is not a regular file on the standby`);
      if (st.nlink > 1) throw hardLink(rel, st.nlink);
      if (ids !== undefined && ids !== null) fchownSync(fd, ids.uid, ids.gid);
      fchmodSync(fd, mode);
      const t = utimeValue(mtimeMs);
      futimesSync(fd, t, t);
      await fsyncAsync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** What is at `rel` (lstat), null when nothing is or it cannot be reached without a symlink. */
  probe(rel: string): FileStat | null {
    return this.root.probe(rel);
  }

  /** Is the file at `rel` present with this size? (a cheap check before trusting a setMeta). */
  async hasFile(rel: string, size: number): Promise<boolean> {
    const st = this.root.probe(rel);
    return st !== null && st.kind === 'file' && st.size === size;
  }

  async hasKind(rel: string, kind: EntryKind): Promise<boolean> {
    const st = this.root.probe(rel);
    return st !== null && entryKindOf(st) === kind;
  }

  /** fsyncs each directory once: makes renames and creations inside it durable. */
  async fsyncDirs(rels: Iterable<string>): Promise<void> {
    await this.root.fsyncDirs(rels);
  }
}

export function hardLink(rel: string, nlink: number): WarmsyncError {
  return new WarmsyncError('NEEDS_CONTENT', `${rel}: the standby file has ${nlink} names (a hard link the receiver did not make); its metadata is not changed through it, send its content`);
}
