/** Facts about the machine and the code a benchmark ran on, for its report. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function tmpFilesystem(path: string): string {
  try {
    let best = { mount: '', type: '?', dev: '?' };
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [dev, mount, type] = line.split(' ');
      if (dev === undefined || mount === undefined || type === undefined) continue;
      if ((path === mount || path.startsWith(mount.endsWith('/') ? mount : mount + '/')) && mount.length > best.mount.length) best = { mount, type, dev };
    }
    return `${path} on ${best.mount} (${best.type}, ${best.dev})`;
  } catch {
    return path;
  }
}

export function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head} + uncommitted changes in src/` : head;
  } catch {
    return 'unknown';
  }
}
