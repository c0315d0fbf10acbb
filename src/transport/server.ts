/**
 * The receiver's listening side: one HTTP (or, with a certificate, HTTPS) server carrying the
 * WebSocket endpoint and the plain HTTP endpoints. Authenticates each agent with the HMAC challenge-response before handing over
 * the connection, and admits one agent at a time.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from './ws.js';
import { ProtocolError, WarmsyncError, describeError } from '../errors.js';
import { agentMac, macEqual, newNonce, receiverMac } from '../protocol/handshake.js';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION, SUPPORTED_PROTOCOLS } from '../protocol/limits.js';
import type { Logger } from '../log.js';
import { CLOSE_POLICY, Connection } from './connection.js';

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  readonly receiverId: string;
  /** Bytes of file data an agent may have sent and not yet had credited back. */
  readonly window: number;
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
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (options.onHttp) options.onHttp(req, res);
    else res.writeHead(404).end();
  };
  const tls = options.tls ?? null;
  const http = tls === null ? createServer(onRequest) : createTlsServer({ cert: tls.cert, key: tls.key }, onRequest);
  // A client that fails the TLS handshake (an agent without --ca, a port scanner) is no news.
  http.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    options.log.debug(`TLS handshake with ${socket.remoteAddress ?? '?'} failed: ${err.code ?? err.message}`);
  });
  // Compression off: it would cost far more CPU than it saves on already-compressed binaries.
  const wss = new WebSocketServer({ server: http, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  let active: Connection | null = null;

  wss.on('connection', (ws, req) => {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const conn = new Connection(ws, 'agent');
    void (async () => {
      try {
        await authenticate(conn, options);
      } catch (err) {
        const error = err instanceof ProtocolError ? err : new ProtocolError('HANDSHAKE_FAILED', describeError(err));
        options.log.warn(error.code, `rejected connection from ${remote}: ${error.message}`);
        conn.fail(error);
        return;
      }
      if (active !== null) {
        options.log.warn('BUSY', `rejected agent from ${remote}: another agent is connected`);
        conn.send({ type: 'error', code: 'BUSY', message: 'another agent is connected to this receiver' });
        conn.close(CLOSE_POLICY, 'BUSY');
        return;
      }
      active = conn;
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

  await new Promise<void>((resolve, reject) => {
    http.once('error', (err: NodeJS.ErrnoException) => {
      reject(new WarmsyncError('LISTEN_FAILED', `cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}`, { cause: err }));
    });
    http.listen(options.port, options.host, () => resolve());
  });
  const address = http.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `${tls === null ? 'ws' : 'wss'}://${host}:${address.port}`,
    close: () => new Promise<void>((resolve) => {
      for (const client of wss.clients) client.terminate();
      wss.close(() => http.close(() => resolve()));
      http.closeAllConnections();
    }),
  };
}

async function authenticate(conn: Connection, options: ServerOptions): Promise<void> {
  const nonce = newNonce();
  conn.send({ type: 'hello', protocols: [...SUPPORTED_PROTOCOLS], nonce, receiverId: options.receiverId });
  const auth = await conn.nextControl(options.handshakeTimeoutMs);
  if (auth.type !== 'auth') throw new ProtocolError('UNEXPECTED_MESSAGE', `expected auth, got ${auth.type}`);
  if (auth.protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError('VERSION_MISMATCH', `agent asked for protocol ${auth.protocol}; this receiver speaks ${SUPPORTED_PROTOCOLS.join(', ')}`);
  }
  if (!macEqual(auth.mac, agentMac(options.token, nonce, auth.nonce))) {
    throw new ProtocolError('AUTH_FAILED', 'authentication failed: the agent does not hold this receiver\'s token');
  }
  conn.markAuthenticated();
  conn.send({ type: 'welcome', mac: receiverMac(options.token, nonce, auth.nonce), window: options.window, maxInFlight: options.maxInFlight });
}
