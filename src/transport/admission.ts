/**
 * Sockets that have not authenticated: how many, for how long. Every accepted socket starts here;
 * it leaves when it authenticates as the agent (`admit`) or closes. A socket still here
 * PREAUTH_DEADLINE_MS after its accept (or after its last plain HTTP request: `touch`) is closed.
 * At MAX_UNAUTHENTICATED_SOCKETS the oldest socket of the source address that holds the most is
 * closed to make room: a flood from one address churns its own sockets, newcomers still get in.
 */
import type { Socket } from 'node:net';
import { MAX_UNAUTHENTICATED_SOCKETS, PREAUTH_DEADLINE_MS } from './limits.js';

interface Tracked { readonly socket: Socket; readonly source: string; timer: NodeJS.Timeout }

export type Dropped = (source: string, why: 'EVICTED' | 'PREAUTH_TIMEOUT') => void;

/** Identifies a socket by its peer's address and port: the same for a TLS socket and the TCP socket below it. */
export function socketKey(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? '?'}`;
}

export class Admission {
  /** By socketKey; insertion order is age (a `touch` moves a socket to the end). */
  private readonly pending = new Map<string, Tracked>();
  private readonly perSource = new Map<string, Set<string>>();

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
    if (socket.remoteAddress === undefined || this.pending.has(key)) {
      socket.destroy();
      return;
    }
    while (this.pending.size >= this.max) this.evict();
    const source = socket.remoteAddress;
    const tracked: Tracked = { socket, source, timer: this.arm(key) };
    this.pending.set(key, tracked);
    let keys = this.perSource.get(source);
    if (keys === undefined) this.perSource.set(source, (keys = new Set()));
    keys.add(key);
    socket.once('close', () => this.forget(key));
  }

  /** A plain HTTP request was answered on this socket: it gets a fresh deadline (keep-alive). */
  touch(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): void {
    const key = socketKey(socket);
    const tracked = this.pending.get(key);
    if (tracked === undefined) return;
    clearTimeout(tracked.timer);
    tracked.timer = this.arm(key);
    this.pending.delete(key);
    this.pending.set(key, tracked);
    const keys = this.perSource.get(tracked.source);
    keys?.delete(key);
    keys?.add(key);
  }

  /** The socket authenticated: no deadline, not counted, never evicted. */
  admit(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): void {
    this.forget(socketKey(socket));
  }

  /** Closes every socket still waiting (the server is stopping). */
  closeAll(): void {
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

  /** Closes the oldest socket of the source holding the most. */
  private evict(): void {
    let worst: Set<string> | null = null;
    for (const keys of this.perSource.values()) if (worst === null || keys.size > worst.size) worst = keys;
    const key = worst?.values().next().value;
    const tracked = key === undefined ? undefined : this.pending.get(key);
    if (key === undefined || tracked === undefined) {
      // Cannot happen (every pending key is in perSource); never loop forever on it.
      const first = this.pending.keys().next().value;
      if (first !== undefined) this.forget(first);
      return;
    }
    this.forget(key);
    tracked.socket.destroy();
    this.dropped(tracked.source, 'EVICTED');
  }

  private forget(key: string): void {
    const tracked = this.pending.get(key);
    if (tracked === undefined) return;
    clearTimeout(tracked.timer);
    this.pending.delete(key);
    const keys = this.perSource.get(tracked.source);
    keys?.delete(key);
    if (keys?.size === 0) this.perSource.delete(tracked.source);
  }
}
