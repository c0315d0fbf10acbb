/**
 * --snapshot-source postgres://...: the standby PostgreSQL's replay time as the snapshot time T.
 *
 * T = pg_last_xact_replay_timestamp(), the primary's commit time of the last transaction the
 * standby replayed, rounded down to the millisecond. The standby then holds every transaction
 * committed up to T and none after it, so T is never later than what the standby DB contains.
 *
 * An idle primary commits nothing, so T stays at its last commit. That is still exact (the DB has
 * not changed since) and therefore safe; it only delays tombstones, which wait for T to pass their
 * deletion time. The cure is a heartbeat on the primary (a row updated every few seconds, like
 * pt-heartbeat: docs/failover.md), never a guess such as "now" when the received WAL is all
 * replayed: the primary may have committed more that has not reached the standby yet. After
 * `staleAfterMs` (default 5 minutes) without movement the source says so once in the log, with
 * that hint.
 */
import type { Logger } from '../log.js';
import { formatTime } from '../time.js';
import { classifyPgError, redactUrl, withPg } from './pg.js';
import type { SnapshotReading, SnapshotSource } from './poller.js';

/** How long T may stay put before SNAPSHOT_STALE is logged (tests shorten it). */
const STALE_AFTER_MS = 5 * 60_000;

/** floor() keeps T at or before the replayed commit; the epoch text keeps it exact (no Date rounding). */
const QUERY = `SELECT pg_is_in_recovery() AS standby,
  floor(extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::bigint::text AS replayed_ms,
  pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS caught_up`;

export function postgresSource(url: string, timeoutMs: number, log: Logger, staleAfterMs = STALE_AFTER_MS): SnapshotSource {
  const where = `snapshot source ${redactUrl(url)}`;
  let last: number | null = null;
  let lastMovedAt = Date.now();
  let warnedStale = false;

  // One short connection per read: nothing idles between polls that a restarting server could
  // break. Connecting and the query are each bounded by the timeout.
  const query = (): Promise<{ standby: boolean; replayed_ms: string | null; caught_up: boolean | null }> =>
    withPg(url, timeoutMs, async (client) => {
      const row = (await client.query<{ standby: boolean; replayed_ms: string | null; caught_up: boolean | null }>(QUERY)).rows[0];
      if (row === undefined) throw new Error('no row returned');
      return row;
    });

  return {
    read: async (): Promise<SnapshotReading> => {
      let row;
      try {
        row = await query();
      } catch (err) {
        return classifyPgError(err, where);
      }
      if (!row.standby) {
        return { code: 'PG_NOT_STANDBY', problem: `${where}: the server is not in recovery (a primary, or already promoted); its replay time says nothing about a standby` };
      }
      if (row.replayed_ms === null) {
        return { code: 'PG_NO_REPLAY', problem: `${where}: no transaction replayed since the standby started (pg_last_xact_replay_timestamp() is NULL)` };
      }
      const time = Number(row.replayed_ms);
      const now = Date.now();
      if (time !== last) {
        last = time;
        lastMovedAt = now;
        warnedStale = false;
      } else if (!warnedStale && now - lastMovedAt >= staleAfterMs) {
        warnedStale = true;
        const why = row.caught_up === true
          ? 'the standby has replayed all it received: the primary is idle (add a heartbeat, docs/failover.md)'
          : 'the standby has WAL it has not replayed: replication or replay is stalled, or recovery_min_apply_delay is longer than that';
        log.warn('SNAPSHOT_STALE', `${where}: the replay time has stayed at ${formatTime(time)} for ${Math.round((now - lastMovedAt) / 1000)} s; ${why}. T stays there, which is safe; tombstones wait`);
      }
      return { time };
    },
  };
}
