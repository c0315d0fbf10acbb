/**
 * Plain HTTP on the receiver's listen port: GET /healthz (liveness plus safe/unsafe, no secrets)
 * and GET /metrics (Prometheus text via prom-client; the token as a bearer header, since the
 * numbers describe the protected data). Values are read from the manifest at scrape time.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { FailoverVerdict } from '../gate/policy.js';
import type { Manifest } from '../manifest/manifest.js';
import { collectProcessMetrics } from '../process-metrics.js';
import { bearerMatches } from '../protocol/handshake.js';

export interface ReceiverMetrics {
  readonly registry: Registry;
  committed(files: number, bytes: number): void;
  failed(): void;
}

export function createMetrics(manifest: Manifest, verdict: () => FailoverVerdict): ReceiverMetrics {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const filesWritten = new Counter({ name: 'warmsync_files_received_total', help: 'Files written, verified and recorded since the receiver started', registers: [registry] });
  const bytesWritten = new Counter({ name: 'warmsync_bytes_received_total', help: 'Bytes of file content written since the receiver started', registers: [registry] });
  const opsFailed = new Counter({ name: 'warmsync_ops_failed_total', help: 'Agent ops that failed (conflict, checksum, I/O)', registers: [registry] });
  const gauge = (name: string, help: string, read: () => number | null): void => {
    new Gauge({
      name, help, registers: [registry],
      collect() {
        const v = read();
        if (v === null) this.reset();
        else this.set(v);
      },
    });
  };
  const seconds = (ms: number | null): number | null => (ms === null ? null : ms / 1000);
  gauge('warmsync_files', 'Live files in the manifest', () => manifest.counts().files);
  gauge('warmsync_bytes', 'Bytes of live files in the manifest', () => manifest.counts().bytes);
  gauge('warmsync_tombstones_pending', 'Deletions held until the DB snapshot passes them', () => manifest.counts().tombstones);
  gauge('warmsync_snapshot_time_seconds', 'Recorded DB snapshot time T (epoch seconds)', () => seconds(manifest.getNumber('snapshotTime')));
  gauge('warmsync_watermark_seconds', 'Agent watermark W (epoch seconds)', () => seconds(manifest.getNumber('watermark')));
  gauge('warmsync_watermark_lag_seconds', 'How far the watermark is behind now', () => {
    const w = manifest.getNumber('watermark');
    return w === null ? null : (Date.now() - w) / 1000;
  });
  gauge('warmsync_safe', '1 when failing over at the recorded snapshot time is safe (W >= T + skew)', () =>
    (verdict().safe ? 1 : 0));
  gauge('warmsync_feed_incomplete', '1 while the agent says its change feed may have missed events (W is held)', () => (manifest.feedGap() === null ? 0 : 1));
  gauge('warmsync_deletions_held', 'Deletions the agent holds back after a mass deletion or an emptied source', () => manifest.getNumber('deletionsHeld') ?? 0);
  gauge('warmsync_agent_connected', '1 while an agent is connected', () => manifest.getNumber('agentConnected') ?? 0);
  gauge('warmsync_quarantined_files', 'Files held in quarantines', () => manifest.quarantinedCount());
  return {
    registry,
    committed: (files, bytes) => {
      filesWritten.inc(files);
      bytesWritten.inc(bytes);
    },
    failed: () => opsFailed.inc(),
  };
}

export function createHttpHandler(manifest: Manifest, metrics: ReceiverMetrics, token: string, verdictNow: () => FailoverVerdict) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      const verdict = verdictNow();
      const body = JSON.stringify({
        ok: true, safe: verdict.safe, reason: verdict.reason, agentConnected: manifest.getNumber('agentConnected') === 1,
        feedIncomplete: manifest.feedGap(), deletionsHeld: manifest.getNumber('deletionsHeld') ?? 0,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(body + '\n');
      return;
    }
    if (path === '/metrics') {
      if (!bearerMatches(req.headers.authorization, token)) {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="warmsync"', 'content-type': 'text/plain' }).end('the token is required as a bearer header\n');
        return;
      }
      void metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('warmsync receiver: GET /healthz, GET /metrics (bearer token), or a WebSocket agent\n');
  };
}
