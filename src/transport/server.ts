/**
 * The receiver's listening side: one HTTP (or, with a certificate, HTTPS) server carrying the
 * WebSocket endpoint and the plain HTTP endpoints. Authenticates each agent with the HMAC challenge-response before handing over
 * the connection, and admits one agent at a time. Before authentication a peer costs a few KiB
 * and a bounded number of sockets for a bounded time (DESIGN.md, invariant 3; ./limits.ts).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from './ws.js';
import { Admission } from './admission.js';
import { AuthBackoff } from './backoff.js';
import { ProtocolError, WarmsyncError, describeError } from '../errors.js';
import { agentMac, macEqual, newNonce, receiverMac } from '../protocol/handshake.js';
import { COMPRESSION_METHODS } from '../protocol/compression.js';
import { COMPRESSION_PROTOCOL, SUPPORTED_PROTOCOLS, WINDOW_MAX_SINCE } from '../protocol/limits.js';
import { ChunkInflater, zstdUnavailable } from './zstd.js';
import type { Logger } from '../log.js';
import { CLOSE_POLICY, Connection } from './connection.js';
import {
  FD_RESERVE, HTTP_HEADERS_TIMEOUT_MS, HTTP_REQUEST_TIMEOUT_MS, HTTP_TIMEOUT_CHECK_MS, MAX_SOCKETS, MAX_UNAUTHENTICATED_SOCKETS,
  PREAUTH_MAX_PAYLOAD,
} from './limits.js';
import { RejectLog } from './ratelog.js';

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  readonly receiverId: string;
  /** Bytes of file data an agent may have sent and not yet had credited back. */
  readonly window: number;
  /** The most an agent may grow its window to on a long fat link (sent to agents of protocol 4 and later). */
  readonly windowMax: number;
  /** Files an agent may have in transfer at once. */
  readonly maxInFlight: number;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
  /** Called with an authenticated connection; the returned promise settles when the session ends. */
  readonly onSession: (conn: Connection, remote: string) => Promise<void>;
  /** Plain HTTP requests (anything that is not a WebSocket upgrade). */
  readonly onHttp?: (req: IncomingMessage, res: ServerResponse) => void;
  /** PEM certificate (chain) and key: serve wss:// and https:// instead of ws:// and http://. */
  readonly tls?: ServerTls | null;
}

export interface ServerTls { readonly cert: Buffer; readonly key: Buffer }

export interface RunningServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const rejected = new RejectLog(options.log);
  const maxSockets = socketCap(options.log);
  // Under a low fd limit, unauthenticated sockets get half of what there is.
  const admission = new Admission((source, why) => {
    rejected.note(why, source, why === 'EVICTED'
      ? `closed an unauthenticated connection from ${source}: too many unauthenticated connections`
      : `closed a connection from ${source}: not authenticated within the deadline`);
  }, Math.min(MAX_UNAUTHENTICATED_SOCKETS, Math.floor(maxSockets / 2)));
  const backoff = new AuthBackoff();
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    admission.progressed(req.socket);
    res.once('finish', () => admission.touch(req.socket));
    if (options.onHttp) options.onHttp(req, res);
    else res.writeHead(404).end();
  };
  const tls = options.tls ?? null;
  const serverOptions = { headersTimeout: HTTP_HEADERS_TIMEOUT_MS, requestTimeout: HTTP_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: HTTP_TIMEOUT_CHECK_MS };
  const http = tls === null
    ? createServer(serverOptions, onRequest)
    : createTlsServer({ ...serverOptions, cert: tls.cert, key: tls.key }, onRequest);
  http.maxConnections = maxSockets;
  // Every TCP socket (TLS or not) is unauthenticated until its agent proves the token.
  http.on('connection', (socket: Socket) => admission.accepted(socket));
  // A client that fails the TLS handshake (an agent without --ca, a port scanner) is no news.
  http.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    options.log.debug(`TLS handshake with ${socket.remoteAddress ?? '?'} failed: ${err.code ?? err.message}`);
  });
  // Compression off: it would cost far more CPU than it saves on already-compressed binaries.
  // maxPayload: the handshake's size until the peer authenticates (ws checks it on each frame's
  // header, before buffering); Connection.markAuthenticated raises it for that socket.
  const wss = new WebSocketServer({
    server: http, maxPayload: PREAUTH_MAX_PAYLOAD, perMessageDeflate: false,
    // A source backing off after failed authentications is turned away before any WebSocket work.
    verifyClient: (info, done) => {
      const source = info.req.socket.remoteAddress ?? '?';
      const wait = backoff.waitFor(source);
      if (wait === 0) return done(true);
      rejected.note('AUTH_BACKOFF', source, `turned away ${source}: it failed to authenticate too often; it may try again in ${Math.ceil(wait / 1000)} s`);
      done(false, 429, 'Too Many Requests', { 'retry-after': String(Math.ceil(wait / 1000)) });
    },
  });
  let active: Connection | null = null;

  wss.on('connection', (ws, req) => {
    const source = req.socket.remoteAddress ?? '?';
    const remote = `${source}:${req.socket.remotePort ?? '?'}`;
    const conn = new Connection(ws, 'agent', req.socket);
    admission.progressed(req.socket);
    void (async () => {
      try {
        await authenticate(conn, options);
      } catch (err) {
        const error = err instanceof ProtocolError ? err : new ProtocolError('HANDSHAKE_FAILED', describeError(err));
        let note = '';
        if (error.code === 'AUTH_FAILED') {
          const wait = backoff.failed(source);
          if (wait > 0) note = `; ${source} must wait ${Math.ceil(wait / 1000)} s before it tries again`;
        }
        rejected.note(error.code, source, `rejected connection from ${remote}: ${error.message}${note}`);
        conn.fail(error);
        return;
      }
      backoff.succeeded(source);
      if (active !== null) {
        options.log.warn('BUSY', `rejected agent from ${remote}: another agent is connected`);
        conn.send({ type: 'error', code: 'BUSY', message: 'another agent is connected to this receiver' });
        conn.close(CLOSE_POLICY, 'BUSY');
        return;
      }
      active = conn;
      admission.admit(req.socket);
      // A vanished agent must not hold the one agent slot forever.
      conn.keepAlive(5_000, 20_000);
      try {
        await options.onSession(conn, remote);
      } catch (err) {
        options.log.error('SESSION_FAILED', `session with ${remote} failed: ${describeError(err)}`);
        conn.close();
      } finally {
        active = null;
      }
    })();
  });

  // ws re-emits every error of the HTTP server on itself: unheard there, a port already taken was
  // an uncaught 'error' event (a stack trace, and no clean stop) instead of LISTEN_FAILED. Once
  // listening, the server's errors are its accept(2)'s (EMFILE): it goes on serving, so they are logged.
  let listening = false;
  wss.on('error', (err: NodeJS.ErrnoException) => {
    if (listening) options.log.warn('ACCEPT_FAILED', `accepting a connection failed: ${err.code ?? describeError(err)}`);
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', (err: NodeJS.ErrnoException) => {
      if (!listening) reject(new WarmsyncError('LISTEN_FAILED', `cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}`, { cause: err }));
    });
    http.listen(options.port, options.host, () => {
      listening = true;
      resolve();
    });
  });
  const address = http.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `${tls === null ? 'ws' : 'wss'}://${host}:${address.port}`,
    close: () => new Promise<void>((resolve) => {
      rejected.flush();
      for (const client of wss.clients) client.terminate();
      wss.close(() => http.close(() => resolve()));
      http.closeAllConnections();
      admission.closeAll();
    }),
  };
}

/**
 * MAX_SOCKETS, or fewer when the process may open fewer descriptors than that plus FD_RESERVE
 * (Linux: /proc/self/limits; elsewhere MAX_SOCKETS as is).
 */
function socketCap(log: Logger): number {
  let limit = Infinity;
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) limit = Number(m[1]);
  } catch {
    // Not Linux: keep the constant.
  }
  if (limit >= MAX_SOCKETS + FD_RESERVE) return MAX_SOCKETS;
  const cap = Math.max(16, limit - FD_RESERVE);
  log.warn('FD_LIMIT', `the open file limit is ${limit}: at most ${cap} sockets instead of ${MAX_SOCKETS}${cap < 2 * MAX_UNAUTHENTICATED_SOCKETS ? ` and ${Math.floor(cap / 2)} unauthenticated` : ''}; raise it (systemd: LimitNOFILE=) to at least ${MAX_SOCKETS + FD_RESERVE}`);
  return cap;
}

async function authenticate(conn: Connection, options: ServerOptions): Promise<void> {
  const nonce = newNonce();
  conn.send({ type: 'hello', protocols: [...SUPPORTED_PROTOCOLS], nonce, receiverId: options.receiverId });
  const auth = await conn.nextControl(options.handshakeTimeoutMs);
  if (auth.type !== 'auth') throw new ProtocolError('UNEXPECTED_MESSAGE', `expected auth, got ${auth.type}`);
  if (!SUPPORTED_PROTOCOLS.includes(auth.protocol)) {
    throw new ProtocolError('VERSION_MISMATCH', `agent asked for protocol ${auth.protocol}; this receiver speaks ${SUPPORTED_PROTOCOLS.join(', ')}`);
  }
  if (!macEqual(auth.mac, agentMac(options.token, nonce, auth.nonce))) {
    throw new ProtocolError('AUTH_FAILED', 'authentication failed: the agent does not hold this receiver\'s token');
  }
  conn.markAuthenticated();
  // A version-3 agent rejects keys it does not know: windowMax and compression go only to one that chose 4 or later.
  const windowMax = auth.protocol >= WINDOW_MAX_SINCE ? { windowMax: Math.max(options.window, options.windowMax) } : {};
  const compression = auth.protocol >= COMPRESSION_PROTOCOL ? offerCompression(conn, options.log) : null;
  conn.send({
    type: 'welcome', mac: receiverMac(options.token, nonce, auth.nonce), window: options.window, ...windowMax, maxInFlight: options.maxInFlight,
    ...(compression === null ? {} : { compression }),
  });
}

let zstdMissingLogged = false;

/** The methods this receiver decompresses, "zstd" unless its addon failed to load (then none, logged once). */
function offerCompression(conn: Connection, log: Logger): string[] {
  const missing = zstdUnavailable();
  if (missing !== null) {
    if (!zstdMissingLogged) log.warn('ZSTD_UNAVAILABLE', `zstd cannot be loaded (${missing}); agents asking for --compress zstd send uncompressed`);
    zstdMissingLogged = true;
    return [];
  }
  conn.acceptCompressed(new ChunkInflater().inflate);
  return [...COMPRESSION_METHODS];
}
