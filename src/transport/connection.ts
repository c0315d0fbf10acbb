/**
 * A WebSocket carrying warmsync frames: decodes and validates every inbound frame before anyone sees
 * it, and gives senders backpressure (a chunk's promise settles once ws has handed it to the OS).
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { raiseMaxPayload } from './ws.js';
import { ProtocolError, describeError } from '../errors.js';
import { decodeFrame, encodeControl, encodeControlJson, type Frame, type Inflate } from '../protocol/codec.js';
import { MAX_FRAME_BYTES, MAX_HANDSHAKE_FRAME_BYTES } from '../protocol/limits.js';
import { errorMessage, type ControlMessage } from '../protocol/messages.js';

export type Peer = 'agent' | 'receiver';

export interface CloseInfo { readonly code: number; readonly reason: string }

/** WebSocket close codes warmsync uses. */
export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_POLICY = 1008;

export class Connection {
  private frameHandler: ((frame: Frame, bytes: number) => void) | null = null;
  /**
   * Frames that came while no handler was set, still encoded: each is decoded when taken, under the
   * size limit and compression in force then. The receiver's first pages (asked for with `auth`,
   * client.ts) can arrive in the same read as its welcome and must be read as authenticated.
   */
  private readonly backlog: Buffer[] = [];
  /** Waiting for ws to hand its buffered bytes to the OS (see `writable`). */
  private drainWaiters: Array<{ highWater: number; resolve: () => void }> = [];
  private failure: ProtocolError | null = null;
  /** Until the handshake succeeds, frames are held to a small size: JSON parsing costs CPU. */
  private maxFrameBytes = MAX_HANDSHAKE_FRAME_BYTES;
  /** Set once compression was negotiated (the receiver's side): zchunk frames are decompressed with it. */
  private inflate: Inflate | undefined = undefined;
  /** The socket is corked until the end of this tick (see `corkUntilNextTick`). */
  private corked = false;
  readonly closed: Promise<CloseInfo>;

  /**
   * @param peer who is at the other end: frames are validated for that direction.
   * @param socket the socket under `ws` (the upgrade's): frames sent in one tick leave it in one write.
   */
  constructor(private readonly ws: WebSocket, private readonly peer: Peer, private readonly socket: Duplex | null = null) {
    this.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // Surfaced through 'close'; but ws refuses a message over maxPayload itself, and why must be logged.
      if (err.code !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return;
      this.failure ??= new ProtocolError('FRAME_TOO_LARGE', `a message over the ${this.maxFrameBytes}-byte limit`);
      // ws has sent its close (1009) and goes on reading, to discard the rest of the frame until the
      // peer answers (up to 30 s): megabytes of garbage for the collector. Stop reading instead
      // (after ws's own resume, queued for the next tick), and give the close frame a second to go out.
      setImmediate(() => this.ws.pause());
      setTimeout(() => this.ws.terminate(), 1000).unref();
    });
    void this.closed.then(() => this.wakeDrainWaiters(true));
    ws.on('message', (data, isBinary) => {
      if (this.failure !== null) return;
      if (!isBinary) {
        this.fail(new ProtocolError('BAD_FRAME', 'text frame received; warmsync speaks binary frames only'));
        return;
      }
      const buf = toBuffer(data);
      if (this.frameHandler) this.handle(buf, this.frameHandler);
      else this.backlog.push(buf);
    });
  }

  /**
   * Pings every `intervalMs`; a peer silent for `timeoutMs` (no pong, no frame) is cut off, so a
   * half-open connection (a stalled network, a frozen peer) is noticed and the agent reconnects.
   */
  keepAlive(intervalMs: number, timeoutMs: number): void {
    ({ intervalMs, timeoutMs } = keepAliveOverride(intervalMs, timeoutMs));
    let lastHeard = Date.now();
    const heard = (): void => {
      lastHeard = Date.now();
    };
    this.ws.on('pong', heard);
    this.ws.on('message', heard);
    const timer = setInterval(() => {
      if (Date.now() - lastHeard > timeoutMs) {
        this.ws.terminate();
        return;
      }
      if (this.isOpen) this.ws.ping();
    }, intervalMs);
    timer.unref();
    void this.closed.then(() => clearInterval(timer));
  }

  /**
   * The peer proved it holds the token: full-size frames from now on. On the receiver's side ws
   * itself was holding frames to the handshake size (server.ts): raise its limit too.
   */
  markAuthenticated(): void {
    this.maxFrameBytes = MAX_FRAME_BYTES;
    if (this.peer === 'agent') raiseMaxPayload(this.ws, MAX_FRAME_BYTES);
  }

  /** Compression was negotiated: from now on zchunk frames are accepted, decompressed by `inflate`. */
  acceptCompressed(inflate: Inflate): void {
    this.inflate = inflate;
  }

  /** Stops reading the socket (TCP backpressure on the peer); a few frames already read may still arrive. */
  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  /**
   * Settles once ws holds at most `highWater` bytes not yet handed to the OS (at once if it
   * already does), or the connection closed. Producers await it so that a peer that stops reading
   * makes them stop producing instead of queueing without bound.
   */
  writable(highWater: number): Promise<void> {
    if (!this.isOpen || this.ws.bufferedAmount <= highWater) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push({ highWater, resolve }));
  }

  private wakeDrainWaiters(all = false): void {
    if (this.drainWaiters.length === 0) return;
    const buffered = this.ws.bufferedAmount;
    const still = [];
    for (const w of this.drainWaiters) {
      if (all || !this.isOpen || buffered <= w.highWater) w.resolve();
      else still.push(w);
    }
    this.drainWaiters = still;
  }

  /** The protocol error that made this side close the connection, if any. */
  get protocolFailure(): ProtocolError | null {
    return this.failure;
  }

  get isOpen(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  /** Bytes queued in ws and not yet handed to the OS. */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Delivers every frame (including those that arrived before) to `handler`, in order. */
  onFrame(handler: (frame: Frame, bytes: number) => void): void {
    this.frameHandler = handler;
    for (const buf of this.backlog.splice(0)) {
      if (this.failure !== null) return;
      this.handle(buf, handler);
    }
  }

  /** Decodes one frame and hands it to `handler`; a frame that fails to decode (or to be handled) fails the connection. */
  private handle(buf: Buffer, handler: (frame: Frame, bytes: number) => void): void {
    try {
      const frame = decodeFrame(buf, this.peer, this.maxFrameBytes, this.inflate);
      // What the frame holds in memory from now on: a decompressed chunk's data, not its wire bytes.
      handler(frame, frame.kind === 'chunk' ? Math.max(buf.byteLength, frame.data.byteLength) : buf.byteLength);
    } catch (err) {
      this.fail(err instanceof ProtocolError ? err : new ProtocolError('BAD_FRAME', describeError(err)));
    }
  }

  /** Waits for the next control message (handshake steps); rejects on close, timeout or a chunk. */
  nextControl(timeoutMs: number): Promise<ControlMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.frameHandler = null;
        reject(new ProtocolError('TIMEOUT', `no message from the ${this.peer} within ${timeoutMs} ms`));
      }, timeoutMs);
      void this.closed.then((info) => {
        clearTimeout(timer);
        reject(this.failure ?? new ProtocolError('CLOSED', `the ${this.peer} closed the connection${info.reason ? `: ${info.reason}` : ''}`));
      });
      const first = this.backlog.shift();
      const take = (frame: Frame): void => {
        clearTimeout(timer);
        this.frameHandler = null;
        if (frame.kind === 'control') resolve(frame.message);
        else reject(new ProtocolError('UNEXPECTED_MESSAGE', 'file data before the handshake finished'));
      };
      if (first !== undefined) this.handle(first, take);
      else this.frameHandler = take;
    });
  }

  send(message: ControlMessage): void {
    this.sendFrame(encodeControl(message));
  }

  /** Sends a control message its sender encoded itself (the receiver's manifest pages). */
  sendJson(json: string, type: ControlMessage['type']): void {
    this.sendFrame(encodeControlJson(json, type));
  }

  private sendFrame(frame: Buffer): void {
    if (!this.isOpen) return;
    this.corkUntilNextTick();
    // ws calls back as each frame reaches the OS: the moment to wake a producer waiting in `writable`.
    this.ws.send(frame, () => this.wakeDrainWaiters());
  }

  /**
   * Holds what is sent until the current tick ends, so that the frames of one turn (a small file's
   * fileBegin and chunk, a run of small files, a batch of results) reach the OS in one writev
   * rather than a write each: each write cost the agent 13-16 us of its 66 us a small file. ws
   * corks around each frame itself; corks nest, so its uncork leaves ours in place.
   */
  private corkUntilNextTick(): void {
    if (this.corked || this.socket === null) return;
    const socket = this.socket;
    this.corked = true;
    socket.cork();
    process.nextTick(() => {
      this.corked = false;
      socket.uncork();
    });
  }

  /**
   * Sends a chunk frame built with frameChunkInPlace; settles once ws has written it to the socket
   * (or the connection closed). The agent may refill `frame` as soon as this returns: ws masks a
   * client's frame into a copy of its own before `send` returns (RFC 6455: every client frame is
   * masked; test/unit/transport/connection.test.ts pins it). A server's frames are not masked, ws
   * would hold `frame` itself until written, so only the agent's side may call this.
   */
  sendChunkFrame(frame: Buffer): Promise<void> {
    if (this.peer !== 'receiver') throw new Error('sendChunkFrame: only the agent sends file data');
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new ProtocolError('CLOSED', 'connection closed'));
        return;
      }
      this.corkUntilNextTick();
      this.ws.send(frame, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Tells the peer why (an `error` message), then closes. */
  fail(error: ProtocolError): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.send(errorMessage(error.code, error.message));
    this.close(CLOSE_PROTOCOL_ERROR, error.code);
  }

  close(code = CLOSE_NORMAL, reason = ''): void {
    if (this.ws.readyState === this.ws.CLOSED) return;
    this.ws.close(code, reason.slice(0, 120));
    // A peer that never answers the close handshake must not keep us waiting.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

/**
 * WARMSYNC_KEEPALIVE_MS (undocumented in --help; docs/reliability.md): the silence after which a
 * peer is cut off, pinging four times as often. The fault tests stall links and must not wait 20 s.
 */
function keepAliveOverride(intervalMs: number, timeoutMs: number): { intervalMs: number; timeoutMs: number } {
  const value = Number(process.env['WARMSYNC_KEEPALIVE_MS']);
  if (!Number.isInteger(value) || value < 100) return { intervalMs, timeoutMs };
  return { intervalMs: Math.max(25, Math.floor(value / 4)), timeoutMs: value };
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
