/**
 * mknod(2) for the receiver, from warmsync's own addon (native/special.c): Node has none. FIFOs and
 * sockets need no privilege; device nodes need CAP_MKNOD (root), as with rsync -a. The addon is
 * loaded on first use, so a tree without special files never needs it built.
 */
import { createRequire } from 'node:module';
import type { SpecialNode } from '../entry.js';
import { WarmsyncError } from '../errors.js';

interface SpecialAddon {
  mknod(path: string, type: SpecialNode['type'], mode: number, major: number, minor: number): void;
}

/** src/receiver/ (tests, through tsx) and dist/receiver/ (the CLI) are both two levels below the package root. */
const CANDIDATES = ['../../build/Release/warmsync_native.node', '../../build/Debug/warmsync_native.node'];
let addon: SpecialAddon | null = null;

function load(): SpecialAddon {
  if (addon !== null) return addon;
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const candidate of CANDIDATES) {
    try {
      const loaded = require(candidate) as Partial<SpecialAddon>;
      if (typeof loaded.mknod !== 'function') throw new Error('built without native/special.c (rebuild it)');
      addon = loaded as SpecialAddon;
      return addon;
    } catch (err) {
      failures.push(`${candidate}: ${(err as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  throw new WarmsyncError('NATIVE_MISSING', `warmsync's native addon is not built (run \`npm ci\` or \`npx node-gyp rebuild\` in the package directory): ${failures.join('; ')}`);
}

/** Creates the node at `abs` (which must not exist) with permission bits `mode` (less the umask). Throws as fs calls do (EPERM, EEXIST). */
export function mknod(abs: string, node: SpecialNode, mode: number): void {
  const [major, minor] = 'major' in node ? [node.major, node.minor] : [0, 0];
  load().mknod(abs, node.type, mode, major, minor);
}
