/**
 * What the agent compares of a source file's stat, read by the addon into one shared array
 * (native/filestat.c) and returned as a small object of numbers: no Stats with four Dates, no
 * BigIntStats with eighteen BigInts, which two per small file sent made the largest single share
 * of a live agent's garbage. Times keep their nanoseconds (seconds and nanoseconds, both exact).
 */
import { constants, type BigIntStats } from 'node:fs';
import { loadNative } from '../native.js';

interface FileStatAddon {
  fstatInto(fd: number, out: Float64Array): void;
  lstatInto(path: string, out: Float64Array): void;
}

export interface FileStat {
  /** File type and permission bits (st_mode). */
  readonly mode: number;
  readonly size: number;
  readonly ino: number;
  readonly dev: number;
  /**
   * As Node's Stats.mtimeMs: seconds * 1e3 + nanoseconds / 1e6, the same doubles in the same order.
   * An exact floor would disagree with every plain stat of a file whose time lies within ~120 ns
   * below a millisecond (…123.99995 reads as …124), and that file would look changed at each check.
   */
  readonly mtimeMs: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly ctimeSec: number;
  readonly ctimeNsec: number;
}

const out = new Float64Array(8);
let addon: FileStatAddon | null = null;

function native(): FileStatAddon {
  addon ??= loadNative<FileStatAddon>();
  return addon;
}

function field(i: number): number {
  return out[i] ?? Number.NaN;
}

function taken(): FileStat {
  const mtimeSec = field(4);
  const mtimeNsec = field(5);
  return {
    mode: field(0), size: field(1), ino: field(2), dev: field(3),
    mtimeMs: mtimeSec * 1e3 + mtimeNsec / 1e6, mtimeSec, mtimeNsec, ctimeSec: field(6), ctimeNsec: field(7),
  };
}

/** fstat(2) of an open descriptor; throws Node-like errors (code: the errno name). */
export function fstatFile(fd: number): FileStat {
  native().fstatInto(fd, out);
  return taken();
}

/** lstat(2) of a path (a symlink is reported as itself); throws Node-like errors. */
export function lstatFile(path: string): FileStat {
  native().lstatInto(path, out);
  return taken();
}

export function isRegularFile(st: FileStat): boolean {
  return (st.mode & constants.S_IFMT) === constants.S_IFREG;
}

/** Same inode, same size, same mtime and ctime to the nanosecond: the file was not changed or replaced between the two. */
export function sameFile(a: FileStat, b: FileStat): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size
    && a.mtimeSec === b.mtimeSec && a.mtimeNsec === b.mtimeNsec && a.ctimeSec === b.ctimeSec && a.ctimeNsec === b.ctimeNsec;
}

/** A BigIntStats (Node's, as an lstat on the pool gives it) as a FileStat. */
export function fileStatOfBigInt(st: BigIntStats): FileStat {
  // As the kernel's timespec: nanoseconds in [0, 1e9), so seconds round down before 1970.
  const split = (ns: bigint): [number, number] => {
    const nsec = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
    return [Number((ns - nsec) / 1_000_000_000n), Number(nsec)];
  };
  const [mtimeSec, mtimeNsec] = split(st.mtimeNs);
  const [ctimeSec, ctimeNsec] = split(st.ctimeNs);
  return {
    mode: Number(st.mode), size: Number(st.size), ino: Number(st.ino), dev: Number(st.dev),
    mtimeMs: mtimeSec * 1e3 + mtimeNsec / 1e6, mtimeSec, mtimeNsec, ctimeSec, ctimeNsec,
  };
}
