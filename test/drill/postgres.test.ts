/**
 * PostgreSQL at the gate, against a real primary and streaming standby (scripts/drill/pg.ts; the
 * standby replays 1 s behind):
 *  - the snapshot source while the primary is busy: T moves, and every row the standby lacks
 *    committed after T (T is never later than what the standby contains);
 *  - while the primary is idle: T stays at the last commit instead of following the clock, and a
 *    heartbeat commit moves it;
 *  - the real receiver with --snapshot-source: the standby's time is recorded; the primary (not in
 *    recovery), a refused port and a wrong password are logged with their codes (the password
 *    never printed) and nothing is applied; a URL that is not postgres:// exits 2;
 *  - promote --references keeps a file the times would quarantine when the DB references it, and
 *    changes nothing when the DB cannot be reached.
 * Skips, saying why, only when PostgreSQL cannot be found or installed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { postgresSource } from '../../src/gate/pgsource.js';
import { createLogger, createLoggerWith, type LogRecord } from '../../src/log.js';
import { formatTime } from '../../src/time.js';
import { createPair, postgresForTests, stopServers, until, type PgPair } from '../../scripts/drill/pg.js';
import { freePort } from '../../scripts/lib/net.js';
import { assertCleanFailure, closeStandbys, openStandby, openWorkspace, runCli, statusJson, syncOnce } from '../helpers/e2e.js';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';

const { pgBin, skip } = postgresForTests();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL snapshot source, failover settings and reference check', { skip }, () => {
  let dir: string;
  let pair: PgPair;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-pgtest-'));
    await chmod(dir, 0o755);
    pair = await createPair(pgBin, join(dir, 'pg'), 1000);
    // No autovacuum on the test's tables: an ANALYZE is a commit (it writes pg_statistic), and the
    // one autovacuum runs within a minute of t's 60 inserts would move T while a test says it must
    // not move, or past the commit a test waits for T to reach.
    const noAutovacuum = 'WITH (autovacuum_enabled = off)';
    await pair.primary.query(`CREATE TABLE t (id int PRIMARY KEY) ${noAutovacuum}`);
    await pair.primary.query(`CREATE TABLE heartbeat (id int PRIMARY KEY, at timestamptz NOT NULL) ${noAutovacuum}`);
    await pair.primary.query('INSERT INTO heartbeat VALUES (1, now())');
    await pair.primary.query(`CREATE TABLE binaries (sha1 text PRIMARY KEY) ${noAutovacuum}`);
  });
  after(async () => {
    await closeStandbys();
    stopServers([pair?.primary, pair?.standby]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /** Exact commit times (µs since the epoch) of the rows of t, on the primary. */
  async function commitMicros(): Promise<Map<number, bigint>> {
    const rows = await pair.primary.query<{ id: number; us: string }>("SELECT id, floor(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint::text AS us FROM t");
    return new Map(rows.map((r) => [r.id, BigInt(r.us)]));
  }

  /** The last commit on the primary, in ms rounded down (what the source must report once replayed). */
  async function lastCommitMs(): Promise<number> {
    const [row] = await pair.primary.query<{ ms: string }>("SELECT floor(extract(epoch FROM (pg_last_committed_xact()).timestamp) * 1000)::bigint::text AS ms");
    return Number(row?.ms);
  }

  const lines: string[] = [];
  const source = (): ReturnType<typeof postgresSource> => postgresSource(pair.standby.url(), 5000, createLogger('debug', (l) => lines.push(l)));

  test('busy primary: T moves, and every row the standby lacks committed after T', async () => {
    const src = source();
    // Up to the set-up's last commit: any replayed commit gives a time, but not necessarily table t.
    const setUp = await lastCommitMs();
    await until('the standby to replay the set-up', async () => {
      const r = await src.read();
      return 'time' in r && r.time >= setUp;
    }, 30_000);
    const readings: Array<{ time: number; present: Set<number> }> = [];
    for (let i = 1; i <= 60; i++) {
      await pair.primary.query('INSERT INTO t VALUES ($1)', [i]);
      if (i % 4 === 0) {
        const r = await src.read();
        assert.ok('time' in r, JSON.stringify(r));
        // Read after T: the standby can only have more by now, so whatever it lacks, it lacked at T.
        const present = new Set((await pair.standby.query<{ id: number }>('SELECT id FROM t')).map((row) => row.id));
        readings.push({ time: r.time, present });
      }
      await sleep(40);
    }
    const commits = await commitMicros();
    let absentSeen = 0;
    for (const { time, present } of readings) {
      for (const [id, us] of commits) {
        if (present.has(id)) continue;
        absentSeen++;
        assert.ok(us > BigInt(time) * 1000n, `row ${id} committed at ${us} µs, not after T = ${time} ms, yet the standby lacked it`);
      }
    }
    assert.ok(absentSeen > 0, 'the apply delay should leave recent rows off the standby at some reading');
    assert.ok(new Set(readings.map((r) => r.time)).size > 3, `T should move while the primary is busy: ${readings.map((r) => r.time).join(', ')}`);
  });

  test('idle primary: T stays at the last commit, not the clock; a heartbeat moves it', async () => {
    const src = source();
    const last = await lastCommitMs();
    await until('the standby to replay the last commit', async () => {
      const r = await src.read();
      return 'time' in r && r.time === last;
    }, 30_000);
    await sleep(1500);
    const idle = await src.read();
    assert.deepEqual(idle, { time: last }, 'T must not move without a commit');
    assert.ok(Date.now() - last >= 1500, 'the last commit is in the past; T did not follow the clock');

    await pair.primary.query('UPDATE heartbeat SET at = now() WHERE id = 1');
    const beat = await lastCommitMs();
    assert.ok(beat > last);
    await until('T to reach the heartbeat commit', async () => {
      const r = await src.read();
      return 'time' in r && r.time === beat;
    }, 30_000);
  });

  test('T unmoving past the stale period: SNAPSHOT_STALE once, naming the case (idle primary, paused replay); T still returned', async () => {
    const STALE_MS = 1500;
    const records: LogRecord[] = [];
    const log = createLoggerWith({ level: 'debug', format: 'json', write: (l) => records.push(JSON.parse(l) as LogRecord) });
    const src = postgresSource(pair.standby.url(), 5000, log, STALE_MS);
    const byDefault = postgresSource(pair.standby.url(), 5000, log);
    const stale = (): LogRecord[] => records.filter((r) => r.code === 'SNAPSHOT_STALE');
    /** The whole warning for T stuck at `t` for `why`; the seconds it names must be the period at least. */
    const assertStaleText = (record: LogRecord, t: number, why: string): void => {
      assert.equal(record.level, 'warn');
      const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      const m = new RegExp(`^snapshot source postgres://postgres@127\\.0\\.0\\.1:\\d+/postgres: the replay time has stayed at ${escape(formatTime(t))} for (\\d+) s; ${escape(why)}\\. T stays there, which is safe; tombstones wait$`).exec(record.msg);
      assert.ok(m !== null, record.msg);
      assert.ok(Number(m[1]) >= STALE_MS / 1000, `warned after ${m[1]} s`);
    };
    /** Reads until SNAPSHOT_STALE number `count` is logged; every reading on the way must be T itself. */
    const readUntilStale = async (t: number, count: number): Promise<LogRecord> => {
      const deadline = Date.now() + 30_000;
      while (stale().length < count) {
        assert.ok(Date.now() < deadline, `no SNAPSHOT_STALE number ${count} within 30 s: ${JSON.stringify(records)}`);
        for (const source of [src, byDefault]) assert.deepEqual(await source.read(), { time: t }, 'a stale T is still the time to apply');
        await sleep(100);
      }
      assert.equal(stale().length, count, 'warned more than once');
      return stale()[count - 1] as LogRecord;
    };
    const beat = async (): Promise<number> => {
      await pair.primary.query('UPDATE heartbeat SET at = now() WHERE id = 1');
      return lastCommitMs();
    };

    // Idle primary: everything received is replayed.
    let last = await lastCommitMs();
    await until('the standby to replay the last commit', async () => {
      const r = await src.read();
      return 'time' in r && r.time === last;
    }, 30_000);
    assertStaleText(await readUntilStale(last, 1), last, 'the standby has replayed all it received: the primary is idle (add a heartbeat, docs/failover.md)');
    // Once per stall, however long it lasts.
    await sleep(STALE_MS + 200);
    assert.deepEqual(await src.read(), { time: last });
    assert.equal(stale().length, 1, 'a second warning for the same stall');

    // A commit moves T, which ends the stall. Then replay is paused on the standby while the
    // primary commits: WAL received, not replayed, and T stuck again.
    last = await beat();
    await until('T to reach the heartbeat commit', async () => {
      const r = await src.read();
      return 'time' in r && r.time === last;
    }, 30_000);
    await pair.standby.query('SELECT pg_wal_replay_pause()');
    try {
      await beat();
      await until('the standby to receive the commit it may not replay', async () => {
        const [row] = await pair.standby.query<{ behind: boolean }>('SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() AS behind');
        return row?.behind === true;
      }, 30_000);
      assertStaleText(await readUntilStale(last, 2), last, 'the standby has WAL it has not replayed: replication or replay is stalled, or recovery_min_apply_delay is longer than that');
    } finally {
      await pair.standby.query('SELECT pg_wal_replay_resume()');
    }
    // The default period (5 minutes) never warned in all this.
    assert.equal(stale().length, 2);
    assert.equal(records.filter((r) => r.level === 'warn' || r.level === 'error').length, 2, JSON.stringify(records));
  });

  test('the receiver records the standby\'s time with --snapshot-source', async () => {
    const ws = await openWorkspace();
    const receiver = await startReceiverProcess([
      '--root', ws.dst, '--listen', '127.0.0.1:0', '--token-file', ws.tokenFile, '--snapshot-source', pair.standby.url('pwuser', 'secret'), '--snapshot-interval', '1',
    ]);
    const last = await lastCommitMs();
    await until('the snapshot time to be recorded', async () => (await statusJson(ws.dst)).snapshotTime === last, 30_000);
    assert.equal(await receiver.stop(), 0);
    assert.doesNotMatch(receiver.stderr(), /PG_|secret/, receiver.stderr());
  });

  const failing: Array<{ name: string; url: () => Promise<string>; code: RegExp }> = [
    { name: 'the primary (not in recovery)', url: async () => pair.primary.url(), code: /"level":"warn",.*"code":"PG_NOT_STANDBY","msg":"snapshot source postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres: the server is not in recovery.*; nothing applied/ },
    { name: 'a port nobody listens on', url: async () => `postgres://postgres@127.0.0.1:${await freePort()}/postgres`, code: /"level":"warn",.*"code":"PG_CONNECT","msg":".*cannot connect \(.*ECONNREFUSED.*\); nothing applied/ },
    { name: 'a wrong password', url: async () => pair.standby.url('pwuser', 'wrong-password'), code: /"level":"warn",.*"code":"PG_AUTH","msg":"snapshot source postgres:\/\/pwuser:\*\*\*@127\.0\.0\.1:\d+\/postgres: authentication failed.*; nothing applied/ },
  ];
  for (const c of failing) {
    test(`--snapshot-source to ${c.name}: logged with its code, nothing applied`, async () => {
      const ws = await openWorkspace();
      const receiver = await startReceiverProcess(['--root', ws.dst, '--listen', '127.0.0.1:0', '--token-file', ws.tokenFile, '--snapshot-source', await c.url(), '--snapshot-interval', '1']);
      await until(`a ${c.code} line`, async () => c.code.test(receiver.stderr()), 30_000);
      assert.equal(await receiver.stop(), 0);
      assert.equal((await statusJson(ws.dst)).snapshotTime, null);
      assert.doesNotMatch(receiver.stderr(), /wrong-password/);
    });
  }

  test('--snapshot-source that is not a postgres URL, or with --snapshot-cmd: exit 2', async () => {
    const ws = await openWorkspace();
    const base = ['receiver', '--root', ws.dst, '--listen', '127.0.0.1:0', '--token-file', ws.tokenFile];
    assertCleanFailure(await runCli([...base, '--snapshot-source', 'http://127.0.0.1:5432/x']), 2, /^warmsync: BAD_PG_URL: --snapshot-source: http:\/\/127\.0\.0\.1:5432\/x is not a postgres:\/\/ or postgresql:\/\/ URL$/);
    assertCleanFailure(await runCli([...base, '--snapshot-source', 'not a url']), 2, /BAD_PG_URL: --snapshot-source: the value is not a URL/);
    assertCleanFailure(await runCli([...base, '--snapshot-source', pair.standby.url(), '--snapshot-cmd', 'true']), 2, /BAD_FLAG: receiver: give --snapshot-cmd or --snapshot-source, not both/);
  });

  test('promote --references: a referenced file stays although born after T; unreachable DB: nothing changes', async () => {
    const s = await openStandby();
    // Files recorded before the first watermark count as born at 0 (never quarantined): sync once first.
    await writeFile(join(s.src, 'README'), 'first sync');
    await syncOnce(s);
    const kept = Buffer.from('referenced binary');
    const moved = Buffer.from('unreferenced binary');
    const sha = (b: Buffer): string => createHash('sha1').update(b).digest('hex');
    for (const b of [kept, moved]) {
      await mkdir(join(s.src, 'data/filestore', sha(b).slice(0, 2)), { recursive: true });
      await writeFile(join(s.src, 'data/filestore', sha(b).slice(0, 2), sha(b)), b);
    }
    await syncOnce(s);
    await s.receiver.stop();
    await pair.primary.query('INSERT INTO binaries VALUES ($1)', [sha(kept)]);
    const rel = (b: Buffer): string => join(s.dst, 'data/filestore', sha(b).slice(0, 2), sha(b));
    const anHourAgo = String(Date.now() - 3_600_000);

    const down = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
    assertCleanFailure(await runCli(['promote', '--root', s.dst, '--time', anHourAgo, '--references', down]), 1, /^warmsync: PG_CONNECT: --references .*cannot connect.*; nothing changed$/);
    assert.ok(existsSync(rel(kept)) && existsSync(rel(moved)));

    const r = await runCli(['promote', '--root', s.dst, '--time', anHourAgo, '--references', pair.primary.url(), '--query', 'SELECT sha1 FROM binaries', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { removed: string[]; kept: string[] };
    assert.deepEqual(out.kept, [`data/filestore/${sha(kept).slice(0, 2)}/${sha(kept)}`]);
    assert.deepEqual(out.removed, [`data/filestore/${sha(moved).slice(0, 2)}/${sha(moved)}`]);
    assert.ok(existsSync(rel(kept)), 'the referenced file is still in place');
    assert.equal(existsSync(rel(moved)), false, 'the unreferenced file was quarantined');
  });
});
