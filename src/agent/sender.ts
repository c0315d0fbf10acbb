/**
 * Sends planned changes to the receiver and collects their results. Directory, symlink, metadata
 * and tombstone ops are small control messages sent in plan order; file content goes in up to
 * `maxInFlight` concurrent transfers whose chunks interleave, so a large file never holds up the
 * small ones behind it. Memory stays flat: a large transfer reads into its own bounded buffer, the
 * small ones share one, and no more than the receiver's credit window of file data is ever
 * unacknowledged. That window grows past the receiver's announced one, up to its windowMax, when
 * the measured round trip and rate call for it (pacing.ts WindowSizer), and --bwlimit caps the rate
 * of file data with a token bucket (pacing.ts TokenBucket); both are per connection, so per standby.
 *
 * A file the scan did not hash (it is new on the standby: ScanOptions.needsHash) is hashed here, from
 * the very bytes sent, so it is read once instead of twice: a small file's hash goes in its
 * fileBegin, a larger file's in a `fileEnd` after its last chunk (since protocol version 2).
 *
 * A file under SYNC_READ_MAX_BYTES is read with synchronous calls, for the reason the scan hashes it
 * so (scan/hash.ts): for a ~20 KiB file a round trip through libuv's pool per call costs more than
 * the call. Larger files are read through the pool, so the event loop is never held for long.
 *
 * Every file is opened through openPlannedFile (scan/openfile.ts): never through a symlink, never
 * blocking on a FIFO, and only when the descriptor shows a regular file of the planned size and
 * mtime. Anything else is FILE_CHANGED, the same failure as a file that changed while it was sent.
 *
 * With a ChunkCompressor (`--compress zstd`, when the receiver offered it), each chunk is tried
 * compressed as it goes out, and the first chunk of a file decides for the rest of it
 * (protocol/compression.ts): data that does not shrink, most filestore binaries, goes raw.
 */
import { close, closeSync, fstat, read, readSync } from 'node:fs';
import { promisify } from 'node:util';
import { wholeMs, type Entry, type FeedGap, type Owner } from '../entry.js';
import { ProtocolError, WarmsyncError, describeError } from '../errors.js';
import { actionOf, type Change } from '../plan/diff.js';
import { frameChunkInPlace } from '../protocol/codec.js';
import { FileCompression } from '../protocol/compression.js';
import { CHUNK_HEADER_BYTES, MAX_CHUNK_BYTES, RESUMABLE_MIN_BYTES, ZCHUNK_HEADER_BYTES } from '../protocol/limits.js';
import type { AgentMessage, HeartbeatDb, ReceiverMessage } from '../protocol/messages.js';
import type { Connection } from '../transport/connection.js';
import type { ChunkCompressor } from '../transport/zstd.js';
import { SYNC_READ_MAX_BYTES, type FileHasher, type StreamHasher } from '../scan/hash.js';
import { fstatFile, type FileStat } from '../scan/filestat.js';
import { openPlannedFile, type SourceRoot } from '../scan/openfile.js';
import { TokenBucket, WindowSizer } from './pacing.js';

const readAsync = promisify(read);
const fstatAsync = promisify(fstat);
const closeAsync = promisify(close);

export interface OpFailure { readonly path: string; readonly code: string; readonly message: string }

/** A file the sender hashed while sending it: the hash, and the file it is the hash of. */
export interface HashedWhileSent {
  readonly path: string;
  readonly hash: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
  /** When the last byte was read (the cache's racy-file rule needs it). */
  readonly hashedAt: number;
}

/** What one pass's sending did (PassSending.finish). */
export interface SendReport {
  readonly ops: number;
  readonly filesSent: number;
  readonly bytesSent: number;
  /** File data put on the wire for them: bytesSent after compression (frame headers not counted). */
  readonly wireBytesSent: number;
  readonly metaUpdates: number;
  readonly tombstones: number;
  /** In the order the changes were sent. */
  readonly failures: readonly OpFailure[];
  /** Files sent without a hash from the scan, hashed on the way (whatever their outcome). */
  readonly hashedWhileSent: number;
}

type Precondition = Extract<AgentMessage, { type: 'fileBegin' }>['old'];
type ManifestPage = Extract<ReceiverMessage, { type: 'manifestPage' }>;

/**
 * Bytes queued in ws above which no more file data is sent until the last chunk is handed to the OS
 * (socket-level backpressure). Every queued byte is a copy in this process (ws's masked frame):
 * the credit window alone would let 32 MiB of them pile up while the receiver fsyncs.
 */
const SOCKET_HIGH_WATER = 8 << 20;
/**
 * Ops sent and not yet answered, at most. The credit window counts file bytes only, so without
 * this 100,000 small files would all be queued on the receiver at once (~300 MB there). A few
 * of the receiver's commit groups (512 ops) keep it busy.
 */
const MAX_UNANSWERED_OPS = 2048;
/**
 * Chunks of large files read at once, at most (each into a frame of up to 1 MiB): libuv's pool has
 * 4 threads, and up to 64 transfers each holding a frame of its own came to 64 MiB.
 */
const LARGE_FILE_FRAMES = 4;

export class Sender {
  private nextOp = 1;
  private readonly waiting = new Map<number, { path: string; resolve: (f: OpFailure | null) => void }>();
  private unconsumed = 0;
  private creditWaiters: Array<() => void> = [];
  private flushWaiters = new Map<number, () => void>();
  /** Resumable transfers waiting for the receiver's resumeFrom: op -> resolve(offset, or null when the op failed). */
  private resumeWaiters = new Map<number, (offset: number | null) => void>();
  private inFlight = 0;
  /** File bytes actually sent (a resumed transfer sends only its rest). */
  private bytesOnWire = 0;
  /** The same data as it went on the wire: compressed where that paid (frame headers not counted). */
  private wireBytes = 0;
  /** Files whose content was sent in full over this connection. */
  private filesOnWire = 0;
  /** Settles when the last chunk sent is handed to the OS; null once it has been. */
  private lastChunkUnwritten: Promise<void> | null = null;
  private readonly transfers = new Set<Promise<void>>();
  private slotWaiters: Array<() => void> = [];
  private answerWaiters: Array<() => void> = [];
  private failure: WarmsyncError | null = null;
  /** Every small file is read into this (as a chunk frame) and sent before the next one starts. */
  private readonly smallFileFrame = Buffer.allocUnsafe(CHUNK_HEADER_BYTES + SYNC_READ_MAX_BYTES);
  /** The chunks of larger files are read into these, each held from its read until it is sent. */
  private readonly largeFileFrames: FramePool;
  private manifestHandler: ((msg: ManifestPage) => void) | null = null;
  /**
   * Pages of the manifest asked for with the handshake (Session.manifestRequested) that arrived
   * before `fetchManifest`; null when no such request is outstanding.
   */
  private earlyPages: ManifestPage[] | null;
  private hashedWhileSent: HashedWhileSent[] = [];
  /** Told of file bytes as they go out (a resumed file's kept prefix counts as done) and of each file fully sent. */
  onProgress: ((files: number, bytes: number) => void) | null = null;
  /** The credit window in force: the receiver's, or more on a long fat link (WindowSizer). */
  private readonly windowSizer: WindowSizer;
  /** --bwlimit's bucket; null without a limit (then nothing waits on it). */
  private readonly bucket: TokenBucket | null;
  /** Non-null when chunks may go compressed. */
  private readonly compressor: ChunkCompressor | null;

  constructor(
    private readonly conn: Connection,
    private readonly limits: { readonly window: number; readonly windowMax?: number; readonly maxInFlight: number; readonly manifestRequested?: boolean },
    private readonly source: SourceRoot,
    private readonly hasher: FileHasher,
    /** --bwlimit's rate, if any; a compressor when chunks may go compressed (negotiated by agent/compress.ts). */
    pacing: { readonly bwlimit?: number | null; readonly compressor?: ChunkCompressor | null } = {},
  ) {
    this.windowSizer = new WindowSizer(limits.window, Math.max(limits.window, limits.windowMax ?? limits.window));
    this.bucket = pacing.bwlimit === undefined || pacing.bwlimit === null ? null : new TokenBucket(pacing.bwlimit, performance.now());
    this.compressor = pacing.compressor ?? null;
    this.earlyPages = limits.manifestRequested === true ? [] : null;
    this.largeFileFrames = new FramePool(LARGE_FILE_FRAMES, CHUNK_HEADER_BYTES + Math.min(MAX_CHUNK_BYTES, limits.window));
    conn.onFrame((frame) => {
      if (frame.kind !== 'control') return this.abandon(new ProtocolError('UNEXPECTED_MESSAGE', 'the receiver sent file data'));
      this.onMessage(frame.message as ReceiverMessage);
    });
    void conn.closed.then((info) => {
      this.abandon(conn.protocolFailure ?? new WarmsyncError('CONNECTION_LOST', `the receiver closed the connection${info.reason ? ` (${info.reason})` : ''}`));
    });
  }

  private onMessage(msg: ReceiverMessage): void {
    switch (msg.type) {
      case 'results':
        for (const item of msg.items) {
          const w = this.waiting.get(item.op);
          if (w === undefined) continue;
          this.waiting.delete(item.op);
          this.resumeWaiters.get(item.op)?.(null);
          this.resumeWaiters.delete(item.op);
          w.resolve(item.ok ? null : { path: w.path, code: item.code ?? 'FAILED', message: item.message ?? '' });
        }
        this.wakeAnswerWaiters();
        return;
      case 'credit':
        this.windowSizer.onCredited(msg.bytes, performance.now());
        this.returnCredit(msg.bytes);
        return;
      case 'resumeFrom':
        this.resumeWaiters.get(msg.op)?.(msg.offset);
        this.resumeWaiters.delete(msg.op);
        return;
      case 'flushed':
        this.flushWaiters.get(msg.id)?.();
        this.flushWaiters.delete(msg.id);
        return;
      case 'manifestPage':
        if (this.manifestHandler !== null) this.manifestHandler(msg);
        else this.earlyPages?.push(msg);
        return;
      case 'error':
        this.abandon(new WarmsyncError(msg.code, `receiver: ${msg.message}`));
        this.conn.close();
        return;
      default:
        this.abandon(new ProtocolError('UNEXPECTED_MESSAGE', `unexpected ${msg.type} from the receiver`));
        this.conn.close();
    }
  }

  /** Fails everything still waiting: the connection is gone or the receiver gave up on us. */
  private abandon(error: WarmsyncError): void {
    if (this.failure !== null) return;
    this.failure = error;
    for (const wake of [...this.creditWaiters.splice(0), ...this.slotWaiters.splice(0), ...this.answerWaiters.splice(0), ...this.flushWaiters.values()]) wake();
    this.flushWaiters.clear();
    for (const resume of this.resumeWaiters.values()) resume(null);
    this.resumeWaiters.clear();
    for (const w of this.waiting.values()) w.resolve({ path: w.path, code: error.code, message: error.message });
    this.waiting.clear();
  }

  get connection(): Connection {
    return this.conn;
  }

  /** The session is over (connection lost, or the receiver gave up on us): nothing more will be applied. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Writing to the socket failed (a reset mid-transfer): the connection is lost, not the file unreadable. */
  private writeFailed(err: unknown): void {
    this.abandon(this.conn.protocolFailure ?? new WarmsyncError('CONNECTION_LOST', `sending to the receiver failed: ${describeError(err)}`));
    this.conn.close();
  }

  /** Why the session ended, when it did because of the receiver or the connection; else `fallback`. */
  failureOr(fallback: WarmsyncError): WarmsyncError {
    return this.failure ?? fallback;
  }

  private check(): void {
    if (this.failure !== null) throw this.failure;
  }

  /** Fetches the receiver's manifest, page by page (the first time, maybe the one asked for with the handshake). */
  async fetchManifest(onPage: (entries: ManifestPage['entries']) => void): Promise<void> {
    const early = this.earlyPages;
    this.earlyPages = null;
    await new Promise<void>((resolve, reject) => {
      const handler = (msg: ManifestPage): void => {
        onPage(msg.entries);
        if (msg.done) resolve();
      };
      this.manifestHandler = handler;
      void this.conn.closed.then(() => reject(this.failure ?? new WarmsyncError('CONNECTION_LOST', 'connection lost while reading the manifest')));
      if (early === null) this.conn.send({ type: 'manifestRequest' });
      else for (const msg of early) handler(msg);
    });
    this.manifestHandler = null;
  }

  /**
   * Waits until every transfer begun has been sent and the receiver has answered a flush sent after
   * them: every op submitted before has been answered. Throws once the session has failed.
   */
  async settle(): Promise<void> {
    await Promise.all(this.transfers);
    await this.flush();
    this.check();
  }

  /**
   * Starts one change and returns (once it is under way) `result`, the promise of its outcome: null when the
   * receiver applied and recorded it. Waits first for a transfer slot when all are busy, so a
   * caller submitting in a loop is paced by the receiver. Ops go out in submission order.
   */
  async submit(change: Change, deletedAt: number): Promise<{ result: Promise<OpFailure | null> }> {
    this.check();
    const action = actionOf(change);
    const old: Precondition = change.old === null ? null : { kind: change.old.kind, hash: change.old.hash, deletedAt: change.old.deletedAt };
    const next = change.new;
    while (this.waiting.size >= MAX_UNANSWERED_OPS && this.failure === null) {
      await new Promise<void>((resolve) => this.answerWaiters.push(resolve));
    }
    if (action === 'transfer') await this.takeSlot();
    this.check();
    const op = this.nextOp++;
    const result = this.expect(op, change.path);
    if (action === 'delete' || next === null) {
      this.conn.send({ type: 'delete', op, path: change.path, deletedAt, old });
    } else if (action === 'mkdir') {
      this.conn.send({ type: 'mkdir', op, path: next.path, mode: next.mode, mtimeMs: next.mtimeMs, ...ownerField(next), old });
    } else if (action === 'symlink') {
      this.conn.send({ type: 'symlink', op, path: next.path, target: next.target ?? '', mtimeMs: next.mtimeMs, ...ownerField(next), old });
    } else if (action === 'special') {
      this.conn.send({ type: 'special', op, path: next.path, node: next.target ?? '', mode: next.mode, mtimeMs: next.mtimeMs, ...ownerField(next), old });
    } else if (action === 'setMeta') {
      this.conn.send({ type: 'setMeta', op, path: next.path, mode: next.mode, mtimeMs: next.mtimeMs, ...ownerField(next), old });
    } else {
      const transfer: Promise<void> = this.transfer(op, next, old).finally(() => {
        this.transfers.delete(transfer);
        this.releaseSlot();
      });
      this.transfers.add(transfer);
    }
    // Wrapped: an async function returning a bare promise would wait for it.
    return { result };
  }

  /** Transfers whose data is still being read and sent. */
  get transfersInProgress(): number {
    return this.transfers.size;
  }

  /**
   * Tells the receiver what the agent has durably replicated up to (see agent/watermark), and, from
   * the live agent, whether its change feed is complete and how many deletions it holds back.
   */
  heartbeat(watermark: number | null, live: { feedIncomplete: FeedGap | null; deletionsHeld: number; db?: HeartbeatDb } | null = null): void {
    this.conn.send({ type: 'heartbeat', now: Date.now(), watermark, ...live });
  }

  private expect(op: number, path: string): Promise<OpFailure | null> {
    return new Promise((resolve) => this.waiting.set(op, { path, resolve }));
  }

  private async flush(): Promise<void> {
    this.check();
    const id = this.nextOp++;
    await new Promise<void>((resolve) => {
      this.flushWaiters.set(id, resolve);
      this.conn.send({ type: 'flush', id });
    });
    this.check();
  }

  private async takeSlot(): Promise<void> {
    while (this.inFlight >= this.limits.maxInFlight && this.failure === null) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.inFlight++;
  }

  private releaseSlot(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
  }

  /**
   * Takes the credit for `bytes` of file data that go out right after: waits while ws is backed up
   * (SOCKET_HIGH_WATER), while the window is full, and then as long as --bwlimit's bucket says.
   * Credit and the bucket count file bytes, before compression, on both sides: the window bounds
   * what the receiver holds in memory, and it holds a compressed chunk decompressed (its credit goes
   * back once those bytes are written); --bwlimit then caps the wire at most at its rate.
   */
  private async waitForCredit(bytes: number): Promise<void> {
    while (this.failure === null) {
      if (this.lastChunkUnwritten !== null && this.conn.bufferedAmount > SOCKET_HIGH_WATER) {
        await this.lastChunkUnwritten;
      } else if (this.unconsumed + bytes > this.windowSizer.window && this.unconsumed > 0) {
        await new Promise<void>((resolve) => this.creditWaiters.push(resolve));
      } else {
        break;
      }
    }
    this.check();
    this.unconsumed += bytes;
    const waitMs = this.bucket?.take(bytes, performance.now()) ?? 0;
    if (waitMs > 0) {
      await new Promise<void>((resolve) => setTimeout(resolve, waitMs));
      this.check();
    }
  }

  /** The receiver consumed `bytes`, or a transfer gave back credit it took and did not use. */
  private returnCredit(bytes: number): void {
    this.unconsumed = Math.max(0, this.unconsumed - bytes);
    for (const wake of this.creditWaiters.splice(0)) wake();
  }

  /**
   * Streams one file. If the file no longer matches the scanned size and mtime, the transfer is
   * aborted (the receiver would reject it anyway) and reported as FILE_CHANGED so the agent rescans
   * it. The check runs before the last chunk goes out (before anything, for a small file): the
   * receiver completes a transfer that carried its hash on its last byte, so a failure reported
   * after that could describe a file the receiver has in fact committed.
   */
  private async transfer(op: number, entry: Entry, old: Precondition): Promise<void> {
    if (entry.size < SYNC_READ_MAX_BYTES && entry.size <= this.limits.window) return this.transferSmall(op, entry, old);
    let fd;
    try {
      ({ fd } = openPlannedFile(this.source.abs(entry.path), { size: entry.size, mtimeMs: entry.mtimeMs }, this.source));
    } catch (err) {
      this.openFailed(op, entry.path, err);
      return;
    }
    // Not hashed by the scan: hash the bytes as they go out, and announce the hash in fileEnd.
    const hasher = entry.hash === null ? this.hasher.createStreamHasher() : null;
    const squeeze = this.compressor === null ? null : new FileCompression();
    let begun = false;
    try {
      const begin = fileBegin(op, entry, entry.hash, old);
      let offset = 0;
      if (entry.size >= RESUMABLE_MIN_BYTES) {
        // Large: the receiver may hold the start of it from an interrupted connection.
        const resumeAt = new Promise<number | null>((resolve) => this.resumeWaiters.set(op, resolve));
        this.conn.send({ ...begin, resumable: true });
        begun = true;
        const at = await resumeAt;
        if (at === null) return; // the op failed; its result says why
        offset = at;
        if (hasher !== null) await this.hashPrefix(fd, hasher, offset);
        this.onProgress?.(0, offset);
      }
      while (true) {
        // Data is read in after the chunk header's room: the frame goes out as it is (sendData).
        const frame = await this.largeFileFrames.take();
        try {
          const want = Math.min(frame.byteLength - CHUNK_HEADER_BYTES, entry.size - offset);
          const { bytesRead } = want > 0 ? await readAsync(fd, frame, CHUNK_HEADER_BYTES, want, offset) : { bytesRead: 0 };
          const last = bytesRead === 0 || offset + bytesRead >= entry.size; // 0 bytes early: shrank since the scan
          const st = last ? await fstatAsync(fd) : null;
          if (st !== null && !unchangedSinceScan(entry, offset + bytesRead, st)) {
            if (begun) this.conn.send({ type: 'abort', op });
            this.changedWhileSent(op, entry.path);
            return;
          }
          if (!begun) {
            this.conn.send(begin);
            begun = true;
          }
          if (bytesRead > 0) {
            hasher?.update(frame.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + bytesRead));
            await this.waitForCredit(bytesRead);
            this.sendData(op, offset, frame, bytesRead, squeeze);
            offset += bytesRead;
          }
          if (st !== null) {
            if (hasher !== null) {
              const hash = hasher.digest();
              this.conn.send({ type: 'fileEnd', op, hash });
              this.noteHashed(entry, hash, st);
            }
            this.fileSent();
            break;
          }
        } finally {
          this.largeFileFrames.give(frame);
        }
      }
    } catch (err) {
      // After a failed session, everything waiting was already answered with its cause.
      if (this.failure === null) {
        // An abort for a transfer the receiver never heard of would be a protocol violation.
        if (begun) this.conn.send({ type: 'abort', op });
        this.settleLocally(op, entry.path, 'READ_FAILED', describeError(err));
      }
    } finally {
      await closeAsync(fd);
    }
  }

  /** Hashes the first `length` bytes of a resumed file, which the receiver kept and which are not sent again. */
  private async hashPrefix(fd: number, hasher: StreamHasher, length: number): Promise<void> {
    const frame = await this.largeFileFrames.take();
    try {
      for (let at = 0; at < length;) {
        const { bytesRead } = await readAsync(fd, frame, 0, Math.min(frame.byteLength, length - at), at);
        if (bytesRead === 0) return; // shrank since the scan: the fstat after the last read says so
        hasher.update(frame.subarray(0, bytesRead));
        at += bytesRead;
      }
    } finally {
      this.largeFileFrames.give(frame);
    }
  }

  /** Files and file bytes sent over this connection so far (the agent's metrics). */
  get sent(): { readonly files: number; readonly bytes: number; readonly wireBytes: number } {
    return { files: this.filesOnWire, bytes: this.bytesOnWire, wireBytes: this.wireBytes };
  }

  private fileSent(): void {
    this.filesOnWire++;
    this.onProgress?.(1, 0);
  }

  /** The files hashed on the way since the last call, handed over once. */
  drainHashed(): HashedWhileSent[] {
    const hashed = this.hashedWhileSent;
    this.hashedWhileSent = [];
    return hashed;
  }

  private noteHashed(entry: Entry, hash: string, st: StatSeen): void {
    this.hashedWhileSent.push({ path: entry.path, hash, size: entry.size, mtimeMs: entry.mtimeMs, ino: st.ino, hashedAt: Date.now() });
  }

  /**
   * A file under SYNC_READ_MAX_BYTES in one go: the credit for its whole size is taken first, then
   * open, read, fstat, close and the sends run with no await between them, so one buffer serves
   * every small transfer. Nothing is sent before the fstat has shown the file unchanged since the
   * scan, and the hash (when the scan left it to us) is of the bytes in the buffer, so it goes in
   * the fileBegin.
   */
  private async transferSmall(op: number, entry: Entry, old: Precondition): Promise<void> {
    try {
      await this.waitForCredit(entry.size);
    } catch {
      return; // the session failed: everything waiting was already answered with its cause
    }
    const frame = this.smallFileFrame;
    let fd;
    try {
      ({ fd } = openPlannedFile(this.source.abs(entry.path), { size: entry.size, mtimeMs: entry.mtimeMs }, this.source));
    } catch (err) {
      this.returnCredit(entry.size);
      this.openFailed(op, entry.path, err);
      return;
    }
    let bytesRead = 0;
    let st: FileStat;
    try {
      // Stops at the scanned size: a file that grew is caught by the fstat below.
      while (bytesRead < entry.size) {
        const n = readSync(fd, frame, CHUNK_HEADER_BYTES + bytesRead, entry.size - bytesRead, bytesRead);
        if (n === 0) break;
        bytesRead += n;
      }
      st = fstatFile(fd);
    } catch (err) {
      this.returnCredit(entry.size);
      this.settleLocally(op, entry.path, 'READ_FAILED', describeError(err));
      return;
    } finally {
      closeSync(fd);
    }
    if (!unchangedSinceScan(entry, bytesRead, st)) {
      this.returnCredit(entry.size);
      this.changedWhileSent(op, entry.path);
      return;
    }
    let hash = entry.hash;
    if (hash === null) {
      hash = this.hasher.hashBytes(frame.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + bytesRead));
      this.noteHashed(entry, hash, st);
    }
    this.conn.send(fileBegin(op, entry, hash, old));
    if (bytesRead > 0) this.sendData(op, 0, frame, bytesRead, this.compressor === null ? null : new FileCompression());
    this.fileSent();
  }

  /**
   * Sends `bytes` bytes of data, read into `frame` after its chunk header's room, as one chunk whose
   * credit is already taken: compressed (a zchunk in the compressor's buffer) when `squeeze`, the
   * file's decision, says so, else as it is. ws copies the frame before this returns
   * (Connection.sendChunkFrame), so `frame` and the compressor's buffer are free again. A failed
   * write fails the session.
   */
  private sendData(op: number, offset: number, frame: Buffer, bytes: number, squeeze: FileCompression | null): void {
    let chunk: Buffer | null = null;
    let onWire = bytes;
    if (this.compressor !== null && squeeze !== null && squeeze.tries(bytes)) {
      chunk = this.compressor.frame(op, offset, frame.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + bytes));
      onWire = chunk.length - ZCHUNK_HEADER_BYTES;
      squeeze.compressed(bytes, onWire);
    }
    chunk ??= frameChunkInPlace(frame.subarray(0, CHUNK_HEADER_BYTES + bytes), op, offset);
    const written: Promise<void> = this.conn.sendChunkFrame(chunk).then(
      () => {
        if (this.lastChunkUnwritten === written) this.lastChunkUnwritten = null;
      },
      (err: unknown) => this.writeFailed(err),
    );
    this.lastChunkUnwritten = written;
    this.windowSizer.onSent(bytes, performance.now());
    this.bytesOnWire += bytes;
    this.wireBytes += onWire;
    this.onProgress?.(0, bytes);
  }

  /**
   * Vanished, replaced (by a symlink, a FIFO, another file: openPlannedFile's FILE_CHANGED) or
   * unreadable since the scan: nothing was sent for it, so the result is ours to give.
   */
  private openFailed(op: number, path: string, err: unknown): void {
    const changed = ['ENOENT', 'ENOTDIR', 'FILE_CHANGED'].includes((err as NodeJS.ErrnoException).code ?? '');
    this.settleLocally(op, path, changed ? 'FILE_CHANGED' : 'UNREADABLE', describeError(err));
  }

  private changedWhileSent(op: number, path: string): void {
    this.settleLocally(op, path, 'FILE_CHANGED', `${path} changed while it was sent; it will be sent again`);
  }

  /** Resolves an op's result on the agent side (the receiver's own result for it is then ignored). */
  private settleLocally(op: number, path: string, code: string, message: string): void {
    const w = this.waiting.get(op);
    if (w === undefined) return;
    this.waiting.delete(op);
    w.resolve({ path, code, message });
    this.wakeAnswerWaiters();
  }

  private wakeAnswerWaiters(): void {
    if (this.waiting.size < MAX_UNANSWERED_OPS) for (const wake of this.answerWaiters.splice(0)) wake();
  }
}

/** `hash` null: the content is hashed as it is sent and the hash follows in fileEnd. */
function fileBegin(op: number, entry: Entry, hash: string | null, old: Precondition): Extract<AgentMessage, { type: 'fileBegin' }> {
  return { type: 'fileBegin', op, path: entry.path, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode, hash, ...ownerField(entry), old };
}

/** `{owner}` when the entry's owner is known, else nothing (the receiver then keeps its default). */
function ownerField(entry: Entry): { owner?: Owner } {
  return entry.owner === undefined || entry.owner === null ? {} : { owner: entry.owner };
}

/** What the sender checks of a file's fstat after reading it: a FileStat (small files) or Node's Stats (large ones, on the pool). */
type StatSeen = Pick<FileStat, 'size' | 'mtimeMs' | 'ino'>;

/** `bytesRead` bytes were read to EOF (or to the scanned size), and `st` is the open file's fstat after that. */
function unchangedSinceScan(entry: Entry, bytesRead: number, st: StatSeen): boolean {
  return bytesRead === entry.size && st.size === entry.size && wholeMs(st.mtimeMs) === entry.mtimeMs;
}

/** At most `max` buffers of `size` bytes, handed out and given back; a taker waits while all are out. */
class FramePool {
  private readonly free: Buffer[] = [];
  private made = 0;
  private readonly waiters: Array<(frame: Buffer) => void> = [];

  constructor(private readonly max: number, private readonly size: number) {}

  async take(): Promise<Buffer> {
    const frame = this.free.pop();
    if (frame !== undefined) return frame;
    if (this.made < this.max) {
      this.made++;
      return Buffer.allocUnsafe(this.size);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  give(frame: Buffer): void {
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter(frame);
    else this.free.push(frame);
  }
}
