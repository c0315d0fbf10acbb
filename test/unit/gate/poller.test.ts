/**
 * gate/poller: parseSnapshotOutput reads the first non-empty line of a snapshot command as a time
 * (psql output with spaces and blank lines, epoch ms; garbage, a time without a zone and empty output
 * give null). Then real runs of /bin/sh commands against a real Manifest + GateExecutor in a temp
 * dir: a good time applies its tombstones; a failing, hanging (killed, with its children) or
 * garbage-printing command is logged and applies nothing, as is one printing too much; an older
 * time is ignored; a time later than the host's clock + skew is refused (SNAPSHOT_FUTURE); the timer runs the command by itself and stop() ends it.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Entry } from '../../../src/entry.js';
import { GateExecutor } from '../../../src/gate/executor.js';
import type { GateTimes } from '../../../src/gate/policy.js';
import { commandSource, parseSnapshotOutput, startSnapshotPoller, type SnapshotPoller } from '../../../src/gate/poller.js';
import { createLogger } from '../../../src/log.js';
import { Manifest } from '../../../src/manifest/manifest.js';
import { resolveStateDir } from '../../../src/statedir.js';

const TEN = Date.parse('2026-11-26T10:00:00.000Z');

describe('parseSnapshotOutput', () => {
  const cases: Array<{ name: string; stdout: string; want: number | null }> = [
    { name: 'psql -XAt: PostgreSQL form with microseconds', stdout: '2026-11-26 10:00:00.123456+00\n', want: TEN + 123 },
    { name: 'psql -t: leading space, trailing blank line', stdout: ' 2026-11-26 10:00:00.5+00\n\n', want: TEN + 500 },
    { name: 'blank lines and spaces before the time', stdout: '\n\n   \n  2026-11-26 11:00:00+01  \n\n', want: TEN },
    { name: 'CRLF line ends', stdout: '2026-11-26T10:00:00Z\r\n', want: TEN },
    { name: 'ISO 8601 with Z, no newline', stdout: '2026-11-26T10:00:00.000Z', want: TEN },
    { name: 'epoch milliseconds', stdout: `${TEN}\n`, want: TEN },
    { name: 'only the first non-empty line counts', stdout: '2026-11-26T10:00:00Z\ngarbage\n', want: TEN },
    { name: 'garbage', stdout: 'garbage\n', want: null },
    { name: 'garbage first, a time after it', stdout: 'garbage\n2026-11-26T10:00:00Z\n', want: null },
    { name: 'a psql error text', stdout: 'psql: error: connection to server failed\n', want: null },
    { name: 'empty output (pg_last_xact_replay_timestamp() is NULL)', stdout: '', want: null },
    { name: 'only blank lines', stdout: '\n \n\t\n', want: null },
    { name: 'a time without a zone is refused', stdout: '2026-11-26 10:00:00\n', want: null },
    { name: 'an impossible date', stdout: '2026-02-30 10:00:00+00\n', want: null },
  ];
  for (const c of cases) {
    test(c.name, () => assert.equal(parseSnapshotOutput(c.stdout), c.want));
  }
});

describe('a real poller against a real Manifest and GateExecutor', () => {
  const TIMES: GateTimes = { skewMs: 0, deleteGraceMs: 0 };
  let tmp: string;
  let root: string;
  let manifest: Manifest;
  let executor: GateExecutor;
  let lines: string[];
  const pollers: SnapshotPoller[] = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-poller-'));
  });
  after(async () => {
    await Promise.all(pollers.map((p) => p.stop()));
    manifest?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  let n = 0;
  /** A fresh root holding `gone.bin`, deleted on the source at 09:00 (tombstone), and `kept.bin`. */
  beforeEach(async () => {
    manifest?.close();
    root = path.join(tmp, `root-${n++}`);
    await mkdir(root);
    const stateDir = resolveStateDir(root, undefined);
    manifest = Manifest.open(stateDir.abs);
    lines = [];
    executor = new GateExecutor(manifest, root, stateDir, createLogger('debug', (l) => lines.push(l)));
    for (const name of ['gone.bin', 'kept.bin']) {
      await writeFile(path.join(root, name), name);
      const e: Entry = { path: name, kind: 'file', size: name.length, mtimeMs: TEN - 7_200_000, mode: 0o644, hash: '0123456789abcdef', target: null };
      manifest.recordPresent(e, TEN - 7_200_000);
    }
    manifest.recordTombstone('gone.bin', TEN - 3_600_000, TEN - 3_600_000);
  });

  /** A poller whose timer will not fire during a test (runOnce drives it). */
  function poller(command: string, timeoutMs = 5000, intervalMs = 600_000, now?: () => number): SnapshotPoller {
    const p = startSnapshotPoller({ source: commandSource(command, timeoutMs), intervalMs, executor, times: TIMES, log: createLogger('debug', (l) => lines.push(l)), ...(now ? { now } : {}) });
    pollers.push(p);
    return p;
  }

  function assertNothingApplied(): void {
    assert.equal(manifest.getNumber('snapshotTime'), null);
    assert.ok(existsSync(path.join(root, 'gone.bin')), 'the tombstoned file is still on disk');
    assert.equal(manifest.get('gone.bin')?.deletedAt, TEN - 3_600_000);
  }

  test('echo a time: recorded, and the tombstone it allows is applied', async () => {
    const p = poller('echo 2026-11-26T10:00:00Z');
    assert.equal(await p.runOnce(), true);
    assert.equal(manifest.getNumber('snapshotTime'), TEN);
    assert.equal(existsSync(path.join(root, 'gone.bin')), false);
    assert.equal(manifest.get('gone.bin'), undefined);
    assert.ok(existsSync(path.join(root, 'kept.bin')));
    assert.ok(lines.some((l) => /removed gone\.bin: tombstone applied/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /snapshot 2026-11-26T10:00:00.000Z: removed 1, 0 tombstone\(s\) still held/.test(l)), lines.join('\n'));
  });

  test('exit 3: logged with its exit status and stderr, nothing applied', async () => {
    const p = poller('echo "psql: could not connect" >&2; exit 3');
    assert.equal(await p.runOnce(), false);
    assertNothingApplied();
    assert.ok(lines.some((l) => /WARN +SNAPSHOT_CMD_FAILED: snapshot command failed \(exit 3: psql: could not connect\); nothing applied/.test(l)), lines.join('\n'));
  });

  test('plain exit 3', async () => {
    assert.equal(await poller('exit 3').runOnce(), false);
    assertNothingApplied();
    assert.ok(lines.some((l) => /SNAPSHOT_CMD_FAILED: .*exit 3/.test(l)), lines.join('\n'));
  });

  test('sleep 5 with a 300 ms timeout: killed, logged, nothing applied, well before 5 s', async () => {
    const p = poller('sleep 5', 300);
    const started = Date.now();
    assert.equal(await p.runOnce(), false);
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
    assertNothingApplied();
    assert.ok(lines.some((l) => /SNAPSHOT_CMD_FAILED: snapshot command failed \(killed after 300 ms\)/.test(l)), lines.join('\n'));
  });

  test('a timed-out command\'s children are killed too (no process left behind each interval)', async () => {
    const pidFile = path.join(tmp, `sleep-${n}.pid`);
    const p = poller(`sleep 30 & echo $! > '${pidFile}'; wait`, 300);
    assert.equal(await p.runOnce(), false);
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    assert.ok(Number.isInteger(pid) && pid > 0);
    // Gone, or a zombie waiting for a reaper: either way no longer running.
    const running = (): boolean => {
      try {
        return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 2000;
    while (running() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    const still = running();
    if (still) process.kill(pid, 'SIGKILL');
    assert.equal(still, false, `the command's child ${pid} (sleep 30) outlived the timeout`);
    assertNothingApplied();
  });

  test('a command printing more than 64 KiB is killed, logged, nothing applied', async () => {
    assert.equal(await poller('yes 2026-11-26T10:00:00Z | head -c 100000', 5000).runOnce(), false);
    assertNothingApplied();
    assert.ok(lines.some((l) => /SNAPSHOT_CMD_FAILED: snapshot command failed \(killed: printed more than 65536 bytes\)/.test(l)), lines.join('\n'));
  });

  test('echo garbage: logged with what it printed, nothing applied', async () => {
    assert.equal(await poller('echo garbage').runOnce(), false);
    assertNothingApplied();
    assert.ok(lines.some((l) => /WARN +SNAPSHOT_CMD_OUTPUT: snapshot command printed "garbage", not a time; nothing applied/.test(l)), lines.join('\n'));
  });

  test('empty output: logged, nothing applied', async () => {
    assert.equal(await poller('true').runOnce(), false);
    assertNothingApplied();
    assert.ok(lines.some((l) => /SNAPSHOT_CMD_OUTPUT: snapshot command printed "", not a time/.test(l)), lines.join('\n'));
  });

  test('a time older than the recorded one is ignored (T never moves backwards)', async () => {
    assert.equal(await poller('echo 2026-11-26T10:00:00Z').runOnce(), true);
    assert.equal(await poller('echo 2026-11-26T08:00:00Z').runOnce(), false);
    assert.equal(manifest.getNumber('snapshotTime'), TEN);
    assert.ok(lines.some((l) => /older than the recorded 2026-11-26T10:00:00.000Z; ignored/.test(l)), lines.join('\n'));
  });

  test('a T later than this host\'s clock + skew: warned SNAPSHOT_FUTURE, not recorded, nothing applied; a later true T still applies', async () => {
    const clock = (): number => TEN - TIMES.skewMs - 1; // the source's T is 1 ms past now + skew
    assert.equal(await poller('echo 2026-11-26T10:00:00Z', 5000, 600_000, clock).runOnce(), false);
    assertNothingApplied();
    assert.ok(lines.some((l) => /WARN +SNAPSHOT_FUTURE: snapshot source gave T 2026-11-26T10:00:00.000Z is 1 ms past this host's clock .*; not recorded, nothing applied/.test(l)), lines.join('\n'));
    // At now + skew exactly it is accepted.
    assert.equal(await poller('echo 2026-11-26T10:00:00Z', 5000, 600_000, () => TEN - TIMES.skewMs).runOnce(), true);
    assert.equal(manifest.getNumber('snapshotTime'), TEN);
  });

  test('the timer runs the command by itself; runs never overlap; stop() ends it', async () => {
    const counter = path.join(tmp, `runs-${n}.txt`);
    const p = poller(`echo run >> '${counter}'; echo 2026-11-26T10:00:00Z`, 5000, 50);
    const deadline = Date.now() + 5000;
    // The poller shares this connection: wait until its transaction is over, not just begun.
    const applied = (): boolean => !manifest.db.inTransaction && manifest.get('gone.bin') === undefined;
    while (!applied() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.equal(manifest.getNumber('snapshotTime'), TEN);
    assert.equal(existsSync(path.join(root, 'gone.bin')), false);
    await p.stop();
    const runs = readFileSync(counter, 'utf8').split('\n').filter(Boolean).length;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(readFileSync(counter, 'utf8').split('\n').filter(Boolean).length, runs, 'no run after stop()');
  });
});
