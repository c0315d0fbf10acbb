/**
 * Content hashing: xxh64 (seed 0) as 16 lowercase hex digits, the `hash` of an Entry.
 *
 * `hashFile` never returns the hash of a torn file (Syncthing's "file changed during hashing"): it
 * fstats the open file before reading, reads it to EOF through one reused buffer, then lstats the
 * *path* and throws FILE_CHANGED when the path now names another inode, or when size, mtime or
 * ctime moved, or when the bytes read differ from the size. ctime is compared too because a writer
 * can restore the mtime (utimes) but cannot restore the ctime. A write that lands in the same
 * kernel clock tick and keeps the size is invisible to any stat-based check; the scanner's
 * racy-file rule (scanner.ts) keeps such a hash out of the cache so the next scan re-reads it.
 *
 * The file is opened through openPlannedFile (openfile.ts), as every agent read is: O_NOFOLLOW |
 * O_NONBLOCK, then checked on the descriptor, so a path swapped for a symlink after the walk is never
 * followed out of the tree, and one swapped for a FIFO cannot hang the scan.
 *
 * A file under SYNC_READ_MAX_BYTES is read with synchronous calls (open, fstat, read, lstat, close),
 * like the receiver's per-file calls (staging.ts): each takes microseconds for such a file, while a
 * round trip through libuv's thread pool (a thread wake-up and an event-loop turn) costs more than
 * the work, and the median file is ~20 KiB. A larger file is read through the pool, so the event
 * loop is never held for long; its open and fstat stay synchronous (they are as cheap as for a
 * small file, and the size is only known after the fstat).
 */
import { closeSync, read, readSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { promisify } from 'node:util';
import xxhash from 'xxhash-wasm';
import { WarmsyncError } from '../errors.js';
import { fileStatOfBigInt, lstatFile, sameFile } from './filestat.js';
import { fileChanged as changed, openPlannedFile, type SourceRoot } from './openfile.js';

/** What `hashFile` read: the hash and the metadata of exactly the bytes that were hashed. */
export interface HashResult {
  /** xxh64 (seed 0) of the content, 16 lowercase hex digits, zero-padded. */
  hash: string;
  size: number;
  /** Integer milliseconds (wholeMs). */
  mtimeMs: number;
  ino: number;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  /** True when the file was read for another caller, not for this one (sharingHashes). */
  shared?: boolean;
}

/** What the caller saw when it listed the file; any difference means the file changed since. */
export interface HashExpectation {
  size: number;
  /** Integer milliseconds (wholeMs). */
  mtimeMs: number;
  ino?: number;
  dev?: number;
}

/** Incremental xxh64, for data that arrives in pieces (the receiver verifying streamed chunks). */
export interface StreamHasher {
  update(data: Uint8Array): void;
  /** The hash of everything passed to `update` so far, 16 lowercase hex digits. */
  digest(): string;
}

export interface FileHasher {
  /**
   * Hashes a regular file without following symlinks. Throws WarmsyncError FILE_CHANGED when the
   * file is not (or no longer) the regular file described by `expect`, or changed while it was read;
   * fs errors from open/read (ENOENT, EACCES, ...) and from the final lstat are thrown as they are.
   */
  hashFile(absPath: string, expect?: HashExpectation): Promise<HashResult>;
  /** Seedless xxh64 of a buffer in memory (the `xxh64Hex` convenience). */
  hashBytes(data: Uint8Array): string;
  createStreamHasher(): StreamHasher;
}

export interface HasherOptions {
  /**
   * Read buffer size in bytes; one buffer per concurrent `hashFile` call, reused across calls.
   * @default 1 MiB
   */
  bufferSize?: number;
  /**
   * Test seam: awaited after each chunk is read (bytes read so far), before the next read. Lets a
   * test modify the file in the middle of hashing deterministically. Leave unset in production.
   */
  afterChunk?: (absPath: string, bytesSoFar: number) => void | Promise<void>;
  /** The agent's source root, held open: files below it are opened beneath it (openfile.ts). */
  source?: SourceRoot;
}

export const DEFAULT_HASH_BUFFER = 1024 * 1024;
/**
 * Files smaller than this are read synchronously when they fit the read buffer in one read
 * (see the top of this file). Reading 1 MiB from the page cache takes ~0.1 ms here.
 */
export const SYNC_READ_MAX_BYTES = 1024 * 1024;
const readAsync = promisify(read);
/** Free buffers kept for reuse; more concurrent calls than this just allocate. */
const MAX_POOLED_BUFFERS = 32;

type XXHashAPI = Awaited<ReturnType<typeof xxhash>>;

let wasmPromise: Promise<XXHashAPI> | undefined;

/** Loads the wasm module once per process; a failed load is retried on the next call. */
function loadWasm(): Promise<XXHashAPI> {
  if (wasmPromise === undefined) {
    wasmPromise = xxhash().catch((err: unknown) => {
      wasmPromise = undefined;
      throw new WarmsyncError('HASH_UNAVAILABLE', 'cannot load the xxhash-wasm module', { cause: err });
    });
  }
  return wasmPromise;
}

function hex64(value: bigint): string {
  return value.toString(16).padStart(16, '0');
}

export async function createHasher(options: HasherOptions = {}): Promise<FileHasher> {
  const api = await loadWasm();
  const bufferSize = options.bufferSize ?? DEFAULT_HASH_BUFFER;
  if (!Number.isInteger(bufferSize) || bufferSize < 1) {
    throw new WarmsyncError('INVALID_OPTION', `hash buffer size must be a positive integer, got ${bufferSize}`);
  }
  const afterChunk = options.afterChunk;
  const pool: Buffer[] = [];

  function createStreamHasher(): StreamHasher {
    const state = api.create64();
    return {
      update(data) { state.update(data); },
      digest() { return hex64(state.digest()); },
    };
  }

  async function hashFile(absPath: string, expect?: HashExpectation): Promise<HashResult> {
    const { fd, stats: before, size, mtimeMs, ino, mode } = openPlannedFile(absPath, expect, options.source);
    const buffer = pool.pop() ?? Buffer.allocUnsafe(bufferSize);
    try {
      // Below the buffer's size too: then one read (and no afterChunk) does it, whatever the file does.
      const small = size < SYNC_READ_MAX_BYTES && size < buffer.length;

      const state = api.create64();
      let total = 0;
      while (true) {
        // Ask for one byte past the expected end, so a file that grew is noticed by the read itself;
        // a short read that reaches the expected size is EOF, which saves a final empty read.
        const want = Math.min(buffer.length, size - total + 1);
        const bytesRead = small ? readSync(fd, buffer, 0, want, total) : (await readAsync(fd, buffer, 0, want, total)).bytesRead;
        if (bytesRead === 0) break;
        state.update(buffer.subarray(0, bytesRead));
        total += bytesRead;
        if (total > size || (total === size && bytesRead < want)) break;
        if (afterChunk !== undefined) await afterChunk(absPath, total);
      }
      if (total !== size) throw changed(absPath, `read ${total} bytes, expected ${size}`);

      const after = small ? lstatFile(absPath) : fileStatOfBigInt(await lstat(absPath, { bigint: true }));
      if (!sameFile(before, after)) throw changed(absPath);
      return { hash: hex64(state.digest()), size, mtimeMs, ino, mode };
    } finally {
      if (pool.length < MAX_POOLED_BUFFERS) pool.push(buffer);
      closeSync(fd);
    }
  }

  return {
    hashFile,
    hashBytes: (data) => hex64(api.h64Raw(data)),
    createStreamHasher,
  };
}

/** What sharingHashes remembers of the hashes it computed. */
export interface RememberedHashes {
  /** How many, at most: the oldest go first. */
  readonly capacity: number;
  /** May this result, finished at `hashedAt`, be remembered? The cache's rule (scanner.ts isCacheable). */
  readonly mayKeep: (result: HashResult, hashedAt: number) => boolean;
}

/**
 * `hasher` where a file (same path, size, mtime, inode) asked for while it is being hashed, or
 * among the last `remember.capacity` hashed whose result `mayKeep`, is not read again: the result
 * comes back marked `shared`. An agent feeding several standbys runs a pass per standby, each
 * paced by its own link, and each looks at the same files about the same moment: a file is read
 * once whatever their number. Longer ago is the cache's job (AgentCache).
 */
export function sharingHashes(hasher: FileHasher, remember: RememberedHashes): FileHasher {
  const running = new Map<string, Promise<HashResult>>();
  // Insertion order is age: a Map deletes its oldest key cheaply.
  const done = new Map<string, HashResult>();
  return {
    ...hasher,
    hashFile(absPath, expect) {
      if (expect?.ino === undefined) return hasher.hashFile(absPath, expect);
      const key = `${absPath}\0${expect.size}\0${expect.mtimeMs}\0${expect.ino}\0${expect.dev ?? ''}`;
      const known = done.get(key);
      if (known !== undefined) return Promise.resolve({ ...known, shared: true });
      const pending = running.get(key);
      if (pending !== undefined) return pending.then((result) => ({ ...result, shared: true }));
      const mine = hasher.hashFile(absPath, expect).then((result) => {
        // In the step that ends the read: a caller finds either the read or its result.
        running.delete(key);
        if (remember.mayKeep(result, Date.now())) {
          done.set(key, result);
          if (done.size > remember.capacity) done.delete(done.keys().next().value as string);
        }
        return result;
      }, (err: unknown) => {
        running.delete(key);
        throw err;
      });
      running.set(key, mine);
      return mine;
    },
  };
}
