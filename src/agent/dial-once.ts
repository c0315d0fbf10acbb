/**
 * `agent --once` dials its standbys before it loads the sync engine and opens the source's cache, so
 * that the handshake's round trips, and the manifest asked for with them, overlap that local work
 * (modules and the cache: about 40 ms before the first dial; docs/benchmarks.md, session 14). This
 * module loads the transport only, for that reason.
 */
import { standbyLogger, type Logger } from '../log.js';
import { dial, type ClientTls, type Session } from '../transport/client.js';

export interface OnceDialOptions {
  readonly urls: readonly string[];
  readonly token: string;
  readonly connectAttempts: number;
  readonly log: Logger;
  readonly tls?: ClientTls;
}

export interface DialedStandbys {
  /** One per URL, in order. A failure is reported where each is awaited (never as unhandled). */
  readonly sessions: readonly Promise<Session>[];
  /** Stops the retries and closes every connection not closed yet: call it once the run is over. */
  done(): void;
}

/** The logger for one standby's lines: its URL in each when the agent feeds several. */
export function standbyLog(options: { readonly urls: readonly string[]; readonly log: Logger }, url: string): Logger {
  return options.urls.length > 1 ? standbyLogger(options.log, url) : options.log;
}

export function dialStandbys(options: OnceDialOptions): DialedStandbys {
  const stop = new AbortController();
  const sessions = options.urls.map((url) => dial({
    url, token: options.token, attempts: options.connectAttempts, baseDelayMs: 250, maxDelayMs: 5000, handshakeTimeoutMs: 10_000,
    log: standbyLog(options, url), tls: options.tls, requestManifest: true, signal: stop.signal,
  }));
  // Awaited later (runOnce), maybe after a failure here: a rejection meanwhile is not unhandled.
  for (const session of sessions) session.catch(() => undefined);
  return {
    sessions,
    done: () => {
      stop.abort();
      for (const session of sessions) void session.then((s) => s.conn.close(), () => undefined);
    },
  };
}
