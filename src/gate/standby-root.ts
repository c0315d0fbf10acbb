/**
 * Is the standby root still what the receiver writes to, with its file systems mounted? A receiver
 * holds its root open, so a root deleted, moved away, or hidden by a lazy unmount under a running
 * receiver goes unnoticed by it: its writes fail or land where no failover will look, while the
 * agent's watermark, which speaks for what was sent, goes on advancing. And a file system mounted
 * below the root (a filestore on a volume of its own) that is not mounted, at a boot say, leaves a
 * manifest vouching for files that are not there: the agent plans against the manifest and sends
 * nothing for them. Invariant 4 is about the files a failover will find at the root's path, so
 * every SAFE verdict asks this first. The receiver records the root's identity (device and inode)
 * and the file systems mounted at and below it when it starts; `status`, `promote` and `failover`
 * compare the path against that record, and the receiver itself does for /healthz, /metrics and
 * systemd.
 */
import { readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { describeError } from '../errors.js';
import type { VerifyDamage } from '../manifest/manifest.js';
import type { StandbyLack } from './policy.js';

/** What the receiver recorded of its root: its device and inode, and the file systems mounted at or below it. */
export interface RecordedRoot {
  readonly identity: string | null;
  /** Relative paths ('' for the root itself) where a file system of its own was mounted. */
  readonly mounts: readonly string[];
}

/** The state keys the record lives under, read through `getString`. */
export function recordedRoot(state: { getString(key: 'rootIdentity' | 'rootMounts'): string | null }): RecordedRoot {
  const mounts = state.getString('rootMounts');
  return { identity: state.getString('rootIdentity'), mounts: mounts === null ? [] : (JSON.parse(mounts) as string[]) };
}

/**
 * What the standby lacks that W vouches for (the root first, then what `verify` found), or null.
 * The root is checked only while a receiver runs on it (`receiverRunning`): its record is of the
 * directory that receiver writes to. A stopped standby copied or moved whole (`cp -a` of the root
 * with its manifest, as a failover drill does) is another directory holding the same files.
 */
export function standbyLack(
  root: string, manifest: { getString(key: 'rootIdentity' | 'rootMounts'): string | null; verifyDamage(): VerifyDamage | null }, receiverRunning: boolean,
): StandbyLack | null {
  const detail = receiverRunning ? lostStandbyRoot(root, recordedRoot(manifest)) : null;
  if (detail !== null) return { kind: 'root', detail };
  const damage = manifest.verifyDamage();
  return damage === null ? null : { kind: 'verify', ...damage };
}

/** The identity recorded for a root: its device and inode. */
export function rootIdentity(st: Pick<Stats, 'dev' | 'ino'>): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * The places at or below `root` where a file system of its own is mounted, as relative paths, ''
 * for the root itself: the mount points /proc/self/mountinfo lists there whose device differs from
 * their parent's (a bind mount of a directory of the same file system is no disk that can go missing).
 */
export function mountedBelow(root: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string[] {
  const real = realpathSync(root);
  const found = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = unescapeMountPath(field);
    let rel: string;
    if (point === real) rel = '';
    else if (point.startsWith(real === '/' ? '/' : `${real}/`)) rel = point.slice(real === '/' ? 1 : real.length + 1);
    else continue;
    try {
      if (isFileSystemBoundary(join(root, rel))) found.add(rel);
    } catch {
      // Hidden by another mount, or not ours to read: nothing the receiver writes to.
    }
  }
  return [...found].sort();
}

/**
 * Null while `root` is a directory with the recorded identity (any directory, when none was
 * recorded: a manifest from before identities were) and each recorded mount is still a file
 * system of its own; else what became of the first that is not, worded to follow "the standby root".
 */
export function lostStandbyRoot(root: string, recorded: RecordedRoot): string | null {
  let st: Stats;
  try {
    st = statSync(root);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${root} is missing` : `${root} cannot be read (${describeError(err)})`;
  }
  if (!st.isDirectory()) return `${root} is not a directory`;
  if (recorded.identity !== null && rootIdentity(st) !== recorded.identity) {
    return `${root} is not the directory the receiver started on (replaced, moved, or a file system unmounted from it)`;
  }
  for (const rel of recorded.mounts) {
    const at = join(root, rel);
    let mounted: boolean;
    try {
      mounted = isFileSystemBoundary(at);
    } catch (err) {
      return `${root}: ${at}, where a file system was mounted, cannot be read (${describeError(err)})`;
    }
    if (!mounted) return `${root}: the file system mounted at ${at} when the receiver started is not mounted there now`;
  }
  return null;
}

/** Is `path` the top of a file system (its device is not its parent's, or it is `/`)? */
function isFileSystemBoundary(path: string): boolean {
  const st = statSync(path);
  const parent = statSync(dirname(path));
  return st.dev !== parent.dev || st.ino === parent.ino;
}

/** A mount point as mountinfo writes it: space, tab, newline and backslash as octal escapes. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
