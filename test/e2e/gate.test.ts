// e2e: the snapshot gate and the operator commands through bin/warmsync (real receiver and
// `agent --once` processes, 127.0.0.1, SQLite), issue 4's "Done when":
// (a) snapshot: a deletion survives a snapshot older than D + skew + grace and goes with a newer one;
//     an older --time is reported and ignored; the default grace holds a fresh deletion back; bad
//     --time is exit 2; status --json carries every documented field, human status starts SAFE/UNSAFE;
// (b) promote: warns FILESTORE_BEHIND when W < T + skew; refuses (AGENT_CONNECTED) while an agent is
//     connected; --dry-run names the files and changes nothing; quarantines exactly the files born
//     after T + skew and keeps the rest; restore undoes it (born times included);
// (c) verify finds a bit flip that kept size and mtime, a missing and a stray file (exit 1); status
//     says UNSAFE until the next `agent --once` has re-sent the damaged files, and beside a live
//     agent until its next full pass (a restart) has;
// (d) receiver --snapshot-cmd applies tombstones while running; a garbage, failing or hanging command
//     is logged while the receiver keeps serving agents; GET /healthz and token-protected GET /metrics;
// (e) operator commands on a root that never had a receiver exit 1 with NO_MANIFEST;
// (f) a standby root replaced or removed under a running receiver: status, /healthz and promote say
//     UNSAFE naming it, though W alone would say SAFE, and failover refuses; put back, SAFE again;
//     a file system below the root not mounted at a receiver's start (a tmpfs, where it may mount): UNSAFE
//     until it is mounted again, or `verify` with the receiver stopped records the new layout.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, mkdir, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';
import { createLogger } from '../../src/log.js';
import { dial } from '../../src/transport/client.js';
import {
  MANIFEST, assertCleanFailure, buildTree, closeStandbys, exists, isStateDir, manifestRow, manifestRows, openStandby,
  openWorkspace, receiverArgs, runCli, setTime, settleTimes, startLiveAgent, statusJson, syncOnce, tombstonePaths, waitFor,
  waitForConvergence, waitForReceiverIdle,
  type Standby, type StatusJson,
} from '../helpers/e2e.js';
import { cannotMount } from '../helpers/mount.js';
import { readTree } from '../helpers/tree.js';

after(closeStandbys);

const DEFAULT_SKEW = 2000;
const DEFAULT_GRACE = 600_000;
const iso = (ms: number): string => new Date(ms).toISOString();

/** One read-only query on the standby's manifest (born times, state and removals are not in the shared helpers). */
function query<T>(dst: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(join(dst, MANIFEST), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}
const bornTimes = (dst: string): Record<string, number> =>
  Object.fromEntries(query<{ path: string; born_ms: number }>(dst, 'SELECT path, born_ms FROM entries').map((r) => [r.path, r.born_ms]));
const stateValue = (dst: string, key: string): unknown => query<{ value: unknown }>(dst, 'SELECT value FROM state WHERE key = ?', key)[0]?.value;

/** Every field `status --json` documents (the shared StatusJson names the contract's minimum). */
type FullStatus = StatusJson & {
  root: string; oldestTombstone: number | null; files: number; bytes: number; dirs: number; symlinks: number;
  lastContact: number | null; lastContactAgeMs: number | null; agentConnected: boolean; receiverRunning: boolean; receiverPid: number | null; quarantined: number;
};
const fullStatus = async (dst: string): Promise<FullStatus> => (await statusJson(dst)) as FullStatus;

async function cli(args: string[], code = 0): Promise<{ stdout: string; stderr: string }> {
  const r = await runCli(args, { timeoutMs: 30_000 });
  assert.equal(r.code, code, `warmsync ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** The standby tree (state dir aside); directory mtimes left out (moving a file out touches its parent). */
const standbyTree = (dst: string) => readTree(dst, { dirTimes: false, skip: isStateDir });

describe('gate e2e', { concurrency: true }, () => {
  describe('(a) snapshot and status', { concurrency: false }, () => {
    let s: Standby;
    before(async () => {
      s = await openStandby();
      await buildTree(s.src, {
        'filestore/aa/aa01': 'binary aa01\n', 'filestore/aa/aa02': 'binary aa02\n',
        'filestore/bb/bb01': 'binary bb01\n', 'filestore/bb/bb02': 'binary bb02\n', 'etc/app.conf': 'x=1\n',
      });
      await settleTimes(s.src);
      await syncOnce(s);
    });

    test('a deletion survives a snapshot older than D + skew + grace and goes with a newer one', { timeout: 60_000 }, async () => {
      const p = 'filestore/aa/aa01';
      await unlink(join(s.src, p));
      await syncOnce(s);
      assert.deepEqual(tombstonePaths(s.dst), [p]);
      const d = manifestRow(s.dst, p)?.deleted_at as number;
      const [skew, grace] = [1500, 5000];

      // T past D + skew + grace lies ahead of this host's clock (D is now): --force, as for a DB clock running ahead.
      const early = await cli(['snapshot', '--root', s.dst, '--time', String(d + skew + grace - 1), '--skew', String(skew), '--delete-grace', String(grace), '--force']);
      assert.match(early.stdout, /^snapshot time .*\n0 removed, 1 tombstone\(s\) still held\n$/);
      assert.ok(await exists(join(s.dst, p)), 'kept: the deleting transaction may not have committed by T');
      assert.deepEqual(tombstonePaths(s.dst), [p]);

      const onTime = await cli(['snapshot', '--root', s.dst, '--time', iso(d + skew + grace), '--skew', String(skew), '--delete-grace', String(grace), '--json', '--force']);
      const out = JSON.parse(onTime.stdout) as { snapshotTime: number; advanced: boolean; previous: number; removed: string[]; pending: number; held: unknown[] };
      assert.deepEqual(out, { snapshotTime: d + skew + grace, advanced: true, previous: d + skew + grace - 1, removed: [p], pending: 0, held: [] });
      assert.equal(await exists(join(s.dst, p)), false);
      assert.equal(manifestRow(s.dst, p), undefined);
      const logged = query<{ path: string; reason: string; snapshot_time: number }>(s.dst, 'SELECT path, reason, snapshot_time FROM removals');
      assert.deepEqual(logged.map((r) => [r.path, r.snapshot_time]), [[p, d + skew + grace]]);
      assert.match(logged[0]?.reason ?? '', /^tombstone applied: deleted on the source at /);
      // The rest of the standby still matches the source.
      assert.deepEqual(await standbyTree(s.dst), await standbyTree(s.src));
    });

    test('snapshot with an older --time prints that it was ignored and keeps the recorded T', { timeout: 60_000 }, async () => {
      const recorded = (await statusJson(s.dst)).snapshotTime as number;
      const r = await cli(['snapshot', '--root', s.dst, '--time', iso(recorded - 1000), '--force']);
      assert.match(r.stdout, new RegExp(`^snapshot time ${iso(recorded).replace(/\./g, '\\.')} \\(unchanged: the given time was older\\)`));
      assert.match(r.stderr, /"level":"warn",.*"code":"SNAPSHOT_OLDER","msg":"--time .* is older than the recorded snapshot/);
      assert.equal((await statusJson(s.dst)).snapshotTime, recorded);
    });

    test('the default grace holds a fresh deletion back, to the millisecond', { timeout: 60_000 }, async () => {
      const p = 'filestore/bb/bb01';
      await unlink(join(s.src, p));
      await syncOnce(s);
      const d = manifestRow(s.dst, p)?.deleted_at as number;
      for (const t of [d + 60_000, d + DEFAULT_SKEW + DEFAULT_GRACE - 1]) {
        const r = await cli(['snapshot', '--root', s.dst, '--time', String(t), '--force']);
        assert.match(r.stdout, /0 removed, 1 tombstone\(s\) still held/);
        assert.ok(await exists(join(s.dst, p)), `removed at T = D + ${t - d} ms`);
      }
      const r = await cli(['snapshot', '--root', s.dst, '--time', String(d + DEFAULT_SKEW + DEFAULT_GRACE), '--force']);
      assert.match(r.stdout, new RegExp(`removed ${p}\n1 removed, 0 tombstone\\(s\\) still held`));
      assert.equal(await exists(join(s.dst, p)), false);
    });

    test('bad --time, --skew or a missing --time: exit 2 naming the problem, nothing changes', { timeout: 60_000 }, async () => {
      const before = manifestRows(s.dst);
      const t = (await statusJson(s.dst)).snapshotTime;
      const cases: Array<[string[], RegExp]> = [
        [['snapshot', '--root', s.dst, '--time', 'yesterday'], /BAD_TIME: --time "yesterday" is not a time/],
        [['snapshot', '--root', s.dst, '--time', '2026-11-26 10:00:00'], /BAD_TIME: --time "2026-11-26 10:00:00" is not a time.*with a zone/],
        [['snapshot', '--root', s.dst, '--time', '2026-02-30T10:00:00Z'], /BAD_TIME: --time "2026-02-30T10:00:00Z"/],
        [['promote', '--root', s.dst, '--time', 'soon', '--dry-run'], /BAD_TIME: --time "soon" is not a time/],
        [['snapshot', '--root', s.dst], /MISSING_FLAG: snapshot: --time is required/],
        [['snapshot', '--root', s.dst, '--time', '0', '--skew=-5'], /BAD_FLAG: --skew takes a whole number from 0 to 86400000, not "-5"/],
        [['snapshot', '--root', s.dst, '--time', '0', '--delete-grace', 'ten'], /BAD_FLAG: --delete-grace takes a whole number/],
      ];
      await Promise.all(cases.map(async ([args, pattern]) => assertCleanFailure(await runCli(args, { timeoutMs: 30_000 }), 2, pattern)));
      assert.deepEqual(manifestRows(s.dst), before);
      assert.equal((await statusJson(s.dst)).snapshotTime, t);
    });

    test('status --json carries every documented field; human status starts with SAFE or UNSAFE', { timeout: 60_000 }, async () => {
      const p = 'filestore/bb/bb02';
      await unlink(join(s.src, p));
      await syncOnce(s);
      const d = manifestRow(s.dst, p)?.deleted_at as number;
      const st = await fullStatus(s.dst);
      const t = st.snapshotTime as number;
      const w = stateValue(s.dst, 'watermark') as number;
      const contact = stateValue(s.dst, 'lastContact') as number;
      assert.equal(typeof w, 'number');
      assert.deepEqual(st, {
        root: s.dst, safe: w >= t + DEFAULT_SKEW, reason: st.reason, snapshotTime: t, watermark: w, recoveryTarget: w - DEFAULT_SKEW,
        // No --db-primary: no WAL position, and the skew is the configured default.
        recoveryTargetLsn: null, recoveryTargetLsnAt: null, skewSource: 'configured', clockOffsetMs: null,
        skewMs: DEFAULT_SKEW, tombstonesPending: 1, oldestTombstone: d,
        // Live files only: aa01 and bb01 are gone, bb02 is a tombstone.
        files: 2, bytes: 'binary aa02\n'.length + 'x=1\n'.length,
        dirs: 4, symlinks: 0, lastContact: contact, lastContactAgeMs: st.lastContactAgeMs,
        agentConnected: false, receiverRunning: true, receiverPid: s.receiver.child.pid ?? null, quarantined: 0,
        feedIncomplete: null, deletionsHeld: 0, rootLost: null, verifyDamage: null,
      });
      // T is ten minutes past the last sync: the filestore is behind the DB.
      assert.equal(st.safe, false);
      assert.match(st.reason, /ms behind the DB snapshot plus skew/);
      assert.ok(typeof st.lastContactAgeMs === 'number' && st.lastContactAgeMs >= 0 && st.lastContactAgeMs < 60_000, String(st.lastContactAgeMs));

      const human = await cli(['status', '--root', s.dst]);
      assert.match(human.stdout, /^UNSAFE: the filestore is \d+ ms behind/);
      assert.match(human.stdout, new RegExp(`recovery target +${iso(w - DEFAULT_SKEW).replace(/\./g, '\\.')}`));
      assert.match(human.stdout, /tombstones +1 pending, oldest deleted /);
    });
  });

  describe('(b) promote and restore', { concurrency: false }, () => {
    let s: Standby;
    /** The DB snapshot time of this scenario: ten minutes before the sync, so W >= T + skew. */
    const T = Date.now() - 600_000;
    const OLD = T - 86_400_000;
    const FUTURE = Date.now() + 86_400_000;
    const BORN_AFTER = ['filestore/bb/past-skew', 'filestore/cc/future1', 'filestore/cc/future2', 'filestore/dd/new', 'links/new'];
    let before_: { tree: Awaited<ReturnType<typeof standbyTree>>; born: Record<string, number> };

    /** The watermark the receiver held when the test files were first recorded: it bounds their born times. */
    let heldWatermark = 0;

    before(async () => {
      s = await openStandby();
      // A first sync gives the receiver a watermark; before one, born times are unknown (0, kept).
      await buildTree(s.src, { 'filestore/aa/first': 'synced before the rest\n' });
      await setTime(join(s.src, 'filestore/aa/first'), OLD);
      await syncOnce(s);
      heldWatermark = stateValue(s.dst, 'watermark') as number;
      await buildTree(s.src, {
        'filestore/aa/old1': 'old one\n', 'filestore/aa/old2': 'old two\n',
        'filestore/bb/at-skew': 'born exactly T + skew\n', 'filestore/bb/past-skew': 'born T + skew + 1 ms\n',
        'filestore/cc/future1': 'future one\n', 'filestore/cc/future2': 'future two\n',
        'filestore/dd/old3': 'old three\n', 'filestore/dd/new': 'new in an old dir\n',
        'links/old': { symlink: '../filestore/aa/old1' }, 'links/new': { symlink: '../filestore/aa/old2' },
      });
      const times: Record<string, number> = {
        'filestore/aa/old1': OLD, 'filestore/aa/old2': OLD + 1, 'filestore/bb/at-skew': T + DEFAULT_SKEW, 'filestore/bb/past-skew': T + DEFAULT_SKEW + 1,
        'filestore/cc/future1': FUTURE, 'filestore/cc/future2': FUTURE + 1, 'filestore/dd/old3': OLD, 'filestore/dd/new': T + 60_000,
        'links/old': OLD, 'links/new': FUTURE, 'filestore/dd': FUTURE, // a directory is never born-after
      };
      for (const [p, ms] of Object.entries(times)) await setTime(join(s.src, p), ms);
      await syncOnce(s);
      await cli(['snapshot', '--root', s.dst, '--time', iso(T)]);
      before_ = { tree: await standbyTree(s.dst), born: bornTimes(s.dst) };
      assert.equal(before_.born['filestore/aa/old1'], OLD, 'born = source mtime');
      assert.equal(before_.born['filestore/cc/future1'], heldWatermark, 'born is never later than the watermark held at first record');
    });

    test('status is SAFE once T + skew <= W, with the recovery target W - skew', { timeout: 60_000 }, async () => {
      const human = await cli(['status', '--root', s.dst]);
      assert.match(human.stdout, /^SAFE: the filestore is \d+ ms ahead of the DB snapshot plus skew\n/);
    });

    test('promote warns FILESTORE_BEHIND when W < T + skew (and not when W >= T + skew)', { timeout: 60_000 }, async () => {
      const w = (await statusJson(s.dst)).watermark as number;
      const behind = await cli(['promote', '--root', s.dst, '--time', String(w - DEFAULT_SKEW + 1), '--dry-run']);
      assert.match(behind.stderr, /"level":"warn",.*"code":"FILESTORE_BEHIND","msg":"UNSAFE: the filestore is 1 ms behind the DB snapshot plus skew.*recovery target was /);
      const safe = await cli(['promote', '--root', s.dst, '--time', String(w - DEFAULT_SKEW), '--dry-run']);
      assert.doesNotMatch(safe.stderr, /FILESTORE_BEHIND/);
    });

    test('promote refuses, exit 1 AGENT_CONNECTED, while an agent is connected; changes nothing', { timeout: 60_000 }, async () => {
      const session = await dial({
        url: s.url, token: s.token, attempts: 3, baseDelayMs: 100, maxDelayMs: 500, handshakeTimeoutMs: 10_000, log: createLogger('silent'),
      });
      try {
        await waitFor('the receiver to record the connected agent', () => stateValue(s.dst, 'agentConnected') === 1);
        const r = await runCli(['promote', '--root', s.dst, '--time', iso(T)], { timeoutMs: 30_000 });
        assertCleanFailure(r, 1, /AGENT_CONNECTED: an agent is connected to the receiver \(pid \d+\).*stop the agent/);
        assert.equal((await fullStatus(s.dst)).agentConnected, true);
      } finally {
        session.conn.close();
        await session.conn.closed;
      }
      await waitForReceiverIdle(s.dst);
      assert.deepEqual(await standbyTree(s.dst), before_.tree);
      assert.deepEqual(bornTimes(s.dst), before_.born);
    });

    test('promote --dry-run names exactly the born-after files and changes nothing', { timeout: 60_000 }, async () => {
      const r = await cli(['promote', '--root', s.dst, '--time', iso(T), '--dry-run']);
      const named = [...r.stdout.matchAll(/^would quarantine (\S+): born /gm)].map((m) => m[1]);
      assert.deepEqual(named, BORN_AFTER);
      assert.match(r.stdout, new RegExp(`\n${BORN_AFTER.length} path\\(s\\); nothing changed \\(dry run\\)\n$`));
      const json = JSON.parse((await cli(['promote', '--root', s.dst, '--time', iso(T), '--dry-run', '--json'])).stdout) as { dryRun: boolean; safe: boolean; paths: Array<{ path: string }> };
      assert.equal(json.dryRun, true);
      assert.equal(json.safe, true);
      assert.deepEqual(json.paths.map((p) => p.path), BORN_AFTER);
      assert.deepEqual(await standbyTree(s.dst), before_.tree);
      assert.deepEqual(bornTimes(s.dst), before_.born);
      assert.equal(await exists(join(s.dst, '.warmsync/quarantine')), false);
    });

    test('promote quarantines exactly the files born after T + skew and keeps the rest; restore undoes it', { timeout: 60_000 }, async () => {
      const r = await cli(['promote', '--root', s.dst, '--time', iso(T), '--json']);
      const out = JSON.parse(r.stdout) as { quarantine: string; removed: string[]; failed: unknown[]; safe: boolean };
      assert.deepEqual(out.removed, BORN_AFTER);
      assert.deepEqual(out.failed, []);
      assert.equal(out.safe, true);
      const after = await standbyTree(s.dst);
      assert.deepEqual(after, Object.fromEntries(Object.entries(before_.tree).filter(([p]) => !BORN_AFTER.includes(p))));
      const qdir = join(s.dst, '.warmsync/quarantine', out.quarantine);
      const quarantined = await readTree(qdir, { skip: (rel) => rel === 'report.json' });
      for (const p of BORN_AFTER) assert.deepEqual(quarantined[p], before_.tree[p], `${p} in the quarantine`);
      const report = JSON.parse(await readFile(join(qdir, 'report.json'), 'utf8')) as { entries: Array<{ path: string }> };
      assert.deepEqual(report.entries.map((e) => e.path), BORN_AFTER);
      assert.equal((await fullStatus(s.dst)).quarantined, BORN_AFTER.length);
      assert.deepEqual(JSON.parse((await cli(['restore', '--root', s.dst, '--list', '--json'])).stdout), { quarantines: [out.quarantine] });

      const restored = await cli(['restore', '--root', s.dst, '--id', out.quarantine]);
      assert.deepEqual([...restored.stdout.matchAll(/^restored (\S+)$/gm)].map((m) => m[1]), BORN_AFTER);
      assert.match(restored.stdout, new RegExp(`${BORN_AFTER.length} restored, 0 skipped\n$`));
      assert.deepEqual(await standbyTree(s.dst), before_.tree);
      assert.deepEqual(bornTimes(s.dst), before_.born, 'original born times are back');
      assert.equal((await fullStatus(s.dst)).quarantined, 0);
      // The standby matches the source again: a following agent run has nothing to send.
      const summary = await syncOnce(s);
      assert.equal(summary.filesSent + summary.metaUpdates + summary.tombstones, 0, JSON.stringify(summary));
    });
  });

  describe('(c) verify', { concurrency: false }, () => {
    let s: Standby;
    before(async () => {
      s = await openStandby();
      await buildTree(s.src, { 'data/a.bin': Buffer.alloc(4096, 0x5a), 'data/b.bin': 'bee\n', 'data/c.bin': 'sea\n', 'data/sub/d.bin': 'dee\n' });
      await settleTimes(s.src);
      await syncOnce(s);
    });

    test('finds a bit flip that kept size and mtime, a missing and a stray file (exit 1), UNSAFE until agent --once repairs them', { timeout: 60_000 }, async () => {
      const clean = await cli(['verify', '--root', s.dst]);
      assert.match(clean.stdout, /^OK: 6 entries checked, 4108 bytes hashed; 0 corrupt, 0 missing, 0 stray\n$/);

      const a = join(s.dst, 'data/a.bin');
      const { size, mtimeMs } = await stat(a);
      const bytes = await readFile(a);
      bytes[2048] = (bytes[2048] as number) ^ 0x01;
      await writeFile(a, bytes);
      await setTime(a, Math.trunc(mtimeMs));
      const flipped = await stat(a);
      assert.equal(flipped.size, size);
      assert.equal(Math.trunc(flipped.mtimeMs), Math.trunc(mtimeMs), 'same size and mtime: only the content differs');
      await unlink(join(s.dst, 'data/b.bin'));
      await writeFile(join(s.dst, 'data/stray.txt'), 'not from the source\n');

      const r = await runCli(['verify', '--root', s.dst], { timeoutMs: 30_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, /^corrupt data\/a\.bin: content hashes to /m);
      assert.match(r.stdout, /^missing data\/b\.bin: file not on disk$/m);
      assert.match(r.stdout, /^stray {3}data\/stray\.txt: file not in the manifest$/m);
      assert.match(r.stdout, /^DIFFERENCES: .*1 corrupt, 1 missing, 1 stray\nstatus says UNSAFE until/m);
      const json = await runCli(['verify', '--root', s.dst, '--json'], { timeoutMs: 30_000 });
      assert.equal(json.code, 1);
      const report = JSON.parse(json.stdout) as { ok: boolean; corrupt: Array<{ path: string }>; missing: Array<{ path: string }>; stray: Array<{ path: string }> };
      assert.deepEqual({ ok: report.ok, corrupt: report.corrupt.map((p) => p.path), missing: report.missing.map((p) => p.path), stray: report.stray.map((p) => p.path) },
        { ok: false, corrupt: ['data/a.bin'], missing: ['data/b.bin'], stray: ['data/stray.txt'] });

      // Known lacking until an agent pass has sent them again: status says so, though W covers T.
      await cli(['snapshot', '--root', s.dst, '--time', iso(Date.now() - 600_000)]);
      assert.match(r.stdout, /status says UNSAFE until the agent's next full pass has sent the corrupt and missing files again/);
      const lacking = await fullStatus(s.dst) as FullStatus & { verifyDamage: { files: number; at: number } | null };
      assert.equal(lacking.safe, false);
      assert.equal(lacking.verifyDamage?.files, 2);
      assert.match(lacking.reason, /^verify found 2 file\(s\) missing or corrupt here at .*: the agent sends them again at its next full pass/);
      assert.ok((lacking.watermark as number) >= (lacking.snapshotTime as number) + DEFAULT_SKEW, 'W alone would have said SAFE');

      // A pass that sends one of them again (the other excluded from it) leaves the finding standing, with what is left.
      const partial = await syncOnce(s, ['--exclude', 'data/b.bin']);
      assert.equal(partial.filesSent, 1, JSON.stringify(partial));
      const still = await fullStatus(s.dst) as FullStatus & { verifyDamage: { files: number; at: number } | null };
      assert.equal(still.safe, false);
      assert.deepEqual(still.verifyDamage, { files: 1, at: lacking.verifyDamage?.at });

      // The damaged entries are sent again by the next reconciliation, and status is W's again.
      const summary = await syncOnce(s);
      assert.equal(summary.filesSent, 1, JSON.stringify(summary));
      assert.deepEqual(await readFile(a), await readFile(join(s.src, 'data/a.bin')));
      const repaired = await fullStatus(s.dst) as FullStatus & { verifyDamage: unknown };
      assert.equal(repaired.verifyDamage, null);
      assert.equal(repaired.safe, true, repaired.reason);
      // A stray is not the agent's to delete (the manifest never knew it): the operator removes it.
      await rm(join(s.dst, 'data/stray.txt'));
      const again = await cli(['verify', '--root', s.dst]);
      assert.match(again.stdout, /^OK: .* 0 corrupt, 0 missing, 0 stray\n$/);
      assert.deepEqual(await standbyTree(s.dst), await standbyTree(s.src));
    });
  });

  describe('(c2) verify beside a live agent', { concurrency: false }, () => {
    test('what verify finds stays UNSAFE while the live agent works from its older manifest, and clears with its next full pass', { timeout: 60_000 }, async () => {
      const s = await openStandby();
      await buildTree(s.src, { 'data/a.bin': 'aye\n', 'data/b.bin': 'bee\n' });
      await settleTimes(s.src);
      let agent = startLiveAgent(s);
      await waitForConvergence(s, { what: 'the first pass' });
      await cli(['snapshot', '--root', s.dst, '--time', iso(Date.now() - 600_000)]);
      await waitFor('SAFE', async () => (await fullStatus(s.dst)).safe, 10_000);
      await unlink(join(s.dst, 'data/b.bin'));
      assert.equal((await runCli(['verify', '--root', s.dst], { timeoutMs: 30_000 })).code, 1);
      // Live changes go on, heartbeats move W, but no full pass has read the manifest verify marked.
      await writeFile(join(s.src, 'data/c.bin'), 'sea\n');
      await waitFor('data/c.bin on the standby', () => exists(join(s.dst, 'data/c.bin')), 10_000);
      await sleep(1500);
      const lacking = await fullStatus(s.dst);
      assert.equal(lacking.safe, false);
      assert.match(lacking.reason, /^verify found 1 file\(s\) missing or corrupt here/);
      assert.equal(await exists(join(s.dst, 'data/b.bin')), false);
      // Restarted, the agent passes in full, sends the file again, and the finding is settled.
      assert.equal(await agent.stop('SIGTERM', 20_000), 0);
      agent = startLiveAgent(s);
      await waitFor('data/b.bin back', () => exists(join(s.dst, 'data/b.bin')), 20_000);
      await waitFor('SAFE again', async () => (await fullStatus(s.dst)).safe, 10_000);
      assert.equal(await agent.stop('SIGTERM', 20_000), 0);
    });
  });

  describe('(d) receiver --snapshot-cmd, /healthz and /metrics', { concurrency: false }, () => {
    test('--snapshot-cmd applies tombstones while the receiver runs; /healthz and /metrics', { timeout: 60_000 }, async () => {
      const ws = await openWorkspace();
      // The command prints the time the test writes to a file once the deletion is recorded: D + skew,
      // with no delete grace (a T ahead of this host's clock + skew would be refused, SNAPSHOT_FUTURE).
      const timeFile = join(ws.dst, '..', 'snapshot-time.txt');
      const receiver = await startReceiverProcess([...receiverArgs(ws), '--delete-grace', '0', '--snapshot-cmd', `cat '${timeFile}'`, '--snapshot-interval', '1']);
      const s: Standby = { ...ws, receiver, url: receiver.url };
      await buildTree(s.src, { 'filestore/aa/one': 'one\n', 'filestore/aa/two': 'two two\n', 'etc/x.conf': 'x\n' });
      await settleTimes(s.src);
      await syncOnce(s);
      await unlink(join(s.src, 'filestore/aa/one'));
      await syncOnce(s);
      const t = (manifestRow(s.dst, 'filestore/aa/one')?.deleted_at as number) + DEFAULT_SKEW;
      await writeFile(timeFile, `${iso(t).replace('T', ' ').replace('Z', '+00')}\n`);
      // The file leaves the disk inside the poller's transaction; its row goes when that commits.
      await waitFor('the poller to apply the tombstone (file and row gone)',
        async () => !(await exists(join(s.dst, 'filestore/aa/one'))) && manifestRow(s.dst, 'filestore/aa/one') === undefined, 10_000);
      await waitFor('the log line', () => /"level":"info",.*"msg":"removed filestore\/aa\/one: tombstone applied/.test(receiver.stderr()), 5000);
      assert.equal((await statusJson(s.dst)).snapshotTime, t);

      const base = s.url.replace(/^ws:/, 'http:');
      const health = await fetch(`${base}/healthz`);
      assert.equal(health.status, 200);
      assert.match(health.headers.get('content-type') ?? '', /application\/json/);
      const h = await health.json() as { ok: boolean; safe: unknown; reason: string };
      assert.equal(h.ok, true);
      assert.equal(h.safe, false, 'T + skew is ahead of W (D + 2 skew > the W of the last sync)');
      assert.match(h.reason, /behind/);

      const anon = await fetch(`${base}/metrics`);
      assert.equal(anon.status, 401);
      assert.match(anon.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.doesNotMatch(await anon.text(), /warmsync_files/);
      assert.equal((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer not-the-token' } })).status, 401);
      const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${s.token}` } });
      assert.equal(metrics.status, 200);
      const text = await metrics.text();
      const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      assert.equal(value('warmsync_files'), 2);
      assert.equal(value('warmsync_bytes'), 'two two\n'.length + 'x\n'.length);
      assert.equal(value('warmsync_tombstones_pending'), 0);
      assert.equal(value('warmsync_snapshot_time_seconds'), t / 1000);
      assert.ok(value('warmsync_watermark_seconds') > 0);
      assert.equal(value('warmsync_safe'), 0);
      assert.equal(value('warmsync_agent_connected'), 0);
      assert.ok(value('warmsync_files_received_total') >= 3, text);
      for (const name of ['warmsync_watermark_lag_seconds', 'warmsync_quarantined_files', 'warmsync_bytes_received_total']) {
        assert.ok(Number.isFinite(value(name)), `${name} missing from /metrics`);
      }
    });

    test('a garbage, failing or hanging --snapshot-cmd is logged, applies nothing, and agents are still served', { timeout: 60_000 }, async () => {
      const commands: Array<[string, RegExp]> = [
        ['echo garbage', /"code":"SNAPSHOT_CMD_OUTPUT","msg":"snapshot command printed \\"garbage\\", not a time; nothing applied/],
        ['echo no such database >&2; exit 3', /"code":"SNAPSHOT_CMD_FAILED","msg":"snapshot command failed \(exit 3: no such database\); nothing applied/],
        ['sleep 5', /"code":"SNAPSHOT_CMD_FAILED","msg":"snapshot command failed \(killed after 1000 ms\); nothing applied/],
      ];
      await Promise.all(commands.map(async ([command, logged]) => {
        const ws = await openWorkspace();
        const receiver = await startReceiverProcess([...receiverArgs(ws), '--snapshot-cmd', command, '--snapshot-interval', '1']);
        const s: Standby = { ...ws, receiver, url: receiver.url };
        await waitFor(`${command}: logged`, () => logged.test(receiver.stderr()), 10_000);
        await buildTree(s.src, { 'filestore/aa/one': 'one\n', 'filestore/aa/two': 'two\n' });
        await syncOnce(s);
        await unlink(join(s.src, 'filestore/aa/one'));
        await syncOnce(s);
        const count = (): number => receiver.stderr().split('\n').filter((l) => logged.test(l)).length;
        const seen = count();
        await waitFor(`${command}: still polling`, () => count() > seen, 10_000);
        assert.ok(await exists(join(s.dst, 'filestore/aa/one')), 'nothing applied: the tombstone stays');
        assert.deepEqual(tombstonePaths(s.dst), ['filestore/aa/one']);
        assert.equal((await statusJson(s.dst)).snapshotTime, null);
        assert.equal(await receiver.stop(), 0, receiver.stderr());
      }));
    });
  });

  describe('(e) a root that never had a receiver', { concurrency: false }, () => {
    test('operator commands exit 1 with NO_MANIFEST and create nothing', { timeout: 60_000 }, async () => {
      const ws = await openWorkspace();
      const cases = [
        ['snapshot', '--root', ws.dst, '--time', '2026-11-26T10:00:00Z'],
        ['promote', '--root', ws.dst, '--time', '2026-11-26T10:00:00Z'],
        ['promote', '--root', ws.dst, '--time', '2026-11-26T10:00:00Z', '--dry-run'],
        ['restore', '--root', ws.dst],
        ['status', '--root', ws.dst],
        ['status', '--root', ws.dst, '--json'],
        ['verify', '--root', ws.dst],
      ];
      await Promise.all(cases.map(async (args) => {
        assertCleanFailure(await runCli(args, { timeoutMs: 30_000 }), 1, /NO_MANIFEST: no manifest at .*manifest\.sqlite: has a receiver run on this root\?/);
      }));
      assert.deepEqual(await readdir(ws.dst), []);
    });
  });

  describe('(f) a standby root lost under a running receiver', { concurrency: false }, () => {
    test('status, /healthz and promote say UNSAFE, naming the root, and failover refuses, once it is replaced or removed, whatever W says', { timeout: 60_000 }, async () => {
      // The state dir outside the root (--state-dir), so the manifest outlives the root.
      const ws = await openWorkspace();
      const stateDir = join(ws.dir, 'standby-state');
      const receiver = await startReceiverProcess([...receiverArgs(ws), '--state-dir', stateDir]);
      const s: Standby = { ...ws, receiver, url: receiver.url };
      await buildTree(s.src, { 'filestore/aa/one': 'one\n', 'etc/system.yaml': 'x\n' });
      await settleTimes(s.src);
      await syncOnce(s);
      const on = ['--root', s.dst, '--state-dir', stateDir];
      const t = Date.now() - 600_000;
      await cli(['snapshot', ...on, '--time', iso(t)]);
      const status = async (): Promise<StatusJson & { rootLost: string | null }> => JSON.parse((await cli(['status', ...on, '--json'])).stdout) as StatusJson & { rootLost: string | null };
      const health = async (): Promise<{ safe: boolean; reason: string }> => await (await fetch(`${s.url.replace(/^ws:/, 'http:')}/healthz`)).json() as { safe: boolean; reason: string };
      assert.equal((await status()).safe, true);
      assert.equal((await health()).safe, true);

      // Replaced: an empty directory where the standby was (as after a lazy unmount).
      await rename(s.dst, `${s.dst}.moved`);
      await mkdir(s.dst);
      const replaced = await status();
      assert.equal(replaced.safe, false);
      assert.equal(replaced.rootLost, `${s.dst} is not the directory the receiver started on (replaced, moved, or a file system unmounted from it)`);
      assert.equal(replaced.reason, `the standby root ${replaced.rootLost}: a failover would not find its files there`);
      assert.ok((replaced.watermark as number) >= t + DEFAULT_SKEW, 'W alone would have said SAFE');
      assert.match((await cli(['status', ...on])).stdout, /^UNSAFE: the standby root .* is not the directory the receiver started on/);
      const healthReplaced = await health();
      assert.equal(healthReplaced.safe, false);
      assert.equal(healthReplaced.reason, replaced.reason);
      const promote = await cli(['promote', ...on, '--time', iso(t), '--dry-run']);
      assert.match(promote.stderr, /"code":"FILESTORE_BEHIND","msg":"UNSAFE: the standby root .* is not the directory the receiver started on/);

      // Removed.
      await rm(s.dst, { recursive: true });
      assert.equal((await status()).rootLost, `${s.dst} is missing`);
      assert.equal((await health()).safe, false);
      const failover = await runCli(['failover', ...on], { timeoutMs: 30_000 });
      assertCleanFailure(failover, 1, new RegExp(`STANDBY_ROOT_LOST: the standby root ${s.dst} is missing: no recovery target`));

      // Put back: the same directory again, and SAFE again.
      await rename(`${s.dst}.moved`, s.dst);
      assert.equal((await status()).rootLost, null);
      assert.equal((await status()).safe, true);
      assert.equal((await health()).safe, true);
      assert.match((await cli(['failover', ...on])).stdout, /recovery_target_time/);
    });

    test('a file system below the root that is not mounted at a start: UNSAFE naming it until it is back; verify, the receiver stopped, accepts a new layout', {
      timeout: 90_000, skip: cannotMount(),
    }, async () => {
      const ws = await openWorkspace();
      const stateDir = join(ws.dir, 'standby-state');
      // A volume of its own for the filestore: a tmpfs, bound into the standby (unmounting the bind keeps its files).
      const volume = join(ws.dir, 'volume');
      const filestore = join(ws.dst, 'data/filestore');
      await mkdir(volume);
      await mkdir(filestore, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', volume]);
      const mountFilestore = (): void => void execFileSync('mount', ['--bind', volume, filestore]);
      mountFilestore();
      try {
        const start = async (): Promise<Standby> => {
          const receiver = await startReceiverProcess([...receiverArgs(ws), '--state-dir', stateDir]);
          return { ...ws, receiver, url: receiver.url };
        };
        let s = await start();
        await buildTree(s.src, { 'data/filestore/ab/ab01': 'binary ab01\n', 'etc/system.yaml': 'x\n' });
        await settleTimes(s.src);
        await syncOnce(s);
        const on = ['--root', s.dst, '--state-dir', stateDir];
        await cli(['snapshot', ...on, '--time', iso(Date.now() - 600_000)]);
        const status = async (): Promise<StatusJson & { rootLost: string | null }> => JSON.parse((await cli(['status', ...on, '--json'])).stdout) as StatusJson & { rootLost: string | null };
        assert.equal((await status()).safe, true);

        // A boot without the volume: the receiver starts on a root whose filestore is an empty directory.
        assert.equal(await s.receiver.stop(), 0);
        execFileSync('umount', [filestore]);
        s = await start();
        const lost = `${s.dst}: the file system mounted at ${filestore} when the receiver started is not mounted there now`;
        assert.match(s.receiver.stderr(), /"code":"STANDBY_ROOT_LOST"/);
        assert.equal((await status()).rootLost, lost);
        // The agent plans against the manifest, which still lists the files: it sends nothing, and W moves on.
        await syncOnce(s);
        const afterSync = await status();
        assert.equal(afterSync.safe, false);
        assert.equal(afterSync.reason, `the standby root ${lost}: a failover would not find its files there`);
        const health = await (await fetch(`${s.url.replace(/^ws:/, 'http:')}/healthz`)).json() as { safe: boolean };
        assert.equal(health.safe, false);

        // Mounted again: SAFE again.
        mountFilestore();
        assert.equal((await status()).rootLost, null);
        assert.equal((await status()).safe, true);

        // The filestore moved onto the root's own disk on purpose: verify, with the receiver stopped,
        // checks every file and records the new layout; a receiver running keeps the old one.
        execFileSync('umount', [filestore]);
        await cp(volume, filestore, { recursive: true, preserveTimestamps: true });
        const running = await runCli(['verify', ...on], { timeoutMs: 30_000 });
        assert.equal(running.code, 0, running.stderr);
        assert.match(running.stdout, /note: file systems mounted below the root: none; the receiver expects data\/filestore/);
        assert.equal((await status()).rootLost, lost);
        assert.equal(await s.receiver.stop(), 0);
        const stopped = await cli(['verify', ...on]);
        assert.match(stopped.stdout, /recorded the file systems mounted below the root: none \(was: data\/filestore\)/);
        s = await start();
        assert.equal((await status()).rootLost, null);
        assert.equal((await status()).safe, true);
      } finally {
        execFileSync('umount', ['-l', volume]);
        try {
          execFileSync('umount', ['-l', filestore], { stdio: 'ignore' });
        } catch {
          // not mounted
        }
      }
    });
  });
});
