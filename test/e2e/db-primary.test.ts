/**
 * `agent --db-primary` end to end, against a real PostgreSQL primary (scripts/drill/pg.ts) and the
 * real receiver and live agent:
 *  - the agent reads the primary's WAL position and clock; once W has passed the moment it read a
 *    position, `status --json` reports that position as the recovery target (never one W does not
 *    cover), a later position replaces it as W moves on, the skew in force is the measured one, and
 *    `failover` (printing only) names recovery_target_lsn;
 *  - a primary that refuses connections is logged (PG_CONNECT) and replication goes on; status
 *    and failover keep the time target;
 *  - a URL that is not postgres:// and --db-primary with --once exit 2, one line, no stack trace.
 * Skips, saying why, only when PostgreSQL cannot be found or installed.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { compareLsn } from '../../src/gate/dbposition.js';
import { createPair, postgresForTests, stopServers, until, type PgPair } from '../../scripts/drill/pg.js';
import { freePort } from '../../scripts/lib/net.js';
import { assertCleanFailure, closeStandbys, openStandby, runCli, startLiveAgent } from '../helpers/e2e.js';

const { pgBin, skip } = postgresForTests();

interface DbStatus {
  watermark: number | null; recoveryTarget: number | null; recoveryTargetLsn: string | null; recoveryTargetLsnAt: number | null;
  skewMs: number; skewSource: string; clockOffsetMs: number | null;
}

async function status(dst: string): Promise<DbStatus> {
  const r = await runCli(['status', '--root', dst, '--json'], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as DbStatus;
}

describe('agent --db-primary: the WAL position as the recovery target', { skip, timeout: 180_000 }, () => {
  let dir: string;
  let pair: PgPair;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-dbprimary-'));
    await chmod(dir, 0o755);
    pair = await createPair(pgBin, join(dir, 'pg'), 1000);
    await pair.primary.query('CREATE TABLE t (id int PRIMARY KEY)');
  });
  after(async () => {
    await closeStandbys();
    stopServers([pair?.primary, pair?.standby]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('status reports the position once W has passed the moment it was read; failover recovers to it', async () => {
    const s = await openStandby();
    await writeFile(join(s.src, 'a'), 'x');
    const agent = startLiveAgent(s, ['--db-primary', pair.primary.url(), '--log-level', 'info']);
    let first: DbStatus | null = null;
    await until('an LSN target in status', async () => {
      first = await status(s.dst);
      return first.recoveryTargetLsn !== null;
    }, 60_000);
    const st = first as unknown as DbStatus;
    assert.ok(st.watermark !== null && st.recoveryTargetLsnAt !== null && st.recoveryTargetLsnAt <= st.watermark, JSON.stringify(st));
    assert.equal(st.skewSource, 'measured', JSON.stringify(st));
    assert.ok(st.skewMs < 1000 && st.clockOffsetMs !== null, `same host: the measured bound is a round trip, not seconds: ${JSON.stringify(st)}`);

    // A commit now, then the primary's position after it: W must pass this moment before status offers it.
    // A position at or past the commit's can only be read once the commit is written: after `issuedAt`
    // (not after the test reads it back: the agent may read the same position first).
    const issuedAt = Date.now();
    await pair.primary.query('INSERT INTO t VALUES (1)');
    const [row] = await pair.primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const after1 = row?.lsn as string;
    let later: DbStatus | null = null;
    await until('the target to reach the commit', async () => {
      later = await status(s.dst);
      return later.recoveryTargetLsn !== null && compareLsn(later.recoveryTargetLsn, after1) >= 0;
    }, 60_000);
    const moved = later as unknown as DbStatus;
    assert.ok(moved.watermark !== null && moved.recoveryTargetLsnAt !== null && moved.recoveryTargetLsnAt <= moved.watermark, JSON.stringify(moved));
    assert.ok((moved.recoveryTargetLsnAt ?? 0) >= issuedAt, `a position at or after ${after1} was read before the commit was issued (${issuedAt}): ${JSON.stringify(moved)}`);

    const text = await runCli(['status', '--root', s.dst]);
    assert.match(text.stdout, /recovery target +WAL position [0-9A-F]+\/[0-9A-F]+, read from the DB primary at /);
    assert.match(text.stdout, /skew +\d+ ms \(measured: /);

    const plan = await runCli(['failover', '--root', s.dst, '--json']);
    assert.equal(plan.code, 0, plan.stderr);
    const out = JSON.parse(plan.stdout) as { target: string; recoveryTargetLsn: string; settings: Record<string, string> };
    assert.equal(out.target, 'lsn');
    assert.equal(out.settings['recovery_target_lsn'], out.recoveryTargetLsn);
    assert.equal(out.settings['recovery_target_inclusive'], 'off');
    assert.equal(out.settings['recovery_target_time'], undefined);
    const time = await runCli(['failover', '--root', s.dst, '--json', '--target', 'time']);
    assert.equal((JSON.parse(time.stdout) as { target: string; skewSource: string }).skewSource, 'measured');
    await agent.stop();
  });

  test('a primary that refuses connections: PG_CONNECT logged once, replication goes on, the time target stays', async () => {
    const s = await openStandby();
    const port = await freePort();
    const agent = startLiveAgent(s, ['--db-primary', `postgres://postgres:secret@127.0.0.1:${port}/postgres`, '--log-level', 'info']);
    await writeFile(join(s.src, 'b'), 'y');
    await until('W and the PG_CONNECT warning', async () => (await status(s.dst)).watermark !== null && /PG_CONNECT/.test(agent.stderr()), 60_000);
    assert.doesNotMatch(agent.stderr(), /secret/, 'the password is never logged');
    assert.doesNotMatch(agent.stderr(), /^ {4}at /m);
    const st = await status(s.dst);
    assert.equal(st.recoveryTargetLsn, null);
    assert.notEqual(st.skewSource, 'measured');
    const plan = await runCli(['failover', '--root', s.dst, '--json']);
    assert.equal((JSON.parse(plan.stdout) as { target: string }).target, 'time');
    const lsn = await runCli(['failover', '--root', s.dst, '--target', 'lsn']);
    assertCleanFailure(lsn, 1, /NO_LSN_TARGET/);
    await agent.stop();
  });
});

describe('agent --db-primary: bad input', () => {
  test('not a postgres:// URL: exit 2, BAD_PG_URL', async () => {
    const r = await runCli(['agent', '--root', '/nonexistent', '--connect', 'ws://127.0.0.1:1', '--db-primary', 'http://db:5432/x']);
    assertCleanFailure(r, 2, /BAD_PG_URL.*--db-primary/);
  });
  test('with --once: exit 2, said why', async () => {
    const r = await runCli(['agent', '--root', '/nonexistent', '--connect', 'ws://127.0.0.1:1', '--once', '--db-primary', 'postgres://db/x']);
    assertCleanFailure(r, 2, /--db-primary is for the watching agent/);
  });
});
