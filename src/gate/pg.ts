/**
 * PostgreSQL at the edges of the gate: short connections to the standby (snapshot source,
 * failover, promotion's reference check), URL checks and error codes an operator can act on.
 */
import type { Client } from 'pg';
import { UsageError, describeError } from '../errors.js';

/** Checks the URL's form up front (exit 2 at start-up rather than a warning every interval). */
export function checkPostgresUrl(flag: string, url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError('BAD_PG_URL', `--${flag}: the value is not a URL; e.g. postgres://warmsync@127.0.0.1:5432/postgres`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new UsageError('BAD_PG_URL', `--${flag}: ${redactUrl(url)} is not a postgres:// or postgresql:// URL`);
  }
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** Maps a pg / socket error to a code and a line an operator can act on. */
export function classifyPgError(err: unknown, where: string): { code: string; problem: string } {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const detail = describeError(err);
  if (code === '28P01' || code === '28000') return { code: 'PG_AUTH', problem: `${where}: authentication failed (${detail})` };
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ECONNRESET' || code === '57P03' || code === '3D000') {
    return { code: 'PG_CONNECT', problem: `${where}: cannot connect (${detail})` };
  }
  if (/timeout/i.test(detail)) return { code: 'PG_TIMEOUT', problem: `${where}: no answer in time (${detail})` };
  return { code: 'PG_QUERY', problem: `${where}: query failed (${detail})` };
}

/**
 * Opens a connection, runs `fn`, closes it. Connecting and each query are bounded by timeoutMs.
 * pg is loaded on first use: commands that never talk to PostgreSQL do not pay for it.
 */
export async function withPg<T>(url: string, timeoutMs: number, fn: (client: Client) => Promise<T>): Promise<T> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: 'warmsync' });
  client.on('error', () => undefined); // the server going away after our query: the caller already has its answer
  try {
    await client.connect();
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
