/**
 * The live agent's own HTTP endpoint (`--metrics-listen HOST:PORT`, opt-in): GET /healthz (JSON,
 * no secrets: per standby, connected or not, W, lag, queue) and GET /metrics (Prometheus text via
 * prom-client, the token as a bearer header, as on the receiver). One series per standby, labelled
 * with its URL; values are read from the standby links at scrape time.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { FeedGap } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import { collectProcessMetrics } from '../process-metrics.js';
import { bearerMatches } from '../protocol/handshake.js';

/** What the agent knows of one standby at this moment. */
export interface StandbyReport {
  readonly url: string;
  readonly connected: boolean;
  /** The last W sent to it (epoch ms), or null before its first full reconciliation completed. */
  readonly watermark: number | null;
  /** Why its W is held for a feed gap, or null (the same as its receiver's status shows). */
  readonly feedIncomplete: FeedGap | null;
  /** Since the agent started, over all its connections. */
  readonly filesSent: number;
  readonly bytesSent: number;
  /** bytesSent as it went on the wire (compressed where --compress paid; frame headers not counted). */
  readonly wireBytesSent: number;
  /** Changed paths waiting to be looked at for it. */
  readonly queuedPaths: number;
  /** Ops sent to it and not yet answered. */
  readonly opsInFlight: number;
  /** Connections established to it since the agent started. */
  readonly connections: number;
}

function registryFor(standbys: () => readonly StandbyReport[]): Registry {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const labelNames = ['standby'] as const;
  const gauge = (name: string, help: string, read: (s: StandbyReport, now: number) => number | null): void => {
    new Gauge({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        const now = Date.now();
        for (const s of standbys()) {
          const v = read(s, now);
          if (v !== null) this.set({ standby: s.url }, v);
        }
      },
    });
  };
  // Totals kept by the links: set at scrape time (reset, then one inc to the total).
  const counter = (name: string, help: string, read: (s: StandbyReport) => number): void => {
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        for (const s of standbys()) this.inc({ standby: s.url }, read(s));
      },
    });
  };
  gauge('warmsync_standby_connected', '1 while the agent is connected to this standby\'s receiver', (s) => (s.connected ? 1 : 0));
  gauge('warmsync_standby_watermark_seconds', 'The last watermark W sent to this standby (epoch seconds)', (s) => (s.watermark === null ? null : s.watermark / 1000));
  gauge('warmsync_standby_watermark_lag_seconds', 'How far the last W sent to this standby is behind now', (s, now) => (s.watermark === null ? null : (now - s.watermark) / 1000));
  gauge('warmsync_standby_feed_incomplete', '1 while this standby\'s W is held for a gap in the change feed (overflow, lost watch, fell behind)', (s) => (s.feedIncomplete === null ? 0 : 1));
  gauge('warmsync_standby_queued_paths', 'Changed paths waiting to be looked at for this standby', (s) => s.queuedPaths);
  gauge('warmsync_standby_ops_in_flight', 'Ops sent to this standby and not yet answered', (s) => s.opsInFlight);
  counter('warmsync_standby_sent_files_total', 'Files whose content was sent to this standby', (s) => s.filesSent);
  counter('warmsync_standby_sent_bytes_total', 'Bytes of file content sent to this standby', (s) => s.bytesSent);
  counter('warmsync_standby_sent_wire_bytes_total', 'Bytes of file content put on the wire to this standby: sent_bytes after compression (--compress)', (s) => s.wireBytesSent);
  counter('warmsync_standby_connections_total', 'Connections established to this standby\'s receiver', (s) => s.connections);
  return registry;
}

/** The JSON /healthz answers: the agent is up, and how each standby is doing. */
export function healthOf(standbys: readonly StandbyReport[], now: number): object {
  return {
    ok: true,
    standbys: standbys.map((s) => ({
      url: s.url, connected: s.connected, watermark: s.watermark, lagMs: s.watermark === null ? null : now - s.watermark,
      feedIncomplete: s.feedIncomplete, queuedPaths: s.queuedPaths, opsInFlight: s.opsInFlight,
    })),
  };
}

/**
 * How every standby is doing in one short line (systemd's STATUS=, shown by `systemctl status`):
 * `URL: connected, W 0 s behind; URL: not connected, W 35 s behind, 120 queued`. The lag is in
 * whole seconds, so that the line changes when something does, not at every heartbeat.
 */
export function statusLine(standbys: readonly StandbyReport[], now: number): string {
  return standbys.map((s) => {
    const parts = [s.connected ? 'connected' : 'not connected'];
    if (s.watermark !== null) parts.push(`W ${Math.max(0, Math.round((now - s.watermark) / 1000))} s behind`);
    else parts.push(s.connected ? 'first full pass' : 'no W yet');
    if (s.feedIncomplete !== null) parts.push(`W held (${s.feedIncomplete.reason})`);
    if (s.queuedPaths > 0) parts.push(`${s.queuedPaths} queued`);
    return `${s.url}: ${parts.join(', ')}`;
  }).join('; ');
}

export interface AgentHttp {
  /** http://HOST:PORT, with the port the system picked for port 0. */
  readonly url: string;
  close(): Promise<void>;
}

/** Serves /healthz and /metrics on `host:port` until closed. */
export async function serveAgentHttp(host: string, port: number, token: string, standbys: () => readonly StandbyReport[]): Promise<AgentHttp> {
  const registry = registryFor(standbys);
  const server = createServer((req, res) => answer(req, res, registry, token, standbys));
  // Keep-alive sockets of a scraper must not hold the agent's shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new WarmsyncError('LISTEN_FAILED', `--metrics-listen ${host}:${port}: ${err.code ?? describeError(err)}`)));
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${shown}:${address.port}`, close: () => closeServer(server) };
}

function answer(req: IncomingMessage, res: ServerResponse, registry: Registry, token: string, standbys: () => readonly StandbyReport[]): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(healthOf(standbys(), Date.now())) + '\n');
    return;
  }
  if (path === '/metrics') {
    if (!bearerMatches(req.headers.authorization, token)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="warmsync"', 'content-type': 'text/plain' }).end('the token is required as a bearer header\n');
      return;
    }
    void registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${describeError(err)}\n`),
    );
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('warmsync agent: GET /healthz, GET /metrics (bearer token)\n');
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
