/**
 * Is the standby root still the directory the receiver writes to? A receiver holds its root open,
 * so a root deleted, moved away, or hidden by a lazy unmount under a running receiver goes
 * unnoticed by it: its writes fail or land where no failover will look, while the agent's
 * watermark, which speaks for what was sent, goes on advancing. Invariant 4 is about the files a
 * failover will find at the root's path, so every SAFE verdict asks this first. The receiver
 * records the root's identity (device and inode) when it starts; `status` and `promote` compare
 * the path against it, and the receiver itself does for /healthz, /metrics and systemd.
 */
import { statSync, type Stats } from 'node:fs';
import { describeError } from '../errors.js';

/** The identity recorded for a root: its device and inode. */
export function rootIdentity(st: Pick<Stats, 'dev' | 'ino'>): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * Null while `root` is a directory with the identity `recorded` (or any directory, when nothing was
 * recorded: a manifest from before identities were); else what became of it, worded to follow
 * "the standby root".
 */
export function lostStandbyRoot(root: string, recorded: string | null): string | null {
  let st: Stats;
  try {
    st = statSync(root);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${root} is missing` : `${root} cannot be read (${describeError(err)})`;
  }
  if (!st.isDirectory()) return `${root} is not a directory`;
  if (recorded !== null && rootIdentity(st) !== recorded) {
    return `${root} is not the directory the receiver started on (replaced, moved, or a file system unmounted from it)`;
  }
  return null;
}
