/**
 * One full pass's sending (agent.ts): the plan's changes are handed over as the scan makes them,
 * queued briefly and submitted in order by one loop that waits while the receiver is behind
 * (Sender.submit), and the scan waits while that queue is full (`room`). So a first sync of a
 * million files never holds its plan, its answers or its hashes: nothing per change outlives the
 * change's answer but a failure, and what the caller keeps of an applied change (`onApplied`).
 */
import { actionOf, type Change } from '../plan/diff.js';
import type { HashedWhileSent, OpFailure, SendReport, Sender } from './sender.js';

export interface PassSendingHooks {
  /** A change the receiver applied and recorded; a file the scan left unhashed has the hash it was sent with. */
  readonly onApplied?: ((change: Change, deletedAt: number) => void) | undefined;
  /** A file hashed on its way out, once its op is answered (whatever the answer). */
  readonly onHashed: (row: HashedWhileSent) => void;
}

/** Changes queued and not submitted yet, at most, before `room` makes the scan wait; it goes on at half. */
const QUEUE_HIGH = 2048;

interface Queued { readonly change: Change; readonly deletedAt: number }

export class PassSending {
  readonly #sender: Sender;
  readonly #hooks: PassSendingHooks;
  /** Taken from #queueStart on; a slot taken is emptied so its change can go once answered. */
  #queue: (Queued | undefined)[] = [];
  #queueStart = 0;
  /** The submitting loop, while it runs (#pumping); it ends when the queue is empty. */
  #pump: Promise<void> = Promise.resolve();
  #pumping = false;
  #roomWaiters: Array<() => void> = [];
  #error: unknown = null;
  #ops = 0;
  readonly #counts = { filesSent: 0, metaUpdates: 0, tombstones: 0 };
  #unanswered = 0;
  #allAnswered: (() => void) | null = null;
  readonly #failures: Array<{ readonly index: number; readonly failure: OpFailure }> = [];
  /** Files hashed on the way whose op has not been answered yet, by path. */
  readonly #hashed = new Map<string, HashedWhileSent>();
  #hashedCount = 0;
  readonly #sentBefore: Sender['sent'];

  constructor(sender: Sender, hooks: PassSendingHooks) {
    this.#sender = sender;
    this.#hooks = hooks;
    this.#sentBefore = sender.sent;
  }

  /** Queues `change` (a tombstone stamped `deletedAt`); it goes out after every change queued before it. */
  send(change: Change, deletedAt: number): void {
    if (this.#error !== null) return; // finish() reports why
    this.#queue.push({ change, deletedAt });
    if (!this.#pumping) {
      this.#pumping = true;
      this.#pump = this.#submitQueued();
    }
  }

  /**
   * Null while the queue has room; else a promise that settles once it has. Once sending failed, a
   * rejection with the failure: the scan feeding this pass stops rather than plan for nobody.
   */
  room(): Promise<void> | null {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#queued < QUEUE_HIGH) return null;
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Waits until every change queued has been answered; throws when the session failed, or onApplied did. */
  async finish(): Promise<SendReport> {
    while (this.#pumping) await this.#pump;
    if (this.#error !== null) throw this.#error;
    await this.#sender.settle();
    if (this.#unanswered > 0) await new Promise<void>((resolve) => { this.#allAnswered = resolve; });
    if (this.#error !== null) throw this.#error;
    this.#takeHashed(null); // any left: hashed for an op this pass did not send
    const sent = this.#sender.sent;
    return {
      ops: this.#ops, ...this.#counts, bytesSent: sent.bytes - this.#sentBefore.bytes, wireBytesSent: sent.wireBytes - this.#sentBefore.wireBytes,
      failures: this.#failures.sort((a, b) => a.index - b.index).map((f) => f.failure), hashedWhileSent: this.#hashedCount,
    };
  }

  /**
   * The pass failed before its end (its scan did): drops what is not submitted yet and waits until
   * what was is answered, so that nothing of this pass lands after it. Never throws: the caller
   * reports the failure that ended the pass.
   */
  async abandon(): Promise<void> {
    this.#queue = [];
    this.#queueStart = 0;
    try {
      await this.finish();
    } catch {
      // The session failed too: everything submitted was answered with its failure.
    }
  }

  get #queued(): number {
    return this.#queue.length - this.#queueStart;
  }

  /** Submits the queue in order; stops (#pumping false) in the same step that finds it empty, so no change queued is left behind. */
  async #submitQueued(): Promise<void> {
    try {
      while (this.#queued > 0) {
        const { change, deletedAt } = this.#queue[this.#queueStart] as Queued;
        this.#queue[this.#queueStart++] = undefined;
        if (this.#queueStart > 1024 && this.#queueStart * 2 > this.#queue.length) {
          this.#queue.splice(0, this.#queueStart);
          this.#queueStart = 0;
        }
        if (this.#queued <= QUEUE_HIGH / 2) this.#wakeRoomWaiters();
        const action = actionOf(change);
        if (action === 'transfer') this.#counts.filesSent++;
        else if (action === 'setMeta') this.#counts.metaUpdates++;
        else if (action === 'delete') this.#counts.tombstones++;
        const index = this.#ops++;
        const { result } = await this.#sender.submit(change, deletedAt);
        this.#unanswered++;
        void result.then((failure) => this.#answered(index, change, deletedAt, failure));
      }
    } catch (err) {
      this.#error = err;
      this.#queue = [];
      this.#queueStart = 0;
    } finally {
      this.#pumping = false;
      this.#wakeRoomWaiters();
    }
  }

  /** One answer. A hook that throws (the mirror's database failed) fails the pass: finish() and room() report it. */
  #answered(index: number, change: Change, deletedAt: number, failure: OpFailure | null): void {
    try {
      const hashed = change.new?.kind === 'file' && change.new.hash === null ? this.#takeHashed(change.path) : undefined;
      if (failure !== null) this.#failures.push({ index, failure });
      else if (this.#hooks.onApplied !== undefined) {
        const next = change.new;
        this.#hooks.onApplied(next !== null && hashed !== undefined ? { ...change, new: { ...next, hash: hashed.hash } } : change, deletedAt);
      }
    } catch (err) {
      this.#error ??= err;
    } finally {
      if (--this.#unanswered === 0) this.#allAnswered?.();
    }
  }

  /**
   * Collects the sender's new hashes by path until their op is answered; then hands `path`'s to
   * onHashed and returns it (all of them when `path` is null).
   */
  #takeHashed(path: string | null): HashedWhileSent | undefined {
    for (const row of this.#sender.drainHashed()) {
      this.#hashed.set(row.path, row);
      this.#hashedCount++;
    }
    if (path === null) {
      for (const row of this.#hashed.values()) this.#hooks.onHashed(row);
      this.#hashed.clear();
      return undefined;
    }
    const row = this.#hashed.get(path);
    if (row !== undefined) {
      this.#hashed.delete(path);
      this.#hooks.onHashed(row);
    }
    return row;
  }

  #wakeRoomWaiters(): void {
    for (const wake of this.#roomWaiters.splice(0)) wake();
  }
}
