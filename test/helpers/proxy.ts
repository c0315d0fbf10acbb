/**
 * A TCP proxy on 127.0.0.1 that the fault tests put between agent and receiver to play a bad
 * network: latency, a bandwidth cap, connections cut mid-stream, and connections stalled without
 * being closed (half-open: nothing moves, neither side hears a FIN or RST). Settings apply to
 * whatever is forwarded next; stall() and cut() act on the connections open at that moment, and
 * faultAfter() makes one of them happen at an exact byte of the agent's stream.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface ProxySettings {
  /** Added to every forwarded chunk, each direction. */
  latencyMs: number;
  /** Bytes per second per direction and connection; 0 = unlimited. */
  bytesPerSec: number;
}

interface Link { readonly client: Socket; readonly upstream: Socket; stalled: boolean; forwarded: number }

/** A fault waiting for its byte (faultAfter). */
interface Armed { readonly kind: 'cut' | 'stall'; readonly bytes: number; seen: number; readonly fired: () => void }

export class FaultProxy {
  readonly settings: ProxySettings = { latencyMs: 0, bytesPerSec: 0 };
  /** Connections accepted so far (a reconnecting agent makes a new one). */
  connections = 0;
  cuts = 0;
  stalls = 0;
  private readonly links = new Set<Link>();
  private armed: Armed | null = null;

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    let proxy: FaultProxy | null = null;
    const server = createServer((client) => proxy?.accept(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new FaultProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Bytes forwarded agent -> receiver on the connections open now. */
  get forwardedNow(): number {
    let n = 0;
    for (const link of this.links) if (!link.stalled) n += link.forwarded;
    return n;
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    this.connections++;
    const upstream = connect(target.port, target.host);
    const link: Link = { client, upstream, stalled: false, forwarded: 0 };
    this.links.add(link);
    const drop = (): void => {
      if (link.stalled) return; // half-open: the other side must find out by itself
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', drop);
      socket.on('close', drop);
    }
    this.pump(link, client, upstream, true);
    this.pump(link, upstream, client, false);
  }

  /** Forwards `from` to `to` one chunk at a time, each held back by the latency and the cap. */
  private pump(link: Link, from: Socket, to: Socket, counts: boolean): void {
    from.on('data', (chunk: Buffer) => {
      if (link.stalled) return;
      if (counts && this.trip(chunk.length)) return;
      from.pause();
      const { latencyMs, bytesPerSec } = this.settings;
      const delay = latencyMs + (bytesPerSec > 0 ? (chunk.length / bytesPerSec) * 1000 : 0);
      const forward = (): void => {
        if (link.stalled || to.destroyed) return;
        if (counts) link.forwarded += chunk.length;
        to.write(chunk, () => {
          if (!link.stalled) from.resume();
        });
      };
      if (delay >= 1) setTimeout(forward, delay);
      else forward();
    });
  }

  /**
   * Arms a fault: once `bytes` more bytes have come from the agent (over any connection), every
   * open connection is cut or stalled, before the chunk that reaches that byte is forwarded.
   * Resolves when it has happened; `armedSeen` tells how far it got until then.
   */
  faultAfter(bytes: number, kind: 'cut' | 'stall'): Promise<void> {
    if (this.armed !== null) throw new Error('a fault is armed already');
    return new Promise((resolve) => {
      this.armed = { kind, bytes, seen: 0, fired: resolve };
    });
  }

  /** Bytes from the agent counted by the armed fault so far (0 when none is armed). */
  get armedSeen(): number {
    return this.armed?.seen ?? 0;
  }

  /** Counts `n` bytes from the agent against the armed fault; true when that fired it. */
  private trip(n: number): boolean {
    const armed = this.armed;
    if (armed === null) return false;
    armed.seen += n;
    if (armed.seen < armed.bytes) return false;
    this.armed = null;
    if (armed.kind === 'cut') this.cut();
    else this.stall();
    armed.fired();
    return true;
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
