/**
 * warmsync's own N-API addon (native/, built by node-gyp from binding.gyp when `npm install` or
 * `npm ci` runs): the Linux calls Node's fs does not offer. Each caller wraps its part with types
 * (watch/inotify.ts: inotify; confined/: the *at() primitives; receiver/mknod.ts: mknod; this file:
 * syncfs and sdNotify). Loaded on first use, so commands that need none of it run without it built.
 */
import { createRequire } from 'node:module';
import { WarmsyncError } from './errors.js';

/** src/ (tests, through tsx) and dist/ (the CLI) are both one level below the package root. */
const CANDIDATES = ['../build/Release/warmsync_native.node', '../build/Debug/warmsync_native.node'];
let addon: unknown = null;

/** The addon's exports, typed by the caller; throws NATIVE_MISSING when it is not built. */
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

/**
 * syncfs(2) on the file system holding `fd`, on libuv's thread pool: everything written to it
 * before the call is durable when the promise resolves. Rejects with an Error whose `code` is the
 * errno name (EIO when writeback failed).
 */
export function syncfs(fd: number): Promise<void> {
  return loadNative<{ syncfs(fd: number): Promise<void> }>().syncfs(fd);
}

/**
 * One datagram `message` to the AF_UNIX socket `path` (systemd's $NOTIFY_SOCKET: an absolute path,
 * or `@name` for an abstract socket), without blocking. Throws an Error whose `code` is the errno
 * name (ENOENT: no such socket; EINVAL: neither absolute nor abstract; ENAMETOOLONG).
 */
export function sdNotify(path: string, message: string): void {
  loadNative<{ sdNotify(path: string, message: string): void }>().sdNotify(path, message);
}
