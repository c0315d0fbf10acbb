/**
 * Reading a whole tree for comparison: every path with its kind, mode, mtime (ms), size, content
 * hash and link target. Two trees are identical when their listings are deep-equal.
 * File content is hashed as a stream, so a 100 MiB file never sits in memory.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

export interface TreeItem { kind: 'file' | 'dir' | 'symlink'; mode: number; mtimeMs: number; size: number; sha256: string | null; target: string | null }

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

export async function readTree(root: string, options: { skip?: (rel: string) => boolean; dirTimes?: boolean } = {}): Promise<Record<string, TreeItem>> {
  const out: Record<string, TreeItem> = {};
  async function visit(dir: string, prefix: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      if (options.skip?.(rel)) continue;
      const abs = join(dir, name);
      const st = await lstat(abs);
      const kind = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
      out[rel] = {
        kind,
        mode: kind === 'symlink' ? 0 : st.mode & 0o7777,
        mtimeMs: kind === 'dir' && options.dirTimes === false ? 0 : Math.trunc(st.mtimeMs),
        size: kind === 'dir' ? 0 : st.size,
        sha256: kind === 'file' ? await sha256(abs) : null,
        target: kind === 'symlink' ? await readlink(abs) : null,
      };
      if (kind === 'dir') await visit(abs, rel);
    }
  }
  await visit(root, '');
  return out;
}

/**
 * A readable account of how `actual` differs from `expected` (one line per path, at most `max`
 * lines), or '' when they are identical.
 */
export function describeTreeDiff(expected: Record<string, TreeItem>, actual: Record<string, TreeItem>, max = 30): string {
  const lines: string[] = [];
  for (const path of [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort()) {
    const e = expected[path];
    const a = actual[path];
    if (e === undefined) lines.push(`+ ${path}: only on the standby (${a?.kind})`);
    else if (a === undefined) lines.push(`- ${path}: missing on the standby (${e.kind})`);
    else {
      const fields = (Object.keys(e) as Array<keyof TreeItem>).filter((k) => e[k] !== a[k]);
      if (fields.length > 0) lines.push(`~ ${path}: ${fields.map((k) => `${k} ${String(e[k])} != ${String(a[k])}`).join(', ')}`);
    }
  }
  const shown = lines.slice(0, max);
  if (lines.length > max) shown.push(`... and ${lines.length - max} more`);
  return shown.join('\n');
}
