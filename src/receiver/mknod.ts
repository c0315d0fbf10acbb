/**
 * mknod(2) for the receiver, from warmsync's own addon (native/special.c): Node has none. FIFOs and
 * sockets need no privilege; device nodes need CAP_MKNOD (root), as with rsync -a.
 */
import type { SpecialNode } from '../entry.js';
import { loadNative } from '../native.js';

interface SpecialAddon {
  mknod(path: string, type: SpecialNode['type'], mode: number, major: number, minor: number): void;
}

/** Creates the node at `abs` (which must not exist) with permission bits `mode` (less the umask). Throws as fs calls do (EPERM, EEXIST). */
export function mknod(abs: string, node: SpecialNode, mode: number): void {
  const [major, minor] = 'major' in node ? [node.major, node.minor] : [0, 0];
  loadNative<SpecialAddon>().mknod(abs, node.type, mode, major, minor);
}
