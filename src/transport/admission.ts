/**
 * Sockets that have not authenticated: how many, for how long. Every accepted socket starts here;
 * it leaves when it authenticates as the agent (`admit`) or closes. A socket still here
 * PREAUTH_DEADLINE_MS after its accept (or after its last plain HTTP request: `touch`) is closed.
 * Past MAX_UNAUTHENTICATED_SOCKETS the excess is closed: sockets that have not yet sent a whole
 * request first (a slow-header flood never evicts a WebSocket one round trip from authenticating,
 * or a /healthz being answered), and of those the oldest of the source address that holds the
 * most. A flood from one address churns its own sockets; newcomers (the real agent, a health
 * probe) get in. The excess is closed once the event loop has handled the I/O already waiting
 * (setImmediate), not at accept: a newcomer accepted along with a burst has its request read
 * before the burst can push it out.
 */
import type { Socket } from 'node:net';
import { MAX_UNAUTHENTICATED_SOCKETS, PREAUTH_DEADLINE_MS } from './limits.js';

/** 0: TCP or TLS, request headers incomplete, or idle keep-alive; 1: a request being answered, or a WebSocket waiting for `auth`. */
type Stage = 0 | 1;

interface Tracked { readonly socket: Socket; readonly source: string; timer: NodeJS.Timeout; stage: Stage }

export type Dropped = (source: string, why: 'EVICTED' | 'PREAUTH_TIMEOUT') => void;

type PeerAddress = { remoteAddress?: string | undefined; remotePort?: number | undefined };

/** Identifies a socket by its peer's address and port: the same for a TLS socket and the TCP socket below it. */
export function socketKey(socket: PeerAddress): string {
  return `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? '?'}`;
}

export class Admission {
  private readonly pending = new Map<string, Tracked>();
  /** Per stage, per source address: its sockets' keys, oldest first. */
  private readonly bySource: [Map<string, Set<string>>, Map<string, Set<string>>] = [new Map(), new Map()];
  private readonly counts: [number, number] = [0, 0];
  private sweep: NodeJS.Immediate | null = null;

  constructor(
    private readonly dropped: Dropped,
    private readonly max = MAX_UNAUTHENTICATED_SOCKETS,
    private readonly deadlineMs = PREAUTH_DEADLINE_MS,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  /** A newly accepted (TCP) socket. */
  accepted(socket: Socket): void {
    const key = socketKey(socket);
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    // The same address and port again: the earlier socket closed and its 'close' is still on its way.
    this.forget(key);
    const tracked: Tracked = { socket, source: socket.remoteAddress, timer: this.arm(key), stage: 0 };
    this.pending.set(key, tracked);
    this.file(key, tracked);
    socket.once('close', () => this.forget(key));
    if (this.pending.size > this.max) {
      this.sweep ??= setImmediate(() => {
        this.sweep = null;
        while (this.pending.size > this.max) this.evict();
      });
    }
  }

  /** A plain HTTP request was answered on this socket: idle keep-alive, with a fresh deadline, counted as new. */
  touch(socket: PeerAddress): void {
    const key = socketKey(socket);
    const tracked = this.pending.get(key);
    if (tracked === undefined) return;
    clearTimeout(tracked.timer);
    tracked.timer = this.arm(key);
    this.unfile(key, tracked);
    tracked.stage = 0;
    this.file(key, tracked);
  }

  /**
   * The socket sent a whole request: an HTTP request being answered, or a WebSocket waiting for
   * the peer's `auth`. Evicted only when no socket is earlier in line.
   */
  progressed(socket: PeerAddress): void {
    const key = socketKey(socket);
    const tracked = this.pending.get(key);
    if (tracked === undefined || tracked.stage === 1) return;
    this.unfile(key, tracked);
    tracked.stage = 1;
    this.file(key, tracked);
  }

  /** The socket authenticated: no deadline, not counted, never evicted. */
  admit(socket: PeerAddress): void {
    this.forget(socketKey(socket));
  }

  /** Closes every socket still waiting (the server is stopping). */
  closeAll(): void {
    if (this.sweep !== null) clearImmediate(this.sweep);
    this.sweep = null;
    for (const t of [...this.pending.values()]) t.socket.destroy();
  }

  private arm(key: string): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const tracked = this.pending.get(key);
      if (tracked === undefined) return;
      this.forget(key);
      tracked.socket.destroy();
      this.dropped(tracked.source, 'PREAUTH_TIMEOUT');
    }, this.deadlineMs);
    timer.unref();
    return timer;
  }

  /** Closes the oldest socket of the earliest stage, from the source holding the most in that stage. */
  private evict(): void {
    const stage: Stage = this.counts[0] > 0 ? 0 : 1;
    let worst: Set<string> | null = null;
    for (const keys of this.bySource[stage].values()) if (worst === null || keys.size > worst.size) worst = keys;
    const key = worst?.values().next().value;
    const tracked = key === undefined ? undefined : this.pending.get(key);
    if (key === undefined || tracked === undefined) {
      // Cannot happen (every pending socket is filed); never loop forever on it.
      const first = this.pending.keys().next().value;
      if (first !== undefined) this.forget(first);
      return;
    }
    this.forget(key);
    tracked.socket.destroy();
    this.dropped(tracked.source, 'EVICTED');
  }

  private file(key: string, tracked: Tracked): void {
    const map = this.bySource[tracked.stage];
    let keys = map.get(tracked.source);
    if (keys === undefined) map.set(tracked.source, (keys = new Set()));
    keys.add(key);
    this.counts[tracked.stage]++;
  }

  private unfile(key: string, tracked: Tracked): void {
    const map = this.bySource[tracked.stage];
    const keys = map.get(tracked.source);
    if (keys?.delete(key) === true) this.counts[tracked.stage]--;
    if (keys?.size === 0) map.delete(tracked.source);
  }

  private forget(key: string): void {
    const tracked = this.pending.get(key);
    if (tracked === undefined) return;
    clearTimeout(tracked.timer);
    this.pending.delete(key);
    this.unfile(key, tracked);
  }
}
