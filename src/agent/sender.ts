/**
 * Sends planned changes to the receiver and collects their results. Directory, symlink, metadata
 * and tombstone ops are small control messages sent in plan order; file content goes in up to
 * `maxInFlight` concurrent transfers whose chunks interleave, so a large file never holds up the
 * small ones behind it. Memory stays flat: each transfer reads into its own bounded buffer, and no
 * more than the receiver's credit window of file data is ever unacknowledged.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { wholeMs, type Entry } from '../entry.js';
import { ProtocolError, WarmsyncError, describeError } from '../errors.js';
import { actionOf, type Change } from '../plan/diff.js';
import { MAX_CHUNK_BYTES, RESUMABLE_MIN_BYTES } from '../protocol/limits.js';
import type { AgentMessage, ReceiverMessage } from '../protocol/messages.js';
import type { Connection } from '../transport/connection.js';

export interface OpFailure { readonly path: string; readonly code: string; readonly message: string }

export interface SendReport {
  readonly ops: number;
  readonly filesSent: number;
  readonly bytesSent: number;
  readonly metaUpdates: number;
  readonly tombstones: number;
  readonly failures: readonly OpFailure[];
  /** Per change, in the order given: null when applied and recorded, else why not. */
  readonly outcomes: readonly (OpFailure | null)[];
}

type Precondition = Extract<AgentMessage, { type: 'fileBegin' }>['old'];

/** Bytes above which sending waits for ws to hand data to the OS (socket-level backpressure). */
const SOCKET_HIGH_WATER = 8 << 20;
/**
 * Ops sent and not yet answered, at most. The credit window counts file bytes only, so without
 * this 100,000 small files would all be queued on the receiver at once (~300 MB there). A few
 * of the receiver's commit groups (512 ops) keep it busy.
 */
const MAX_UNANSWERED_OPS = 2048;

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
  private readonly transfers = new Set<Promise<void>>();
  private slotWaiters: Array<() => void> = [];
  private answerWaiters: Array<() => void> = [];
  private failure: WarmsyncError | null = null;
  private manifestHandler: ((msg: Extract<ReceiverMessage, { type: 'manifestPage' }>) => void) | null = null;
  /** Told of file bytes as they go out (a resumed file's kept prefix counts as done) and of each file fully sent. */
  onProgress: ((files: number, bytes: number) => void) | null = null;

  constructor(
    private readonly conn: Connection,
    private readonly limits: { readonly window: number; readonly maxInFlight: number },
    private readonly root: string,
  ) {
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
        this.unconsumed = Math.max(0, this.unconsumed - msg.bytes);
        for (const wake of this.creditWaiters.splice(0)) wake();
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
        this.manifestHandler?.(msg);
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

  /** Fetches the receiver's manifest, page by page. */
  async fetchManifest(onPage: (entries: Extract<ReceiverMessage, { type: 'manifestPage' }>['entries']) => void): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.manifestHandler = (msg) => {
        onPage(msg.entries);
        if (msg.done) resolve();
      };
      void this.conn.closed.then(() => reject(this.failure ?? new WarmsyncError('CONNECTION_LOST', 'connection lost while reading the manifest')));
      this.conn.send({ type: 'manifestRequest' });
    });
    this.manifestHandler = null;
  }

  /** Sends every change and waits until the receiver has applied and recorded all of them. */
  async send(changes: readonly Change[], deletedAt: number): Promise<SendReport> {
    const results: Array<Promise<OpFailure | null>> = [];
    const counts = { filesSent: 0, metaUpdates: 0, tombstones: 0 };
    const bytesBefore = this.bytesOnWire;
    for (const change of changes) {
      const action = actionOf(change);
      if (action === 'transfer') {
        counts.filesSent++;
      } else if (action === 'setMeta') {
        counts.metaUpdates++;
      } else if (action === 'delete') {
        counts.tombstones++;
      }
      results.push((await this.submit(change, deletedAt)).result);
    }
    await Promise.all(this.transfers);
    await this.flush();
    const outcomes = await Promise.all(results);
    this.check();
    return { ops: results.length, ...counts, bytesSent: this.bytesOnWire - bytesBefore, failures: outcomes.filter((f): f is OpFailure => f !== null), outcomes };
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
      this.conn.send({ type: 'mkdir', op, path: next.path, mode: next.mode, mtimeMs: next.mtimeMs, old });
    } else if (action === 'symlink') {
      this.conn.send({ type: 'symlink', op, path: next.path, target: next.target ?? '', mtimeMs: next.mtimeMs, old });
    } else if (action === 'setMeta') {
      this.conn.send({ type: 'setMeta', op, path: next.path, mode: next.mode, mtimeMs: next.mtimeMs, old });
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

  /** Tells the receiver what the agent has durably replicated up to (see agent/watermark). */
  heartbeat(watermark: number | null): void {
    this.conn.send({ type: 'heartbeat', now: Date.now(), watermark });
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

  private async waitForCredit(bytes: number): Promise<void> {
    while (this.unconsumed + bytes > this.limits.window && this.unconsumed > 0 && this.failure === null) {
      await new Promise<void>((resolve) => this.creditWaiters.push(resolve));
    }
    this.check();
    this.unconsumed += bytes;
  }

  /**
   * Streams one file. The content was hashed by the scan; if the file no longer matches the scanned
   * size and mtime, the transfer is aborted (the receiver would reject it anyway) and reported as
   * FILE_CHANGED so the agent rescans it. The check runs before the last chunk goes out (before
   * fileBegin, for an empty file): the receiver completes a transfer on its last byte, so a failure
   * reported after that could describe a file the receiver has in fact committed.
   */
  private async transfer(op: number, entry: Entry, old: Precondition): Promise<void> {
    const abs = join(this.root, entry.path);
    let handle;
    try {
      handle = await open(abs, 'r');
    } catch (err) {
      // Vanished or unreadable since the scan: nothing was sent for it, so the result is ours to give.
      const gone = ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');
      this.settleLocally(op, entry.path, gone ? 'FILE_CHANGED' : 'UNREADABLE', describeError(err));
      return;
    }
    let begun = false;
    try {
      const begin = { type: 'fileBegin', op, path: entry.path, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode, hash: entry.hash ?? '', old } as const;
      let offset = 0;
      if (entry.size >= RESUMABLE_MIN_BYTES) {
        // Large: the receiver may hold the start of it from an interrupted connection.
        const resumeAt = new Promise<number | null>((resolve) => this.resumeWaiters.set(op, resolve));
        this.conn.send({ ...begin, resumable: true });
        begun = true;
        const at = await resumeAt;
        if (at === null) return; // the op failed; its result says why
        offset = at;
        this.onProgress?.(0, offset);
      }
      const buffer = Buffer.allocUnsafe(Math.min(MAX_CHUNK_BYTES, this.limits.window, Math.max(1, entry.size)));
      while (true) {
        const want = Math.min(buffer.byteLength, entry.size - offset);
        const { bytesRead } = want > 0 ? await handle.read(buffer, 0, want, offset) : { bytesRead: 0 };
        const last = bytesRead === 0 || offset + bytesRead >= entry.size; // 0 bytes early: shrank since the scan
        if (last) {
          const st = await handle.stat();
          if (offset + bytesRead !== entry.size || st.size !== entry.size || wholeMs(st.mtimeMs) !== entry.mtimeMs) {
            if (begun) this.conn.send({ type: 'abort', op });
            this.settleLocally(op, entry.path, 'FILE_CHANGED', `${entry.path} changed while it was sent; it will be sent again`);
            return;
          }
        }
        if (!begun) {
          this.conn.send(begin);
          begun = true;
        }
        if (bytesRead > 0) {
          await this.waitForCredit(bytesRead);
          const sent = this.conn.sendChunk(op, offset, buffer.subarray(0, bytesRead));
          // encodeChunk copied the data, so the buffer is free again; wait only when ws is backed up.
          const settled = sent.catch((err: unknown) => this.writeFailed(err));
          if (this.conn.bufferedAmount > SOCKET_HIGH_WATER) {
            await settled;
            this.check();
          }
          offset += bytesRead;
          this.bytesOnWire += bytesRead;
          this.onProgress?.(0, bytesRead);
        }
        if (last) {
          this.onProgress?.(1, 0);
          break;
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
      await handle.close();
    }
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
