/**
 * The receiver's calls for special files and owners that Node's fs lacks on a directory descriptor
 * (native/special.c): mknodat (FIFOs and sockets need no privilege; device nodes need CAP_MKNOD,
 * as with rsync -a), and chown and chmod of a name without following a symlink. Each takes a
 * directory the confined layer holds open and one name in it.
 */
import type { DirRef } from '../confined/root.js';
import type { SpecialNode } from '../entry.js';
import { loadNative } from '../native.js';
import type { TargetIds } from '../owner/policy.js';

interface SpecialAddon {
  mknodat(dirfd: number, name: string, type: SpecialNode['type'], mode: number, major: number, minor: number): void;
  chownAt(dirfd: number, name: string, uid: number, gid: number): void;
  chmodAt(dirfd: number, name: string, mode: number): void;
}

/** Creates the node `name` (which must not exist) in `dir` with permission bits `mode` (less the umask). Throws as fs calls do (EPERM, EEXIST). */
export function mknodAt(dir: DirRef, name: string, node: SpecialNode, mode: number): void {
  const [major, minor] = 'major' in node ? [node.major, node.minor] : [0, 0];
  loadNative<SpecialAddon>().mknodat(dir.fd, name, node.type, mode, major, minor);
}

/** Gives `name` in `dir` (a symlink itself, never what it points to) the owner and group `ids`. */
export function chownAt(dir: DirRef, name: string, ids: TargetIds): void {
  loadNative<SpecialAddon>().chownAt(dir.fd, name, ids.uid, ids.gid);
}

/** Sets the permission bits of `name` in `dir`, refusing (ELOOP) rather than following a symlink. */
export function chmodAt(dir: DirRef, name: string, mode: number): void {
  loadNative<SpecialAddon>().chmodAt(dir.fd, name, mode);
}
