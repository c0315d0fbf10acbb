/**
 * A hand-driven agent for hostile-peer tests: a real WebSocket to the receiver, the real codec and
 * handshake (src/protocol) to authenticate, then whatever bytes the test wants to send. It records
 * every message the receiver sends back and how the connection ended.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { decodeFrame, encodeChunk, encodeControl } from '../../src/protocol/codec.js';
import { agentMac, newNonce } from '../../src/protocol/handshake.js';
import { CHUNK_HEADER_BYTES, FRAME_ZCHUNK, PROTOCOL_VERSION, ZCHUNK_HEADER_BYTES } from '../../src/protocol/limits.js';
import type { ControlMessage, ReceiverMessage, ResultItem } from '../../src/protocol/messages.js';
import { buildTree, openStandby, settleTimes, syncOnce, type Standby } from './e2e.js';

/**
 * A standby for hostile-peer tests: synced once with a file, an empty dir and a symlink to aim at,
 * and `outside`, a directory beside the standby root that nothing may ever write into.
 */
export async function openTargetStandby(): Promise<{ s: Standby; outside: string }> {
  const s = await openStandby();
  const outside = join(s.dir, 'outside');
  await mkdir(outside);
  await buildTree(s.src, {
    'etc/system.yaml': 'shared: {}\n',
    'data/filestore/ab/abcdef': randomBytes(3000),
    'data/empty': { dir: true },
    'links/current': { symlink: '../etc/system.yaml' },
  });
  await settleTimes(s.src);
  await syncOnce(s);
  return { s, outside };
}

export interface Closed { code: number; reason: string }

/** A `fileBegin` for any path (also ones the typed encoder would refuse); send it with sendJson. */
export function fileBegin(op: number, path: unknown, size: number, hash: string | null = '0123456789abcdef'): object {
  return { type: 'fileBegin', op, path, size, mtimeMs: Date.parse('2025-01-01T00:00:00Z'), mode: 0o644, hash, old: null };
}

export class RawPeer {
  readonly messages: ReceiverMessage[] = [];
  readonly closed: Promise<Closed>;
  private closedInfo: Closed | null = null;
  private waiters: Array<() => void> = [];
  private nextFlush = 1_000_000;

  private constructor(private readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => {
      this.closedInfo = { code, reason: reason.toString() };
      this.wake();
      resolve(this.closedInfo);
    }));
    ws.on('error', () => undefined);
    ws.on('message', (data: Buffer) => {
      this.messages.push(decodeFrame(data, 'receiver').message);
      this.wake();
    });
  }

  static connect(url: string, timeoutMs = 10_000): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs, maxPayload: 64 << 20 });
      const peer = new RawPeer(ws);
      ws.once('open', () => resolve(peer));
      ws.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The first message satisfying `pick`, or null once the connection closed or `timeoutMs` passed. */
  async waitFor(pick: (m: ReceiverMessage) => boolean, timeoutMs = 10_000): Promise<ReceiverMessage | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(pick);
      if (found !== undefined) return found;
      if (this.closedInfo !== null || Date.now() > deadline) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The receiver's hello (its nonce). */
  async hello(): Promise<Extract<ReceiverMessage, { type: 'hello' }>> {
    const hello = await this.waitFor((m) => m.type === 'hello');
    if (hello?.type !== 'hello') throw new Error(`no hello from the receiver: ${JSON.stringify(this.messages)}`);
    return hello;
  }

  /** The `auth` message a real agent (speaking `protocol`) would send after `hello`. */
  static authFor(token: string, receiverNonce: string, protocol = PROTOCOL_VERSION): ControlMessage {
    const nonce = newNonce();
    return { type: 'auth', protocol, nonce, mac: agentMac(token, receiverNonce, nonce) };
  }

  /** Authenticates as a real agent (speaking `protocol`) does; returns the auth message sent (to replay it elsewhere). */
  async authenticate(token: string, protocol = PROTOCOL_VERSION): Promise<ControlMessage> {
    const hello = await this.hello();
    const auth = RawPeer.authFor(token, hello.nonce, protocol);
    this.send(auth);
    if ((await this.waitFor((m) => m.type === 'welcome')) === null) throw new Error(`not welcomed: ${JSON.stringify(this.messages)}`);
    return auth;
  }

  send(msg: ControlMessage): void {
    this.ws.send(encodeControl(msg));
  }

  /** A control frame holding any JSON at all (fields the typed encoder would refuse). */
  sendJson(obj: unknown): void {
    this.sendRaw(Buffer.concat([Buffer.from([0x01]), Buffer.from(JSON.stringify(obj))]));
  }

  sendChunk(transferId: number, offset: number, data: Buffer): void {
    this.sendRaw(encodeChunk(transferId, offset, data));
  }

  /**
   * A zchunk frame: `payload` as the compressed data, claiming `rawLength` bytes once decompressed
   * (any uint32, also lengths the typed encoder would refuse). `offset` below 2^32.
   */
  sendZchunk(transferId: number, offset: number, rawLength: number, payload: Buffer): void {
    const header = Buffer.alloc(ZCHUNK_HEADER_BYTES);
    header[0] = FRAME_ZCHUNK;
    header.writeUInt32BE(transferId, 1);
    header.writeUInt32BE(offset, 9);
    header.writeUInt32BE(rawLength, CHUNK_HEADER_BYTES);
    this.sendRaw(Buffer.concat([header, payload]));
  }

  sendRaw(data: Buffer | string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
  }

  /** Sends a flush; returns every result received before `flushed`, or null when the connection closed. */
  async flush(timeoutMs = 10_000): Promise<ResultItem[] | null> {
    const id = this.nextFlush++;
    this.send({ type: 'flush', id });
    const done = await this.waitFor((m) => m.type === 'flushed' && m.id === id, timeoutMs);
    return done === null ? null : this.messages.flatMap((m) => (m.type === 'results' ? m.items : []));
  }

  /** The `error` the receiver sent before closing, if any. */
  get error(): { code: string; message: string } | null {
    const e = this.messages.find((m) => m.type === 'error');
    return e?.type === 'error' ? { code: e.code, message: e.message } : null;
  }

  get isClosed(): boolean {
    return this.closedInfo !== null;
  }

  /** How the connection ended, or null if it is still open after `timeoutMs`. */
  closedWithin(timeoutMs: number): Promise<Closed | null> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    return Promise.race([this.closed, expired]).finally(() => clearTimeout(timer));
  }

  /** Closes (if still open) and waits, bounded, for the close to complete. */
  async close(timeoutMs = 5_000): Promise<Closed | null> {
    if (this.closedInfo === null) this.ws.close();
    const result = await this.closedWithin(timeoutMs);
    if (result === null) this.ws.terminate();
    return result;
  }

  /** Stops reading the socket (a peer that sends but never reads what the receiver sends). */
  pauseReading(): void {
    this.ws.pause();
  }

  /** Drops the TCP connection without a close frame (a peer that vanished mid-transfer). */
  terminate(timeoutMs = 5_000): Promise<Closed | null> {
    this.ws.terminate();
    return this.closedWithin(timeoutMs);
  }
}
