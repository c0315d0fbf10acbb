/**
 * The agent's dialling side: connects, proves it holds the token, checks that the receiver holds it
 * too, and retries unreachable receivers a bounded number of times with capped, jittered backoff.
 */
import { WebSocket } from 'ws';
import { ProtocolError, WarmsyncError, describeError } from '../errors.js';
import { agentMac, macEqual, newNonce, pickProtocol, receiverMac } from '../protocol/handshake.js';
import { MAX_FRAME_BYTES, SUPPORTED_PROTOCOLS } from '../protocol/limits.js';
import type { Logger } from '../log.js';
import { Connection } from './connection.js';

export interface DialOptions {
  readonly url: string;
  readonly token: string;
  /** Connection attempts before giving up (each failed attempt waits longer, up to maxDelayMs). */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
}

export interface Session {
  readonly conn: Connection;
  readonly window: number;
  readonly maxInFlight: number;
  readonly receiverId: string;
}

export async function dial(options: DialOptions): Promise<Session> {
  let lastError: unknown = null;
  for (let attempt = 1; attempt <= options.attempts; attempt++) {
    let conn: Connection;
    try {
      conn = await openConnection(options.url, options.handshakeTimeoutMs);
    } catch (err) {
      lastError = err;
      if (attempt < options.attempts) {
        const delay = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        options.log.warn('CONNECT_RETRY', `cannot reach ${options.url} (${describeError(err)}); attempt ${attempt} of ${options.attempts}, retrying in ${Math.round(delay)} ms`);
        await new Promise((r) => setTimeout(r, delay));
      }
      continue;
    }
    // Past the TCP/WebSocket level, failures (wrong token, wrong version) are final: no retry.
    return handshake(conn, options);
  }
  throw new WarmsyncError('UNREACHABLE', `cannot reach the receiver at ${options.url} after ${options.attempts} attempts: ${describeError(lastError)}`);
}

function openConnection(url: string, timeoutMs: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, handshakeTimeout: timeoutMs });
    } catch (err) {
      reject(new WarmsyncError('BAD_URL', `invalid receiver URL ${url}: ${describeError(err)}`));
      return;
    }
    // Wrap synchronously: the receiver's hello can arrive in the same packet as the upgrade reply.
    ws.once('open', () => resolve(new Connection(ws, 'receiver')));
    ws.once('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code ?? err.message)));
  });
}

async function handshake(conn: Connection, options: DialOptions): Promise<Session> {
  try {
    const hello = await conn.nextControl(options.handshakeTimeoutMs);
    if (hello.type === 'error') throw new ProtocolError(hello.code, hello.message);
    if (hello.type !== 'hello') throw new ProtocolError('UNEXPECTED_MESSAGE', `expected hello, got ${hello.type}`);
    const protocol = pickProtocol(hello.protocols);
    if (protocol === null) {
      throw new ProtocolError('VERSION_MISMATCH', `the receiver speaks protocol ${hello.protocols.join(', ')}; this agent speaks ${SUPPORTED_PROTOCOLS.join(', ')}`);
    }
    const nonce = newNonce();
    conn.send({ type: 'auth', protocol, nonce, mac: agentMac(options.token, hello.nonce, nonce) });
    const welcome = await conn.nextControl(options.handshakeTimeoutMs);
    if (welcome.type === 'error') {
      throw new ProtocolError(welcome.code, welcome.code === 'AUTH_FAILED' ? 'authentication failed: the receiver rejected this token' : welcome.message);
    }
    if (welcome.type !== 'welcome') throw new ProtocolError('UNEXPECTED_MESSAGE', `expected welcome, got ${welcome.type}`);
    if (!macEqual(welcome.mac, receiverMac(options.token, hello.nonce, nonce))) {
      throw new ProtocolError('AUTH_FAILED', 'authentication failed: the receiver does not hold this token (is the URL right?)');
    }
    conn.markAuthenticated();
    return { conn, window: welcome.window, maxInFlight: welcome.maxInFlight, receiverId: hello.receiverId };
  } catch (err) {
    conn.close();
    if (err instanceof WarmsyncError) throw err;
    throw new ProtocolError('HANDSHAKE_FAILED', describeError(err));
  }
}
