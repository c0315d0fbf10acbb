/**
 * Files read at start-up on the operator's behalf (--token-file, --config, --exclude-from, TLS
 * PEMs): opened with O_NONBLOCK, so a FIFO or a device answers at once instead of hanging the start,
 * checked with fstat on that descriptor (a regular file, at most `maxBytes`), and then read through
 * the same descriptor, never past `maxBytes` even if the file grows meanwhile (issue 17, item 11: a
 * FIFO as --token-file hung start-up; a 29 MB config took 2.1 GB before it was refused).
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

/** Why a file was refused, worded to follow "cannot read FILE: ". */
export class InputFileProblem extends Error {
  constructor(readonly reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'InputFileProblem';
  }
}

function kind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/** "1 MiB", "64 KiB", or bytes. */
export function formatLimit(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** The whole of FILE, a regular file of at most `maxBytes`; anything else throws InputFileProblem. */
export function readInputFile(file: string, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw new InputFileProblem((err as NodeJS.ErrnoException).code ?? String(err), { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new InputFileProblem(`it is ${kind(st)}, not a regular file`);
    const tooBig = (): InputFileProblem => new InputFileProblem(`it is larger than ${formatLimit(maxBytes)}, the limit for this file`);
    if (st.size > maxBytes) throw tooBig();
    // One byte more than the limit: a file that grew since fstat is caught without reading it whole.
    const buf = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buf, length, buf.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > maxBytes) throw tooBig();
    }
    return buf.subarray(0, length);
  } catch (err) {
    if (err instanceof InputFileProblem) throw err;
    throw new InputFileProblem((err as NodeJS.ErrnoException).code ?? String(err), { cause: err });
  } finally {
    closeSync(fd);
  }
}
