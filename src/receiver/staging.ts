/**
 * Invariant 2, "Atomic and verified": file content is written to a temporary name in the target's own
 * directory, hashed as it arrives, and only a verified, durable file is renamed into place (fsynced
 * here, or with its group: durable.ts). The caller makes the renames durable and records the
 * manifest rows afterwards (in batches: group commit).
 *
 * Every call is confined (../confined/root.ts): the temp file is created with openat(O_CREAT |
 * O_EXCL | O_NOFOLLOW) on a descriptor of the real parent directory, renamed with renameat2 on that
 * same descriptor (RENAME_NOREPLACE where the manifest has no row for the path), and written,
 * chmod'ed, utimed and fsynced through its own descriptor; nothing is done by path, so a parent
 * swapped for a symlink meanwhile is never followed.
 *
 * The file's writes queue behind the create of its temporary file (`begin`), which is made on the
 * session's thread while creates take microseconds and on libuv's pool while they take a
 * millisecond (NFS, or a journal-less ext4 skipping recently freed inodes), so that the next files'
 * frames are handled meanwhile (ConfinedRoot's createPlacement; docs/benchmarks.md, session 15).
 * The fsync and the re-reading of a resumed prefix go through the pool. The other calls (write,
 * fchmod, futimes, close, rename) take microseconds, so each costs less made synchronously than as a
 * round trip through the pool (a thread wake-up and an event-loop turn each), and the pool's four
 * threads stay free for the fsyncs, which start as soon as a file is verified (seal) and run while
 * later files arrive.
 */
import { closeSync, constants, fchmodSync, fchownSync, fdatasync, fstatSync, fsync, ftruncateSync, futimesSync, read, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import type { DirRef } from '../confined/root.js';
import { nextTempName } from '../confined/temp.js';
import { utimeValue } from '../entry.js';
import { ProtocolError, WarmsyncError } from '../errors.js';
import { baseName } from '../relpath.js';
import { partialName, type PartialStore } from './partials.js';

const fsyncAsync = promisify(fsync);
const fdatasyncAsync = promisify(fdatasync);

/**
 * A large file's data is flushed in the background each time this much more has arrived, so the
 * disk writes while the rest streams in instead of all at the final fsync (512 MiB here: 1.0 s
 * for the final fsync alone, 0.05-0.6 s with these flushes; the same total time for small files).
 */
const FLUSH_EVERY_BYTES = 32 << 20;
/**
 * A file this large is fsynced on its own as soon as it is sealed (its group is itself, see the
 * session's commit), so its flush overlaps what arrives next; smaller files share a syncfs.
 */
const FSYNC_ALONE_BYTES = 8 << 20;
const readAsync = promisify(read);

export interface StreamHasher { update(data: Uint8Array): void; digest(): string }

/**
 * What the file must become. `hash` null: announced later (`expectHash`), before `seal`. `chown`:
 * the owner and group to give it (src/owner/policy.ts), absent or null to keep the receiver's.
 */
export interface StagedTarget {
  readonly size: number; readonly hash: string | null; readonly mode: number; readonly mtimeMs: number;
  readonly chown?: { readonly uid: number; readonly gid: number } | null;
}

/** Where the file goes: its directory (held open; StagedFile keeps its own reference), its path. */
export interface StagedPlace {
  readonly parent: DirRef;
  /** The relative path; its last component is the final name in `parent`. */
  readonly rel: string;
  /** The absolute path, for messages and the partial's name. */
  readonly finalPath: string;
  /** Whether the manifest has a row at `rel`: only then may the install replace what is there. */
  readonly recorded: boolean;
}

export class StagedFile {
  /** Bytes taken by `write` (checked as they arrive); `written` counts those on disk. */
  private accepted = 0;
  private written = 0;
  private fd = -1;
  /**
   * The steps that must wait (a create on the pool, and what arrives behind it), in order. Never
   * rejects: the first failure lands in `failure`.
   */
  private pipeline: Promise<void> = Promise.resolve();
  /** Steps in `pipeline` not finished yet: with none, a write runs at once. */
  private stepsWaiting = 0;
  private failure: unknown = null;
  private closed = false;
  private fsynced = false;
  private sealing: Promise<void> | null = null;
  /** The background flush in progress (it holds the descriptor: close only after it). */
  private flushing: Promise<void> | null = null;
  private flushFailure: unknown = null;
  private unflushed = 0;
  /** The hash the content must have; null until the agent has announced it. */
  private expected: string | null;

  private released = false;
  readonly parent: DirRef;
  readonly finalPath: string;
  private readonly finalName: string;
  /** StagedPlace.recorded. */
  readonly recorded: boolean;

  private constructor(
    place: StagedPlace,
    readonly tempName: string,
    private readonly hasher: StreamHasher,
    readonly target: StagedTarget,
  ) {
    this.expected = target.hash;
    this.parent = place.parent.retain();
    this.finalPath = place.finalPath;
    this.finalName = baseName(place.rel);
    this.recorded = place.recorded;
  }

  /** The announced content hash (null until announced). */
  get hash(): string | null {
    return this.expected;
  }

  /** The agent hashed the content while sending it and announces the hash now (fileEnd). */
  expectHash(hash: string): void {
    this.expected = hash;
  }

  /**
   * Starts creating a temporary file in `place.parent` and returns at once: `write` queues data
   * behind the create, and `ready`, `verify` or `seal` report a failed create (EACCES, ENOSPC).
   * The StagedFile holds its own reference to the directory until `install` and `release`, or `abort`.
   */
  static begin(place: StagedPlace, target: StagedTarget, hasher: StreamHasher): StagedFile {
    return StagedFile.beginAt(place, nextTempName(), target, hasher);
  }

  private static beginAt(place: StagedPlace, tempName: string, target: StagedTarget, hasher: StreamHasher): StagedFile {
    const staged = new StagedFile(place, tempName, hasher, target);
    // O_CREAT | O_EXCL | O_NOFOLLOW in the held directory: never reuse or follow anything there.
    // Made now while creates are fast, else on the pool with the writes queued behind it (see the top of this file).
    staged.runNow(() => {
      const fd = staged.parent.createFileNow(staged.tempName, 0o600);
      if (fd !== null) staged.fd = fd;
      else {
        void staged.enqueue(async () => {
          staged.fd = await staged.parent.createFile(staged.tempName, 0o600);
        });
      }
    });
    return staged;
  }

  /**
   * Opens a temporary file beside `finalPath` and waits for it. With `partials`, an unfinished
   * earlier transfer of the same content is continued: its bytes are hashed again (the hash covers
   * the whole file) and `bytesWritten` says where the agent must resume.
   */
  static async create(place: StagedPlace, target: StagedTarget, hasher: StreamHasher, partials?: PartialStore): Promise<StagedFile> {
    const tempName = nextTempName();
    const resumed = partials ? partials.take(partialName(place.finalPath, target), target.size, place.parent, tempName) : null;
    if (resumed === null) {
      // No partial was moved to the temp name: create the file there.
      const staged = StagedFile.beginAt(place, tempName, target, hasher);
      await staged.ready();
      return staged;
    }
    const staged = new StagedFile(place, tempName, hasher, target);
    try {
      staged.fd = staged.parent.open(tempName, constants.O_RDWR | constants.O_NONBLOCK);
      if (!fstatSync(staged.fd).isFile()) throw new WarmsyncError('APPLY_FAILED', `${place.finalPath}: the kept partial is not a regular file`);
    } catch (err) {
      await staged.abort();
      throw err;
    }
    try {
      await staged.rehashPrefix(resumed);
    } catch (err) {
      await staged.abort();
      throw err;
    }
    return staged;
  }

  private enqueue(step: () => void | Promise<void>): Promise<void> {
    this.stepsWaiting++;
    this.pipeline = this.pipeline.then(async () => {
      if (this.failure === null) {
        try {
          await step();
        } catch (err) {
          this.failure = err;
        }
      }
      this.stepsWaiting--;
    });
    return this.pipeline;
  }

  /** Runs a synchronous step now (nothing may be waiting ahead of it); a failure lands in `failure`. */
  private runNow(step: () => void): void {
    if (this.failure !== null) return;
    try {
      step();
    } catch (err) {
      this.failure = err;
    }
  }

  /** Waits for the create and every write so far; throws the first of them that failed. */
  async ready(): Promise<void> {
    await this.pipeline;
    if (this.failure !== null) throw this.failure;
  }

  private async rehashPrefix(length: number): Promise<void> {
    const buffer = Buffer.allocUnsafe(Math.min(1 << 20, length));
    while (this.written < length) {
      const { bytesRead } = await readAsync(this.fd, buffer, 0, Math.min(buffer.byteLength, length - this.written), this.written);
      if (bytesRead === 0) break;
      this.hasher.update(buffer.subarray(0, bytesRead));
      this.written += bytesRead;
    }
    ftruncateSync(this.fd, this.written);
    this.accepted = this.written;
  }

  /** Keeps what arrived so far (fsynced) for a later connection to continue; the temp file is gone. */
  async keepAsPartial(partials: PartialStore): Promise<void> {
    await this.ready();
    await this.flushed();
    await fsyncAsync(this.fd);
    this.close();
    try {
      partials.keep(this.parent, this.tempName, partialName(this.finalPath, this.target));
    } finally {
      this.release();
    }
  }

  /** Bytes on disk: after `ready`, every byte `write` took unless a write failed. */
  get bytesWritten(): number {
    return this.written;
  }

  /**
   * Writes a chunk, or queues it behind a create on the pool and what waits for it; offsets must be
   * contiguous and stay within the announced size (checked now: a ProtocolError is thrown at once).
   * Returns null when the chunk was written (or dropped after an earlier failure) at once; else a
   * promise that settles, never rejecting, once it was. Most chunks are written at once: a promise
   * for each, and the closures around it, were about a tenth of what a first sync allocated.
   */
  write(offset: number, data: Uint8Array): Promise<void> | null {
    if (offset !== this.accepted) {
      throw new ProtocolError('BAD_OFFSET', `chunk at offset ${offset} for ${this.finalPath}, expected ${this.accepted}`);
    }
    if (offset + data.byteLength > this.target.size) {
      throw new ProtocolError('BAD_OFFSET', `chunk ends at ${offset + data.byteLength}, past the announced size ${this.target.size}`);
    }
    this.accepted += data.byteLength;
    if (this.stepsWaiting > 0) return this.enqueue(() => this.writeNow(offset, data));
    this.runNow(() => this.writeNow(offset, data));
    return null;
  }

  private writeNow(offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.byteLength) {
      done += writeSync(this.fd, data, done, data.byteLength - done, offset + done);
    }
    this.hasher.update(data);
    this.written += data.byteLength;
    this.unflushed += data.byteLength;
    if (this.unflushed >= FLUSH_EVERY_BYTES && this.flushing === null) {
      this.unflushed = 0;
      this.flushing = fdatasyncAsync(this.fd)
        .catch((err: unknown) => {
          this.flushFailure ??= err;
        })
        .finally(() => {
          this.flushing = null;
        });
    }
  }

  /** Waits for the background flush, if any; throws what it failed with. */
  private async flushed(): Promise<void> {
    if (this.flushing !== null) await this.flushing;
    if (this.flushFailure !== null) throw this.flushFailure;
  }

  /**
   * Waits for every write, then checks the content against the announced hash; throws
   * CHECKSUM_MISMATCH on a mismatch (the caller aborts: the temp file is still there).
   */
  async verify(): Promise<void> {
    if (this.stepsWaiting > 0) await this.pipeline;
    this.checkContent();
  }

  /** `verify` once nothing waits in the pipeline. */
  private checkContent(): void {
    if (this.failure !== null) throw this.failure;
    // The session seals a file only once its hash is announced: this is a bug, not bad input.
    if (this.expected === null) throw new Error(`${this.finalPath}: verified before its hash was announced`);
    const actual = this.hasher.digest();
    if (actual !== this.expected) {
      throw new WarmsyncError('CHECKSUM_MISMATCH', `content of ${this.finalPath} hashed to ${actual}, the agent announced ${this.expected}; not applied`);
    }
  }

  /**
   * Verifies the file (see `verify`) and sets owner, mode and mtime; the file is still at its
   * temporary name. The data is fsynced here when `alone` (a file that arrived by itself: an fsync
   * of its own costs it less than a syncfs, which also writes back whatever else is dirty on the
   * file system) or when it is FSYNC_ALONE_BYTES or more (its flush overlaps what arrives next);
   * otherwise it is made durable with the rest of its group (durable.ts). `durable` says which.
   * The first call starts the work and decides; every call returns the same promise: the session
   * starts it when the last chunk arrives, and its group commit waits for it.
   */
  seal(alone = false): Promise<void> {
    this.sealing ??= this.sealNow(alone);
    return this.sealing;
  }

  /** Whether the sealed data is durable already (fsynced alone), or waits for its group's syncfs. */
  get durable(): boolean {
    return this.fsynced;
  }

  private async sealNow(alone: boolean): Promise<void> {
    // Awaited only when there is something to wait for: one async step per file, not three.
    if (this.stepsWaiting > 0) await this.pipeline;
    this.checkContent();
    if (this.flushing !== null || this.flushFailure !== null) await this.flushed();
    // chown before chmod: chown clears the setuid and setgid bits.
    const ids = this.target.chown;
    if (ids !== undefined && ids !== null) fchownSync(this.fd, ids.uid, ids.gid);
    fchmodSync(this.fd, this.target.mode);
    const t = utimeValue(this.target.mtimeMs);
    futimesSync(this.fd, t, t);
    if (alone || this.target.size >= FSYNC_ALONE_BYTES) {
      await fsyncAsync(this.fd);
      this.fsynced = true;
    }
    this.close();
  }

  /**
   * Renames the sealed file to its final name in the same held directory (renameat2, never
   * following what is there). Over a file or symlink there only when the manifest records the path
   * (`recorded`) or the caller has just made room (`roomMade`); otherwise with RENAME_NOREPLACE, so
   * that an entry nobody recorded fails with EEXIST instead of being overwritten. A directory there
   * fails with EISDIR. The caller checks first that the directory is still at its path
   * (ConfinedRoot.stillAt), then fsyncs it and calls `release`.
   */
  install(roomMade = false): void {
    this.parent.rename(this.tempName, this.parent, this.finalName, !this.recorded && !roomMade);
  }

  /** Lets go of the directory (after `install` and the directory's fsync). Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.parent.release();
  }

  async abort(): Promise<void> {
    // A seal under way still uses the descriptor: let it end (it closes it) before removing the file.
    if (this.sealing !== null) await this.sealing.catch(() => undefined);
    await this.pipeline;
    await this.flushed().catch(() => undefined);
    // A create that failed left nothing of ours at the temp name: never remove what is there.
    if (this.fd < 0) {
      this.release();
      return;
    }
    try {
      this.close();
    } catch {
      // the descriptor is gone either way
    }
    try {
      this.parent.unlink(this.tempName);
    } catch {
      // already gone
    }
    this.release();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
