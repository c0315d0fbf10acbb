/**
 * A source directory listed and lstat'ed in one call of the addon (native/scandir.c), through
 * descriptors: the walk opens each directory beneath its parent's descriptor without following a
 * symlink, so a directory swapped for a symlink while the walk runs is never listed, and nothing
 * above it is resolved again for each entry. Node's readdir + lstat per path cost a Dirent and a
 * Stats object per entry and a full path lookup each: a third of a 20,000-file no-op's CPU.
 */
import { constants } from 'node:fs';
import { constants as os } from 'node:os';
import { openBeneath } from '../confined/root.js';
import { loadNative } from '../native.js';
import { compareTreeOrder } from '../relpath.js';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;
/** Numbers per entry in listStatFd's `stats` (native/scandir.c). */
const STAT_FIELDS = 10;

/** One entry of a directory: its lstat fields, or `error`, the errno name its lstat failed with. */
export interface ListedEntry {
  readonly name: string;
  readonly error: string | null;
  readonly mode: number;
  readonly size: number;
  /** As Node's Stats computes mtimeMs (sec * 1e3 + nsec / 1e6), so both agree to the bit. */
  readonly mtimeMs: number;
  readonly ino: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
}

interface ScandirAddon {
  listStatFd(dirfd: number): { names: Buffer; stats: Float64Array };
  readlinkAt(dirfd: number, name: string | Buffer): Buffer;
}

let addon: ScandirAddon | null = null;
function native(): ScandirAddon {
  addon ??= loadNative<ScandirAddon>();
  return addon;
}

const errnoNames = new Map(Object.entries(os.errno).map(([name, n]) => [n, name]));

/** The entries of the directory open at `fd`, sorted by name in tree order (relpath.ts compareTreeOrder: code points). */
export function listDirectory(fd: number): ListedEntry[] {
  const { names, stats } = native().listStatFd(fd);
  const entries: ListedEntry[] = [];
  let start = 0;
  for (let i = 0; start < names.length; i++) {
    const end = names.indexOf(0, start);
    const f = i * STAT_FIELDS;
    const errno = stats[f] as number;
    entries.push({
      name: names.toString('utf8', start, end),
      error: errno === 0 ? null : (errnoNames.get(errno) ?? `errno ${errno}`),
      mode: stats[f + 1] as number,
      size: stats[f + 2] as number,
      mtimeMs: (stats[f + 3] as number) * 1e3 + (stats[f + 4] as number) / 1e6,
      ino: stats[f + 5] as number,
      uid: stats[f + 6] as number,
      gid: stats[f + 7] as number,
      rdevMajor: stats[f + 8] as number,
      rdevMinor: stats[f + 9] as number,
    });
    start = end + 1;
  }
  return entries.sort((x, y) => compareTreeOrder(x.name, y.name));
}

/** Opens the directory `name` in the directory open at `dirfd`; a symlink there fails (ELOOP), never followed. */
export function openDirectoryAt(dirfd: number, name: string): number {
  return openBeneath(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/** readlinkat: the target of the symlink `name` in the directory open at `dirfd`, as bytes. */
export function readLinkAt(dirfd: number, name: string): Buffer {
  return native().readlinkAt(dirfd, name);
}
