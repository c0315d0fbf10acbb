/**
 * The agent's dialling side: connects (over TLS for wss://, trusting the system CAs, a given CA,
 * or a pinned certificate fingerprint), proves it holds the token, checks that the receiver holds
 * it too, and retries unreachable receivers a bounded number of times with capped, jittered
 * backoff. TLS failures are final: retrying cannot make a wrong certificate right.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket, type ClientOptions } from './ws.js';
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
  readonly tls?: ClientTls | undefined;
  /**
   * Ask for the manifest with `auth`, a round trip before the welcome comes back, for a session
   * whose first act is to read it (`agent --once`; Sender.fetchManifest takes the pages). Safe to
   * ask before the receiver proved it holds the token: the request carries nothing, and no page is
   * read unless the welcome's MAC checks out. A receiver takes frames in order, so the request is
   * served right after the welcome: one round trip less before the first file byte.
   */
  readonly requestManifest?: boolean;
  /** Aborted: no further attempt is made and a backoff wait ends (the dial rejects with ABORTED). */
  readonly signal?: AbortSignal;
}

/** How to trust a wss:// receiver; neither field: the system CAs. */
export interface ClientTls {
  /** PEM: the CA that signed the receiver's certificate, or the self-signed certificate itself. */
  readonly ca?: Buffer;
  /** The receiver certificate's SHA-256 fingerprint, `AB:CD:...` (uppercase): trust exactly that certificate. */
  readonly fingerprint?: string;
}

/** Certificate verification failures (node's codes): the receiver's certificate is not trusted. */
const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE', 'CERT_REJECTED', 'INVALID_CA',
]);

export interface Session {
  readonly conn: Connection;
  readonly window: number;
  /** How far the window may grow (welcome.windowMax; `window` from a version-3 receiver). */
  readonly windowMax: number;
  readonly maxInFlight: number;
  readonly receiverId: string;
  /** The protocol version agreed on. */
  readonly protocol: number;
  /** What the receiver can decompress (welcome.compression): empty from a protocol-3 receiver. */
  readonly compression: readonly string[];
  /** The manifest was asked for with the handshake (DialOptions.requestManifest). */
  readonly manifestRequested: boolean;
}

export async function dial(options: DialOptions): Promise<Session> {
  let lastError: unknown = null;
  for (let attempt = 1; attempt <= options.attempts; attempt++) {
    if (options.signal?.aborted === true) break;
    let conn: Connection;
    try {
      conn = await openConnection(options.url, options.handshakeTimeoutMs, options.tls);
    } catch (err) {
      if (err instanceof WarmsyncError && err.code.startsWith('TLS_')) throw err;
      lastError = err;
      if (attempt < options.attempts) {
        const delay = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        options.log.warn('CONNECT_RETRY', `cannot reach ${options.url} (${describeError(err)}); attempt ${attempt} of ${options.attempts}, retrying in ${Math.round(delay)} ms`);
        await sleep(delay, undefined, { signal: options.signal }).catch(() => undefined);
      }
      continue;
    }
    // Past the TCP/WebSocket level, failures (wrong token, wrong version) are final: no retry.
    return handshake(conn, options);
  }
  if (options.signal?.aborted === true) throw new WarmsyncError('ABORTED', `stopped dialling ${options.url}: the run ended before it was needed`);
  throw new WarmsyncError('UNREACHABLE', `cannot reach the receiver at ${options.url} after ${options.attempts} attempts: ${describeError(lastError)}`);
}

function openConnection(url: string, timeoutMs: number, tls: ClientTls | undefined): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const wsOptions: ClientOptions = { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, handshakeTimeout: timeoutMs };
    if (tls?.ca !== undefined) wsOptions.ca = tls.ca;
    // Pinned: the chain is not checked, the certificate itself is (below, before a byte is sent on the WebSocket).
    if (tls?.fingerprint !== undefined) wsOptions.rejectUnauthorized = false;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, wsOptions);
    } catch (err) {
      reject(new WarmsyncError('BAD_URL', `invalid receiver URL ${url}: ${describeError(err)}`));
      return;
    }
    let failed = false;
    let socket: Duplex | null = null;
    ws.once('upgrade', (res: IncomingMessage) => {
      socket = res.socket;
    });
    if (tls?.fingerprint !== undefined && url.startsWith('wss:')) {
      const pinned = tls.fingerprint;
      ws.once('upgrade', (res: IncomingMessage) => {
        const actual = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
        if (actual === pinned) return;
        failed = true;
        ws.terminate();
        reject(new WarmsyncError('TLS_FINGERPRINT', `the receiver at ${url} presented a certificate with SHA-256 fingerprint ${actual}, not the pinned ${pinned}`));
      });
    }
    // Wrap synchronously: the receiver's hello can arrive in the same packet as the upgrade reply.
    ws.once('open', () => {
      if (!failed) resolve(new Connection(ws, 'receiver', socket));
    });
    ws.once('error', (err: NodeJS.ErrnoException) => reject(tlsError(url, err) ?? new Error(err.code === 'ECONNRESET' && url.startsWith('ws:') ? 'ECONNRESET (if the receiver serves TLS, use wss://)' : err.code ?? err.message)));
  });
}

/** A TLS failure as one line that says what to do, or null for other errors. */
function tlsError(url: string, err: NodeJS.ErrnoException): WarmsyncError | null {
  const code = err.code ?? '';
  if (UNTRUSTED.has(code)) {
    return new WarmsyncError('TLS_UNTRUSTED', `the receiver's certificate at ${url} is not trusted (${code}): pass --ca FILE (its CA, or the self-signed certificate) or --tls-fingerprint SHA256`);
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return new WarmsyncError('TLS_UNTRUSTED', `the receiver's certificate at ${url} is outside its validity period (${code})`);
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new WarmsyncError('TLS_HOSTNAME', `the receiver's certificate does not name the host of ${url}: ${err.message}`);
  }
  if (code === 'EPROTO' || code.startsWith('ERR_SSL_')) {
    return new WarmsyncError('TLS_PROTOCOL', `TLS handshake with ${url} failed (${code}): is the receiver serving TLS (--tls-cert)? Use ws:// for a plain receiver`);
  }
  return null;
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
    const manifestRequested = options.requestManifest === true;
    if (manifestRequested) conn.send({ type: 'manifestRequest' });
    const welcome = await conn.nextControl(options.handshakeTimeoutMs);
    if (welcome.type === 'error') {
      throw new ProtocolError(welcome.code, welcome.code === 'AUTH_FAILED' ? 'authentication failed: the receiver rejected this token' : welcome.message);
    }
    if (welcome.type !== 'welcome') throw new ProtocolError('UNEXPECTED_MESSAGE', `expected welcome, got ${welcome.type}`);
    if (!macEqual(welcome.mac, receiverMac(options.token, hello.nonce, nonce))) {
      throw new ProtocolError('AUTH_FAILED', 'authentication failed: the receiver does not hold this token (is the URL right?)');
    }
    conn.markAuthenticated();
    return {
      conn, window: welcome.window, windowMax: welcome.windowMax ?? welcome.window, maxInFlight: welcome.maxInFlight, receiverId: hello.receiverId,
      protocol, compression: welcome.compression ?? [], manifestRequested,
    };
  } catch (err) {
    conn.close();
    if (err instanceof WarmsyncError) throw err;
    throw new ProtocolError('HANDSHAKE_FAILED', describeError(err));
  }
}
