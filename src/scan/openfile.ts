/**
 * The one way the agent opens a source file to read its content (scan hashing, the live agent's
 * describe through it, the sender): invariant 3, "the agent reads only regular files inside its
 * source, re-checked on the open descriptor".
 *
 * The path is opened O_RDONLY | O_NOFOLLOW | O_NONBLOCK, beneath the source root's descriptor when
 * the caller holds one (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, ../confined/root.ts): a file,
 * or a directory above it, swapped for a symlink since it was listed fails with ELOOP instead of
 * being followed out of the tree, and a file swapped for a FIFO
 * opens at once instead of blocking the thread (for a synchronous open, the whole event loop) until
 * a writer comes. The descriptor is then fstat'ed, and only a regular file whose identity matches
 * what the caller planned (device and inode, size and mtime: whichever it knows) is handed back.
 * Anything else (a symlink, a FIFO, a socket, a device, another file renamed over the path) is
 * WarmsyncError FILE_CHANGED, the code every reader already treats as "look at it again": the scan
 * retries it, the sender reports it as the op's failure and the agent plans it again.
 *
 * Synchronous on purpose: open and fstat take microseconds, and the small-file fast paths (files
 * under SYNC_READ_MAX_BYTES are read with sync calls, see hash.ts) need the descriptor with no
 * await in between. O_NONBLOCK is what makes that safe against a FIFO; on a regular file it changes
 * nothing.
 */
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openBeneath } from '../confined/root.js';
import { wholeMs } from '../entry.js';
import { WarmsyncError } from '../errors.js';
import { fstatFile, isRegularFile, type FileStat } from './filestat.js';

/** open(2) flags for reading a source file: never follow a symlink, never block on a FIFO. */
export const NO_FOLLOW_READ = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/** How long the source root's descriptor stays open unused (see SourceRoot). */
const ROOT_IDLE_MS = 500;

/** SOURCE_MISSING or SOURCE_NOT_DIR unless `root` is a directory: checked before anything is sent or dialled. */
export async function checkSourceRoot(root: string): Promise<void> {
  const rootStat = await stat(root).catch(() => null);
  if (rootStat === null) throw new WarmsyncError('SOURCE_MISSING', `source root ${root} does not exist (is its disk mounted?); nothing was sent`);
  if (!rootStat.isDirectory()) throw new WarmsyncError('SOURCE_NOT_DIR', `source root ${root} is not a directory`);
}

/**
 * The agent's source root, held open while files are read: a file below it is opened beneath this
 * descriptor, so a directory above the file swapped for a symlink (to /etc, say) is refused like
 * the file itself, not followed out of the source. The descriptor is opened on first use and closed
 * once unused for ROOT_IDLE_MS: an idle agent never keeps its source from being unmounted (`umount`
 * would say "target is busy"), and a source replaced meanwhile is opened afresh by its path.
 */
export class SourceRoot {
  private fd = -1;
  private lastUse = 0;
  private idleCheck: NodeJS.Timeout | null = null;

  /** What `abs` puts before a relative path: path.join's result for one, without its normalizing each time. */
  readonly prefix: string;

  constructor(readonly path: string) {
    this.prefix = join(path, 'x').slice(0, -1);
  }

  /** The path of a canonical relative path below the root, as path.join gives it. */
  abs(rel: string): string {
    return this.prefix + rel;
  }

  /** The root's descriptor, opened if needed (by its path, which may itself be a symlink: the operator's setting). */
  descriptor(): number {
    this.lastUse = Date.now();
    if (this.fd >= 0) return this.fd;
    this.fd = openSync(this.path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    this.idleCheck = setInterval(() => {
      if (Date.now() - this.lastUse >= ROOT_IDLE_MS) this.close();
    }, ROOT_IDLE_MS);
    this.idleCheck.unref();
    return this.fd;
  }

  close(): void {
    if (this.idleCheck !== null) clearInterval(this.idleCheck);
    this.idleCheck = null;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** What the caller planned to read; every field given must match the open file. */
export interface PlannedFile {
  size?: number;
  /** Integer milliseconds (wholeMs). */
  mtimeMs?: number;
  ino?: number;
  dev?: number;
}

/** An open regular file and its fstat, taken on the descriptor after the open. */
export interface OpenedFile {
  /** Close it with closeSync (or fs.close): the caller owns it. */
  readonly fd: number;
  readonly stats: FileStat;
  readonly size: number;
  /** Integer milliseconds (wholeMs). */
  readonly mtimeMs: number;
  readonly ino: number;
  readonly dev: number;
  /** Permission bits only (mode & 0o7777). */
  readonly mode: number;
}

/**
 * open(2) errors that mean "not a regular file any more": ELOOP for a symlink (O_NOFOLLOW), ENXIO for
 * a socket (or a FIFO with no reader, opened for writing: not us), ENODEV for a device without a
 * driver.
 */
const NOT_A_FILE_CODES = new Set(['ELOOP', 'ENXIO', 'ENODEV', 'EXDEV']);

/**
 * Opens `absPath` for reading if, on the descriptor, it is a regular file matching `planned`. Throws
 * WarmsyncError FILE_CHANGED otherwise (the descriptor closed); other open errors (ENOENT, EACCES,
 * ENAMETOOLONG, ...) are thrown as they are.
 */
export function openPlannedFile(absPath: string, planned?: PlannedFile, source?: SourceRoot): OpenedFile {
  let fd: number;
  try {
    const rel = source !== undefined && absPath.startsWith(source.prefix) ? absPath.slice(source.prefix.length) : null;
    fd = rel === null ? openSync(absPath, NO_FOLLOW_READ) : openBeneath((source as SourceRoot).descriptor(), rel, NO_FOLLOW_READ);
  } catch (err) {
    const code = errorCode(err);
    if (code !== undefined && NOT_A_FILE_CODES.has(code)) {
      const why = code === 'ELOOP' ? 'it, or a directory above it, is now a symlink' : code === 'EXDEV' ? 'its path now leads out of the source' : `it is no longer a regular file (${code})`;
      throw fileChanged(absPath, why, err);
    }
    throw err;
  }
  try {
    const stats = fstatFile(fd);
    if (!isRegularFile(stats)) throw fileChanged(absPath, 'it is no longer a regular file');
    const opened: OpenedFile = {
      fd, stats, size: stats.size, mtimeMs: wholeMs(stats.mtimeMs), ino: stats.ino, dev: stats.dev, mode: stats.mode & 0o7777,
    };
    const mismatch = identityMismatch(opened, planned);
    if (mismatch !== null) throw fileChanged(absPath, `it differs from what was planned: ${mismatch}`);
    return opened;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** Which planned field the open file does not match, or null. */
function identityMismatch(f: OpenedFile, planned: PlannedFile | undefined): string | null {
  if (planned === undefined) return null;
  if (planned.dev !== undefined && planned.dev !== f.dev) return 'another device';
  if (planned.ino !== undefined && planned.ino !== f.ino) return 'another inode';
  if (planned.size !== undefined && planned.size !== f.size) return `size ${f.size}, planned ${planned.size}`;
  if (planned.mtimeMs !== undefined && planned.mtimeMs !== f.mtimeMs) return `mtime ${f.mtimeMs}, planned ${planned.mtimeMs}`;
  return null;
}

/** FILE_CHANGED for `absPath`: it is not (or no longer) the file the caller meant to read. */
export function fileChanged(absPath: string, detail?: string, cause?: unknown): WarmsyncError {
  const message = `${absPath} changed while it was read${detail === undefined ? '' : ` (${detail})`}`;
  return new WarmsyncError('FILE_CHANGED', message, cause === undefined ? undefined : { cause });
}

function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
