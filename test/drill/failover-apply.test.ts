/**
 * `warmsync failover --apply --pgdata DIR --standby URL` against a real primary and streaming
 * standby (scripts/drill/pg.ts), outside the drill: the standby replays five minutes behind, the
 * primary commits rows 100 ms apart, and the skew puts the recovery target between two of them.
 * The command must pause replay, write the four settings into PGDATA/postgresql.auto.conf (owned
 * by the data dir's owner, the apply delay it had replaced), restart the standby, wait for the
 * promotion and report the last replayed commit; the promoted DB holds exactly the rows committed
 * before the target (the primary still runs and has the rest: recovery stopped at the target, not
 * at the end of the WAL). And a target past the end of the WAL the standby received (the primary
 * committed nothing after it, then died): PostgreSQL (>= 14) stops rather than promote before a
 * configured target, so failover must see replay stand still, restart it without a target and
 * without a WAL source, and promote it there, holding every row. Skips, saying why, only when
 * PostgreSQL cannot be found or installed.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createPair, postgresForTests, stopServers, type PgPair } from '../../scripts/drill/pg.js';
import { closeStandbys, openStandby, runCli, statusJson, syncOnce } from '../helpers/e2e.js';

const { pgBin, skip } = postgresForTests();
const ROWS = 10;
/** The target falls between the commits of rows KEPT and KEPT + 1. */
const KEPT = 5;

describe('warmsync failover --apply on a real standby', { skip }, () => {
  let dir: string | undefined;
  let pair: PgPair | undefined;

  after(async () => {
    await closeStandbys();
    stopServers([pair?.primary, pair?.standby]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('recovers up to W - skew exactly, promotes, reports the last commit', { timeout: 120_000 }, async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-failover-'));
    await chmod(dir, 0o755);
    // The failover sets the delay to 0, so a long one costs nothing; it only has to outlast the steps
    // before the failover (~5 s idle) however loaded the machine, so that the standby lacks the rows.
    pair = await createPair(pgBin, join(dir, 'pg'), 300_000);
    const { primary, standby } = pair;
    await primary.query('CREATE TABLE t (id int PRIMARY KEY)');
    for (let id = 1; id <= ROWS; id++) {
      await primary.query('INSERT INTO t VALUES ($1)', [id]);
      await new Promise((r) => setTimeout(r, 100));
    }
    const commits = new Map((await primary.query<{ id: number; us: string }>(
      'SELECT id, floor(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us FROM t',
    )).map((r) => [r.id, Number(r.us)]));
    const keptUs = commits.get(KEPT) as number;
    const nextUs = commits.get(KEPT + 1) as number;
    const target = Math.floor((keptUs + nextUs) / 2000);
    assert.ok(keptUs < target * 1000 && target * 1000 < nextUs, `no whole ms between the commits of rows ${KEPT} and ${KEPT + 1}`);

    // A watermark after every commit: the skew moves the target back between rows KEPT and KEPT + 1.
    const s = await openStandby();
    await writeFile(join(s.src, 'binary'), 'x');
    await syncOnce(s);
    await s.receiver.stop();
    const { watermark } = await statusJson(s.dst);
    assert.ok(watermark !== null && watermark > target, `watermark ${watermark} is not after the target ${target}`);
    const skew = watermark - target;
    const [replayed] = await standby.query<{ n: string }>("SELECT count(*)::text AS n FROM pg_class WHERE relname = 't'");
    assert.equal(replayed?.n, '0', 'the standby replayed the test\'s commits before the failover (apply delay too short)');

    const started = Date.now();
    const r = await runCli(['failover', '--root', s.dst, '--apply', '--pgdata', standby.dataDir, '--standby', standby.url(), '--skew', String(skew), '--json', '--timeout', '60'], { timeoutMs: 100_000 });
    assert.equal(r.code, 0, `failover exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    process.stdout.write(`# failover --apply: promoted in ${Date.now() - started} ms\n`);
    const out = JSON.parse(r.stdout) as { watermark: number; skewMs: number; recoveryTarget: number; settings: Record<string, string>; applied: boolean; promotedAt: number | null };
    assert.equal(out.watermark, watermark);
    assert.equal(out.recoveryTarget, target);
    assert.equal(out.applied, true);
    assert.equal(out.promotedAt, Math.floor(keptUs / 1000), 'the last replayed commit is row KEPT\'s');

    // The settings, last in postgresql.auto.conf, which the server (not root) can still read.
    const confFile = join(standby.dataDir, 'postgresql.auto.conf');
    const conf = (await readFile(confFile, 'utf8')).trim().split('\n');
    const settings = Object.entries(out.settings).map(([name, value]) => `${name} = '${value}'`);
    assert.deepEqual(conf.slice(-settings.length), settings);
    assert.equal(settings.length, 4);
    assert.equal(conf.filter((l) => l.startsWith('recovery_min_apply_delay')).length, 1, `the old apply delay is still there:\n${conf.join('\n')}`);
    assert.equal((await stat(confFile)).uid, (await stat(standby.dataDir)).uid);

    // Promoted, and exactly the rows committed before the target, though the primary has them all.
    const [state] = await standby.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery');
    assert.equal(state?.recovery, false);
    assert.equal(existsSync(join(standby.dataDir, 'standby.signal')), false, 'standby.signal left behind');
    const ids = (await standby.query<{ id: number }>('SELECT id FROM t ORDER BY id')).map((row) => row.id);
    assert.deepEqual(ids, Array.from({ length: KEPT }, (_, i) => i + 1));
    assert.equal((await primary.query('SELECT id FROM t')).length, ROWS);
  });

  test('a target past the end of the WAL (the primary idle, then gone): promoted where replay stood', { timeout: 180_000 }, async () => {
    const d = await mkdtemp(join(tmpdir(), 'warmsync-failover-stall-'));
    await chmod(d, 0o755);
    const p = await createPair(pgBin, join(d, 'pg'), 300_000);
    try {
      await p.primary.query('CREATE TABLE u (id int PRIMARY KEY)');
      for (let id = 1; id <= 3; id++) await p.primary.query('INSERT INTO u VALUES ($1)', [id]);
      const [last] = await p.primary.query<{ ms: string }>("SELECT floor(extract(epoch FROM (pg_last_committed_xact()).timestamp) * 1000)::bigint::text AS ms");
      const s = await openStandby();
      await writeFile(join(s.src, 'binary'), 'x');
      await syncOnce(s);
      await s.receiver.stop();
      await new Promise((r) => setTimeout(r, 500)); // the standby has received everything
      p.primary.stop('immediate');
      const r = await runCli(['failover', '--root', s.dst, '--apply', '--pgdata', p.standby.dataDir, '--standby', p.standby.url(), '--skew', '0', '--json', '--timeout', '120'], { timeoutMs: 160_000 });
      assert.equal(r.code, 0, `failover exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      const out = JSON.parse(r.stdout) as { promotedAt: number | null };
      assert.equal(out.promotedAt, Number(last?.ms), 'the last replayed commit is the last one the primary made');
      const [state] = await p.standby.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery');
      assert.equal(state?.recovery, false);
      assert.deepEqual((await p.standby.query<{ id: number }>('SELECT id FROM u ORDER BY id')).map((row) => row.id), [1, 2, 3]);
      assert.doesNotMatch(await readFile(join(p.standby.dataDir, 'postgresql.auto.conf'), 'utf8'), /^recovery_target(_lsn|_time|_name|_xid)? =/m);
    } finally {
      stopServers([p.primary, p.standby]);
      await rm(d, { recursive: true, force: true });
    }
  });
});
