/**
 * `agent --db-primary URL`: the DB primary's WAL position and clock, read beside it (issue 20).
 * Every SAMPLE_MS one query on a kept connection reads pg_current_wal_lsn() and clock_timestamp();
 * the agent's clock after the answer is in is the position's `at` (gate/dbposition.ts says why that
 * makes a safe recovery target once W >= at), and the round trip bounds the offset between the two
 * clocks. Heartbeats carry what the receiver may not have yet (`report`).
 *
 * The primary unreachable, a standby in its place, a wrong password: one warning with a code, then
 * a retry every RETRY_MS; meanwhile no new positions (the receiver keeps the last one it had, still
 * safe, and failover falls back to the time target when it has none). Never fatal.
 */
import type { Client } from 'pg';
import { describeError } from '../errors.js';
import { estimateOffset, positionsToSend, type ClockSample, type DbPosition } from '../gate/dbposition.js';
import { classifyPgError, redactUrl } from '../gate/pg.js';
import type { Logger } from '../log.js';
import { MAX_DB_POSITIONS, type HeartbeatDb } from '../protocol/messages.js';

const SAMPLE_MS = 100;
const RETRY_MS = 5_000;
const TIMEOUT_MS = 5_000;
/** Round trips the clock estimate rests on (the newest ones). */
const CLOCK_SAMPLES = 16;
/** Positions kept while no heartbeat trims them (no receiver connected): thinned beyond this. */
const MAX_KEPT = 256;

/** What the live agent needs of the probe. */
export interface DbReport {
  /**
   * The db field of `standby`'s next heartbeat, given its watermark; undefined before the primary
   * ever answered. Positions are kept for the standby furthest behind.
   */
  report(watermark: number | null, standby: string): HeartbeatDb | undefined;
}

export class DbProbe implements DbReport {
  private positions: DbPosition[] = [];
  /** Each standby's last reported W (report). */
  private readonly watermarks = new Map<string, number | null>();
  private samples: ClockSample[] = [];
  private system: string | null = null;
  private client: Client | null = null;
  private stopped = false;
  private problem: string | null = null;
  private wake: (() => void) | null = null;
  private readonly loop: Promise<void>;
  private readonly where: string;

  constructor(private readonly url: string, private readonly log: Logger, private readonly sampleMs = SAMPLE_MS) {
    this.where = `--db-primary ${redactUrl(url)}`;
    this.loop = this.run();
  }

  report(watermark: number | null, standby: string): HeartbeatDb | undefined {
    if (this.system === null) return undefined;
    // Trimmed for the lowest W any standby reported: a standby further behind than the one
    // reporting now still needs the positions between the two (one standby: its own W, as ever).
    this.watermarks.set(standby, watermark);
    let lowest: number | null = watermark;
    for (const w of this.watermarks.values()) if (w === null || (lowest !== null && w < lowest)) lowest = w;
    this.positions = positionsToSend(this.positions, lowest, MAX_DB_POSITIONS);
    const clock = estimateOffset(this.samples);
    return { system: this.system, positions: lowest === watermark ? this.positions : positionsToSend(this.positions, watermark, MAX_DB_POSITIONS), clock };
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await this.disconnect();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let pause = this.sampleMs;
      try {
        await this.sample();
        if (this.problem !== null) {
          this.problem = null;
          this.log.info(`${this.where}: answering again; WAL positions and the clock offset are read again`);
        }
      } catch (err) {
        pause = RETRY_MS;
        await this.disconnect();
        const { code, problem } = err instanceof NotPrimary ? { code: 'PG_NOT_PRIMARY', problem: `${this.where}: ${err.message}` } : classifyPgError(err, this.where);
        if (this.problem !== code) {
          this.problem = code;
          this.log.warn(code, `${problem}; no new WAL positions until it answers (failover uses the last one recorded, or the time target W - skew); retrying every ${RETRY_MS / 1000} s`);
        } else {
          this.log.debug(`${this.where}: still failing: ${describeError(err)}`);
        }
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
        const timer = setTimeout(done, pause);
        this.wake = done;
      });
    }
  }

  private async connect(): Promise<Client> {
    if (this.client !== null) return this.client;
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: TIMEOUT_MS, query_timeout: TIMEOUT_MS, application_name: 'warmsync-agent' });
    client.on('error', () => undefined); // a broken connection: the next query fails and we reconnect
    try {
      await client.connect();
      const row = (await client.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby')).rows[0];
      if (row?.standby !== false) throw new NotPrimary('the server is in recovery (a standby): WAL positions must come from the primary');
      // The system identifier ties positions to this cluster (a primary rebuilt by initdb starts its
      // LSNs over); failover compares it with the standby's. Some roles may not read it: "0", unknown.
      const system = await client.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')
        .then((r) => r.rows[0]?.id ?? '0', () => '0');
      if (system !== this.system) this.positions = []; // another cluster: its LSNs are another sequence
      this.system = system;
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.client = client;
    this.log.info(`${this.where}: reading WAL positions every ${this.sampleMs} ms (system ${this.system})`);
    return client;
  }

  private async disconnect(): Promise<void> {
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async sample(): Promise<void> {
    const client = await this.connect();
    const sentAt = Date.now();
    const row = (await client.query<{ lsn: string; ms: number }>(
      'SELECT pg_current_wal_lsn()::text AS lsn, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms',
    )).rows[0];
    // Taken once the answer is in: every record before lsn was inserted before this moment.
    const receivedAt = Date.now();
    if (row === undefined) throw new Error('no row returned');
    this.positions.push({ lsn: row.lsn, at: receivedAt });
    if (this.positions.length > MAX_KEPT) this.positions = positionsToSend(this.positions, null, MAX_KEPT / 2);
    this.samples.push({ sentAt, receivedAt, serverMs: row.ms });
    if (this.samples.length > CLOCK_SAMPLES) this.samples.shift();
  }
}

class NotPrimary extends Error {}
