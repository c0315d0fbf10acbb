/**
 * Loads warmsync's own N-API addon (native/*.c, built by node-gyp from binding.gyp when `npm
 * install`/`npm ci` runs): the inotify binding (watch/inotify.ts) and the confined file primitives
 * (confined/). Loaded on first use, so commands that need neither do not need it built.
 */
import { createRequire } from 'node:module';
import { WarmsyncError } from './errors.js';

/** src/ (tests, through tsx) and dist/ (the CLI) are both one level below the package root. */
const CANDIDATES = ['../build/Release/warmsync_native.node', '../build/Debug/warmsync_native.node'];
let addon: unknown = null;

/** The addon's exports; each user describes the part it uses with its own interface. */
export function loadNative<T>(): T {
  if (addon !== null) return addon as T;
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const candidate of CANDIDATES) {
    try {
      addon = require(candidate) as unknown;
      return addon as T;
    } catch (err) {
      failures.push(`${candidate}: ${(err as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  throw new WarmsyncError('NATIVE_MISSING', `warmsync's native addon is not built (run \`npm ci\` or \`npx node-gyp rebuild\` in the package directory): ${failures.join('; ')}`);
}
