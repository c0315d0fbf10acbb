/**
 * A TCP proxy on 127.0.0.1 that the fault tests put between agent and receiver to play a bad
 * network: latency, a bandwidth cap, connections cut mid-stream, and connections stalled without
 * being closed (half-open: nothing moves, neither side hears a FIN or RST). Settings apply to
 * whatever is forwarded next; stall() and cut() act on the connections open at that moment.
 * holdAfter() plays a link that goes quiet at an exact byte of the agent's stream, and faultAfter()
 * cuts or stalls it there: a fault test acts at that point of the run's own progress, not at a
 * wall-clock moment that a fast machine may already have passed.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface ProxySettings {
  /** One-way delay, each direction, on top of the time the cap takes: the round trip is twice this. */
  latencyMs: number;
  /** Bytes per second per direction and connection; 0 = unlimited. */
  bytesPerSec: number;
}

/** Bytes waiting to be serialized onto a capped link before the sender is paused: a router's queue. */
const LINK_QUEUE_BYTES = 256 * 1024;

interface Link {
  readonly client: Socket; readonly upstream: Socket; stalled: boolean;
  /** Agent -> receiver bytes read but not forwarded while a hold is on (see holdAfter). */
  held: Buffer[];
}

/** A hold in force: how many more agent -> receiver bytes may pass, and who waits for it to bite. */
interface Hold { readonly bytes: number; budget: number; readonly reached: () => void }

export class FaultProxy {
  readonly settings: ProxySettings = { latencyMs: 0, bytesPerSec: 0 };
  /** Connections accepted so far (a reconnecting agent makes a new one). */
  connections = 0;
  cuts = 0;
  stalls = 0;
  private readonly links = new Set<Link>();
  private hold: Hold | null = null;

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    let proxy: FaultProxy | null = null;
    // Half-open allowed: an end is passed on once what was sent before it has crossed the link.
    const server = createServer({ allowHalfOpen: true }, (client) => proxy?.accept(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new FaultProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    this.connections++;
    const upstream = connect({ port: target.port, host: target.host, allowHalfOpen: true });
    const link: Link = { client, upstream, stalled: false, held: [] };
    this.links.add(link);
    const drop = (): void => {
      if (link.stalled) return; // half-open: the other side must find out by itself
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    let closed = 0;
    for (const socket of [client, upstream]) {
      socket.on('error', drop);
      // A reset (or a failed write) takes the other side down at once; an orderly end was passed on by pump().
      socket.on('close', (hadError) => {
        if (hadError) drop();
        else if (++closed === 2) this.links.delete(link);
      });
    }
    this.pump(link, client, upstream, true);
    this.pump(link, upstream, client, false);
  }

  /**
   * Forwards `from` to `to` as a link would: each chunk is serialized at the cap (one after another:
   * the link's clock) and then arrives `latencyMs` later, with chunks in flight together, so a
   * stream fills the pipe as over a real long link (the bandwidth-delay product in flight). `from`
   * is paused while more than LINK_QUEUE_BYTES wait to be serialized (a router's queue), and while
   * `to` is backed up, so the proxy holds bounded memory and the sender feels backpressure.
   */
  private pump(link: Link, from: Socket, to: Socket, fromAgent: boolean): void {
    const line: Array<{ chunk: Buffer; due: number }> = [];
    let linkFreeAt = 0;
    let waiting = 0; // bytes not yet serialized
    let timer: NodeJS.Timeout | null = null;
    let blocked = false; // `to` asked us to wait for 'drain'
    let ended = false; // `from` ended: `to` is ended once the line is empty
    const resume = (): void => {
      if (!link.stalled && link.held.length === 0 && !blocked && waiting <= LINK_QUEUE_BYTES) from.resume();
    };
    const deliver = (): void => {
      timer = null;
      const now = performance.now();
      // The same threshold as schedule()'s, so that what it hands here is always delivered.
      while (line.length > 0 && (line[0] as { due: number }).due - now < 1) {
        const { chunk } = line.shift() as { chunk: Buffer };
        if (link.stalled || to.destroyed) return;
        const ok = to.write(chunk, () => {
          if (fromAgent && link.held.length > 0) this.hold?.reached();
        });
        if (!ok && !blocked) {
          blocked = true;
          to.once('drain', () => {
            blocked = false;
            resume();
          });
        }
      }
      schedule();
    };
    const schedule = (): void => {
      const next = line[0];
      if (next === undefined && ended && !link.stalled && !to.destroyed) to.end();
      if (next === undefined || timer !== null) return;
      const delay = next.due - performance.now();
      if (delay < 1) deliver();
      else timer = setTimeout(deliver, delay);
    };
    from.on('end', () => {
      ended = true;
      schedule();
    });
    from.on('data', (data: Buffer) => {
      if (link.stalled) return;
      const chunk = fromAgent ? this.takeHeld(link, data) : data;
      if (chunk.length === 0) {
        from.pause(); // all of it held: `from` stays paused until release()
        return;
      }
      if (link.held.length > 0) from.pause();
      const { latencyMs, bytesPerSec } = this.settings;
      const now = performance.now();
      const serialized = bytesPerSec > 0 ? (chunk.length / bytesPerSec) * 1000 : 0;
      linkFreeAt = Math.max(now, linkFreeAt) + serialized;
      waiting += chunk.length;
      const sentAt = linkFreeAt;
      // The chunk leaves the queue once serialized: only then may `from` send more.
      const leave = (): void => {
        waiting -= chunk.length;
        resume();
      };
      if (sentAt - now >= 1) setTimeout(leave, sentAt - now);
      else waiting -= chunk.length;
      if (waiting > LINK_QUEUE_BYTES) from.pause();
      line.push({ chunk, due: sentAt + latencyMs });
      schedule();
    });
  }

  /** Splits `data` at the hold's budget: returns what may pass now and keeps the rest on `link`. */
  private takeHeld(link: Link, data: Buffer): Buffer {
    const hold = this.hold;
    if (hold === null) return data;
    const pass = Math.min(hold.budget, data.length);
    hold.budget -= pass;
    if (pass < data.length) link.held.push(data.subarray(pass));
    if (pass === 0) hold.reached();
    return data.subarray(0, pass);
  }

  /**
   * Lets `bytes` more agent -> receiver bytes through (all connections together), then holds every
   * later one without closing anything. Resolves once the receiver side has been handed exactly
   * those bytes and the next one is held; the stream then stays still until release().
   */
  holdAfter(bytes: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.hold !== null) throw new Error('a hold is in force already');
      this.hold = { bytes, budget: bytes, reached: resolve };
    });
  }

  /** Agent -> receiver bytes let through since the hold in force began (0 when none is). */
  get holdSeen(): number {
    return this.hold === null ? 0 : this.hold.bytes - this.hold.budget;
  }

  /**
   * Cuts or stalls every open connection once `bytes` more bytes have come from the agent (over any
   * connection): exactly those bytes reach the receiver. Resolves when the fault has happened.
   */
  async faultAfter(bytes: number, kind: 'cut' | 'stall'): Promise<void> {
    await this.holdAfter(bytes);
    if (kind === 'cut') this.cut();
    else this.stall();
    this.release();
  }

  /** Ends the hold: what was held is forwarded and the links flow again. */
  release(): void {
    this.hold = null;
    for (const link of this.links) {
      const held = link.held.splice(0);
      if (held.length === 0 || link.stalled || link.upstream.destroyed) continue;
      link.upstream.write(Buffer.concat(held), () => link.client.resume());
    }
  }

  /** Cuts every open connection at once (RST on both sides), as a dropped link would. */
  cut(): void {
    for (const link of this.links) {
      if (link.stalled) continue;
      this.cuts++;
      this.links.delete(link);
      link.client.resetAndDestroy();
      link.upstream.resetAndDestroy();
    }
  }

  /** Stops every open connection dead without closing it: no data, no FIN, no RST. */
  stall(): void {
    for (const link of this.links) {
      if (link.stalled) continue;
      this.stalls++;
      link.stalled = true;
      link.client.pause();
      link.upstream.pause();
    }
  }

  async close(): Promise<void> {
    for (const link of this.links) {
      link.client.destroy();
      link.upstream.destroy();
    }
    this.links.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
