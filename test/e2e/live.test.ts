// e2e: `warmsync agent` without --once (the daemon) against a real `warmsync receiver`, as an
// operator runs them (child processes, 127.0.0.1, SQLite). One standby, one agent, in order:
// the initial sync converges; then, live: add, edit (content and mode), delete (kept on the
// standby as a tombstone), rename (old path tombstoned), mkdir with nested files and rmdir, symlinks;
// the latency from a small file's close on the source to its rename into place on the standby
// (measured and printed, not asserted); a log-like file appended every few ms that ends identical
// once quiet; a burst of 2,000 files; the watermark W passes a change only once it is on the
// standby, and `snapshot --time` before W makes `status` say safe; the receiver SIGKILLed and
// restarted on the same port while files change; the agent SIGKILLed and restarted (what changed
// meanwhile arrives, and only that is re-hashed); SIGTERM stops the agent with exit 0. Apart: a
// receiver whose one agent slot is taken turns the agent away (BUSY) and it retries with delays that
// grow, then syncs once the slot frees; SIGHUP stops agent and receiver as cleanly as SIGTERM.
// The agent runs with the default --rescan-interval (600 s), so every convergence here is the
// watcher's doing, not the safety-net rescan's.
import assert from 'node:assert/strict';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { appendFile, chmod, mkdir, open, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import {
  buildTree, closeStandbys, exists, findTempFiles, manifestRow, manifestRows, openStandby, readSynced, restartReceiver, runCli,
  settleTimes, startLiveAgent, statusJson, tombstonePaths, uncachedFiles, waitFor, waitForConvergence, waitForReceiverIdle,
  type AgentProcess, type Standby, type TreeSpec,
} from '../helpers/e2e.js';
import { RawPeer } from '../helpers/peer.js';

after(closeStandbys);

const INITIAL: TreeSpec = {
  'etc/system.yaml': 'shared:\n  database:\n    type: postgresql\n',
  'etc/security/master.key': { content: '00112233445566778899aabbccddeeff\n', mode: 0o600 },
  'data/filestore/ab/ab01': 'binary ab01\n'.repeat(50),
  'data/filestore/cd/cd02': 'binary cd02\n'.repeat(3),
  'docs/readme.txt': 'read me\n',
  'docs/old.txt': 'to be deleted\n',
  'docs/move-me.txt': 'I will be renamed\n',
  'bin/run.sh': { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
  'links/to-etc': { symlink: '../etc' },
  'empty': { dir: true },
  'logs': { dir: true },
};

/** The line the agent logs after each full scan (src/agent/agent.ts). */
const SCANNED = /scanned (\d+) files, \d+ dirs, \d+ symlinks \((\d+) hashed, (\d+) from cache, (\d+) to hash while sending\)/;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

function countFiles(tree: Awaited<ReturnType<typeof readSynced>>): number {
  return Object.values(tree).filter((item) => item.kind === 'file').length;
}

describe('live replication: one agent watching, one standby', () => {
  let s: Standby;
  let agent: AgentProcess;
  const context = (): string => `--- agent stderr (tail):\n${agent.stderr().slice(-5000)}\n--- receiver stderr (tail):\n${s.receiver.stderr().slice(-3000)}`;
  const converge = (what: string, timeoutMs = 20_000): Promise<void> => waitForConvergence(s, { what, timeoutMs, context });
  const src = (rel: string): string => join(s.src, rel);
  const dst = (rel: string): string => join(s.dst, rel);
  /** The tombstone for `rel`, stamped with the agent's clock within [from, now]. */
  const assertTombstone = (rel: string, from: number): void => {
    const row = manifestRow(s.dst, rel);
    assert.ok(row !== undefined && row.deleted_at !== null, `no tombstone for ${rel}: ${JSON.stringify(row)}`);
    assert.ok(row.deleted_at >= from && row.deleted_at <= Date.now(), `${rel}: deleted_at ${row.deleted_at} is not within [${from}, now]`);
  };

  before(async () => {
    s = await openStandby();
    await buildTree(s.src, INITIAL);
    await settleTimes(s.src);
  });

  test('the initial reconciliation converges, hashing every file once, as it is sent', { timeout: 30_000 }, async () => {
    agent = startLiveAgent(s);
    const [, files, hashed, cached, whileSending] = await agent.waitForLog(SCANNED, 20_000);
    await converge('the initial sync');
    const source = await readSynced(s.src);
    assert.equal(Number(files), countFiles(source));
    assert.equal(Number(hashed), 0, 'the standby is empty: no hash decides anything, so the scan reads no file');
    assert.equal(Number(whileSending), countFiles(source));
    assert.equal(Number(cached), 0);
    assert.deepEqual(tombstonePaths(s.dst), []);
    assert.match(agent.stderr(), /watching /);
  });

  test('live add: new files in an existing and in the root directory', { timeout: 30_000 }, async () => {
    await writeFile(src('docs/added.txt'), 'added while watching\n');
    await writeFile(src('top.txt'), 'at the root\n');
    await converge('after a live add');
    assert.equal(manifestRow(s.dst, 'docs/added.txt')?.deleted_at, null);
  });

  test('live add: a file whose mtime lies 50 ns below a millisecond boundary', { timeout: 30_000 }, async () => {
    // Written aside and renamed in, so the watcher sees it only once it has its odd mtime.
    await writeFile(src('docs/.edge.tmp'), 'a hair below the millisecond\n');
    execFileSync('touch', ['-d', '@1790000000.123999950', src('docs/.edge.tmp')]);
    await rename(src('docs/.edge.tmp'), src('docs/edge.bin'));
    await converge('after adding a file with an edge mtime');
    assert.equal(manifestRow(s.dst, 'docs/edge.bin')?.mtime_ms, 1_790_000_000_124);
  });

  test('live edit: content, mode, and content with mode', { timeout: 30_000 }, async () => {
    await writeFile(src('docs/readme.txt'), 'read me, edited: longer than before\n');
    await chmod(src('bin/run.sh'), 0o700);
    await writeFile(src('etc/system.yaml'), 'shared:\n  database:\n    type: mariadb\n');
    await chmod(src('etc/system.yaml'), 0o640);
    await converge('after live edits');
    assert.equal(manifestRow(s.dst, 'bin/run.sh')?.mode, 0o700);
    assert.equal(manifestRow(s.dst, 'etc/system.yaml')?.mode, 0o640);
  });

  test('live delete: the file stays on the standby, its manifest row becomes a tombstone', { timeout: 30_000 }, async () => {
    const from = Date.now();
    await unlink(src('docs/old.txt'));
    await waitFor('the tombstone for docs/old.txt', () => manifestRow(s.dst, 'docs/old.txt')?.deleted_at != null, 20_000);
    await converge('after a live delete');
    assertTombstone('docs/old.txt', from);
    assert.ok(await exists(dst('docs/old.txt')), 'the gate must keep the deleted file on the standby');
  });

  test('live rename: the old path is tombstoned, the new one present', { timeout: 30_000 }, async () => {
    const from = Date.now();
    await mkdir(src('archive'));
    await rename(src('docs/move-me.txt'), src('archive/moved.txt'));
    await converge('after a live rename');
    assertTombstone('docs/move-me.txt', from);
    assert.ok(await exists(dst('docs/move-me.txt')));
    const moved = manifestRow(s.dst, 'archive/moved.txt');
    assert.ok(moved !== undefined && moved.deleted_at === null && moved.kind === 'file', JSON.stringify(moved));
  });

  test('live mkdir with nested files, then rmdir of the subtree', { timeout: 30_000 }, async () => {
    await mkdir(src('made/nested/deeper'), { recursive: true });
    await writeFile(src('made/nested/a.txt'), 'a\n');
    await writeFile(src('made/nested/deeper/b.txt'), 'b\n');
    await writeFile(src('made/top.txt'), 'top\n');
    await mkdir(src('made/empty-sub'));
    await converge('after a live mkdir -p with files');
    for (const rel of ['made/nested/deeper', 'made/nested/deeper/b.txt', 'made/empty-sub']) {
      assert.equal(manifestRow(s.dst, rel)?.deleted_at, null, `${rel} not recorded live`);
    }

    const from = Date.now();
    await rm(src('made/nested'), { recursive: true });
    await rm(src('made/empty-sub'), { recursive: true });
    await converge('after a live rm -r');
    for (const rel of ['made/nested', 'made/nested/a.txt', 'made/nested/deeper', 'made/nested/deeper/b.txt', 'made/empty-sub']) {
      assertTombstone(rel, from);
    }
    assert.ok(await exists(dst('made/nested/deeper/b.txt')));
    assert.equal(manifestRow(s.dst, 'made/top.txt')?.deleted_at, null);
  });

  test('live symlinks: relative, to a directory, dangling', { timeout: 30_000 }, async () => {
    await symlink('../docs/readme.txt', src('links/readme'));
    await symlink('../data/filestore', src('links/filestore'));
    await symlink('no/such/target', src('links/dangling'));
    await converge('after live symlinks');
    assert.equal(manifestRow(s.dst, 'links/filestore')?.target, '../data/filestore');
  });

  test('latency: a small file closed on the source -> renamed into place on the standby (printed, not asserted)', { timeout: 60_000 }, async (t) => {
    const COUNT = 50;
    const RATE_MS = 20; // 50 files/s
    await mkdir(src('latency'));
    await converge('the latency directory');
    const sizes = new Map<string, number>();
    const closedAt = new Map<string, number>();
    const arrivedAt = new Map<string, number>();
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(dst('latency'), (_event, name) => {
        if (name === null || arrivedAt.has(name) || !sizes.has(name)) return;
        // Arrived = renamed into place with all its bytes (an earlier, partial version does not count).
        const st = statSync(dst(`latency/${name}`), { throwIfNoEntry: false });
        if (st?.size === sizes.get(name)) arrivedAt.set(name, performance.now());
      });
      const start = performance.now();
      for (let i = 0; i < COUNT; i++) {
        const wait = start + i * RATE_MS - performance.now();
        if (wait > 0) await sleep(wait);
        const name = `f-${i}.bin`;
        const size = 1024 + ((i * 7919) % (19 * 1024)); // 1-20 KiB
        sizes.set(name, size);
        await writeFile(src(`latency/${name}`), Buffer.alloc(size, i));
        closedAt.set(name, performance.now());
      }
      await waitFor(`all ${COUNT} latency files on the standby`, () => arrivedAt.size === COUNT, 20_000);
    } finally {
      watcher?.close();
    }
    const latencies = [...closedAt].map(([name, at]) => (arrivedAt.get(name) as number) - at).sort((a, b) => a - b);
    const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;
    t.diagnostic(`latency over ${COUNT} files (1-20 KiB) at ${1000 / RATE_MS}/s: p50 ${fmt(percentile(latencies, 50))}, `
      + `p90 ${fmt(percentile(latencies, 90))}, p99 ${fmt(percentile(latencies, 99))}, max ${fmt(latencies.at(-1) as number)}, `
      + `min ${fmt(latencies[0] as number)}`);
    await converge('after the latency files');
  });

  test('a log-like file appended every few ms for ~1 s ends identical once quiet', { timeout: 30_000 }, async () => {
    const log = src('logs/request.log');
    const handle = await open(log, 'a');
    try {
      const until = Date.now() + 1_000;
      for (let i = 0; Date.now() < until; i++) {
        await handle.write(`${new Date().toISOString()} GET /artifactory/api/repo/${i} 200 ${'x'.repeat(i % 97)}\n`);
        await sleep(3);
      }
    } finally {
      await handle.close();
    }
    // One more burst of appends through separate opens (a logger that reopens its file).
    for (let i = 0; i < 20; i++) await appendFile(log, `reopened ${i}\n`);
    await converge('after the log stopped growing');
  });

  test('a burst of 2,000 small files arrives complete and identical', { timeout: 60_000 }, async () => {
    const COUNT = 2_000;
    const dirs = 20;
    for (let d = 0; d < dirs; d++) await mkdir(src(`burst/${d.toString(16).padStart(2, '0')}`), { recursive: true });
    const names = Array.from({ length: COUNT }, (_, i) => `burst/${(i % dirs).toString(16).padStart(2, '0')}/blob-${i}`);
    for (let i = 0; i < COUNT; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((rel, j) => writeFile(src(rel), `blob ${i + j}\n`.repeat(1 + ((i + j) % 40)))));
    }
    await converge('after a burst of 2,000 files', 40_000);
    const arrived = manifestRows(s.dst).filter((r) => r.path.startsWith('burst/') && r.kind === 'file' && r.deleted_at === null);
    assert.equal(arrived.length, COUNT);
  });

  test('files written nonstop into new directories arrive without a CONFLICT: no file goes out before its directory', { timeout: 60_000 }, async () => {
    // Each file created in a directory marks the directory again, so in a burst the files' marks
    // settle first. Sent before their directory's mkdir, they made the receiver create it; the
    // mkdir and the directory's subtree look then conflicted, and each CONFLICT cost a full pass.
    const conflictsBefore = s.receiver.stderr().split('"CONFLICT"').length;
    const names: string[] = [];
    for (let d = 0; d < 4; d++) {
      await mkdir(src(`nonstop/d${d}/sub`), { recursive: true });
      for (let i = 0; i < 300; i++) {
        const rel = `nonstop/d${d}/${i % 3 === 0 ? 'sub/' : ''}f${i}`;
        await writeFile(src(rel), `file ${d}/${i}\n`.repeat(1 + (i % 7)));
        names.push(rel);
      }
    }
    await converge('after files written nonstop into new directories', 40_000);
    const rows = new Set(manifestRows(s.dst).filter((r) => r.kind === 'file' && r.deleted_at === null).map((r) => r.path));
    assert.deepEqual(names.filter((n) => !rows.has(n)), [], 'every file recorded');
    assert.equal(s.receiver.stderr().split('"CONFLICT"').length, conflictsBefore, `no CONFLICT\n${context()}`);
  });

  test('the watermark passes a change only once it is on the standby; snapshot before W -> safe', { timeout: 40_000 }, async () => {
    await mkdir(src('wm'), { recursive: true });
    await converge('the wm directory');
    await writeFile(src('wm/marker.txt'), 'the watermark must wait for me\n');
    const written = Date.now();
    const deadline = Date.now() + 20_000;
    let status = await statusJson(s.dst);
    // Invariant 4: whenever W has passed the change, the change is already durable on the standby.
    while (status.watermark === null || status.watermark <= written) {
      assert.ok(Date.now() < deadline, `W did not pass ${written} within 20 s: ${JSON.stringify(status)}\n${context()}`);
      await sleep(100);
      status = await statusJson(s.dst);
    }
    const row = manifestRow(s.dst, 'wm/marker.txt');
    assert.ok(row !== undefined && row.deleted_at === null, `W ${status.watermark} passed ${written} before wm/marker.txt was recorded`);
    assert.ok(status.watermark <= Date.now(), 'W runs ahead of the clock');
    assert.equal(status.safe, false, 'no snapshot time recorded yet: cannot be safe');

    const time = status.watermark - status.skewMs;
    const snap = await runCli(['snapshot', '--root', s.dst, '--time', String(time)], { timeoutMs: 20_000 });
    assert.equal(snap.code, 0, snap.stderr);
    const after = await statusJson(s.dst);
    assert.equal(after.snapshotTime, time);
    assert.equal(after.safe, true, `not safe after snapshot --time W - skew: ${JSON.stringify(after)}`);
    assert.ok(after.watermark !== null && after.watermark >= status.watermark, 'W went backwards');
    // The deletion grace (10 min by default) keeps every tombstone on disk.
    assert.ok(after.tombstonesPending >= 6, JSON.stringify(after));
    assert.ok(await exists(dst('docs/old.txt')));
  });

  test('receiver SIGKILLed and restarted on the same port while files change: converges', { timeout: 60_000 }, async () => {
    const logFrom = agent.stderr().length;
    const killed = new Promise((r) => s.receiver.child.once('close', r));
    s.receiver.child.kill('SIGKILL');
    await killed;
    await agent.waitForLog(/CONNECTION_LOST|RECONNECT/, 10_000, logFrom);

    const from = Date.now();
    await writeFile(src('docs/during-outage.txt'), 'written while the receiver was down\n');
    await writeFile(src('docs/readme.txt'), 'edited while the receiver was down\n');
    await unlink(src('top.txt'));
    await mkdir(src('outage/sub'), { recursive: true });
    await writeFile(src('outage/sub/x.txt'), 'x\n');
    await agent.waitForLog(/"code":"RECONNECT","msg":"cannot reach/, 10_000, logFrom);

    await restartReceiver(s);
    await writeFile(src('docs/after-restart.txt'), 'written just after the receiver came back\n');
    await converge('after the receiver restart');
    assertTombstone('top.txt', from);
    assert.match(agent.stderr().slice(logFrom), /connected to /);
    assert.equal(agent.child.exitCode, null, 'the agent must keep running');
  });

  test('agent SIGKILLed and restarted: changes made while it was down arrive; only they are re-hashed', { timeout: 60_000 }, async () => {
    // A change synced live well before the kill: its hash is no longer racy, so a restart must not re-read it.
    await writeFile(src('docs/live-before-kill.txt'), 'synced live, then the agent dies\n');
    await converge('before the agent is killed');
    // Once no longer racy (mtime >= 1 s old), what was hashed live belongs in the agent's cache.
    let uncached: string[] = [];
    await waitFor('the agent cache to vouch for every source file', async () => (uncached = await uncachedFiles(s.src)).length === 0, 15_000)
      .catch((err: Error) => assert.fail(`${err.message}; not cached: ${uncached.slice(0, 20).join(', ')}${uncached.length > 20 ? ', ...' : ''}`));

    const killedCode = await agent.stop('SIGKILL');
    assert.equal(killedCode, null);
    await waitForReceiverIdle(s.dst, 30_000);

    const from = Date.now();
    await writeFile(src('docs/readme.txt'), 'edited while the agent was down\n'); // edited
    await writeFile(src('data/filestore/cd/cd02'), 'binary cd02, rewritten\n'); // edited
    await mkdir(src('data/filestore/ef'), { recursive: true });
    await writeFile(src('data/filestore/ef/ef03'), 'binary ef03\n'); // added
    await writeFile(src('docs/while-down.txt'), 'added while the agent was down\n'); // added
    await rename(src('docs/added.txt'), src('archive/added-renamed.txt')); // new path: hashed again
    await unlink(src('docs/during-outage.txt')); // deleted: nothing to hash
    const changed = 5;

    agent = startLiveAgent(s);
    const [, files, hashed, cached, whileSending] = await agent.waitForLog(SCANNED, 20_000);
    await converge('after the agent restart');
    const source = await readSynced(s.src);
    assert.equal(Number(files), countFiles(source));
    assert.equal(Number(hashed) + Number(whileSending), changed, `re-hashed ${hashed} + ${whileSending} files, ${changed} changed while the agent was down`);
    assert.equal(Number(cached), countFiles(source) - changed);
    assertTombstone('docs/added.txt', from);
    assertTombstone('docs/during-outage.txt', from);
  });

  test('SIGTERM stops the agent cleanly with exit 0', { timeout: 30_000 }, async () => {
    await writeFile(src('docs/last.txt'), 'the last change before SIGTERM\n');
    await converge('before SIGTERM');
    const code = await agent.stop('SIGTERM', 20_000);
    assert.equal(code, 0, `agent exited ${code}\n${context()}`);
    assert.match(agent.stderr(), /SIGTERM: finishing what is in flight/);
    await waitForReceiverIdle(s.dst, 20_000);
    assert.deepEqual(await findTempFiles(s.dst), []);
  });
});

/** One of the agent's BUSY lines (src/agent/live.ts, backOff): when it was logged, and the delay it announced. */
interface BusyRetry { readonly at: number; readonly delayMs: number }

/** The agent's JSON log lines saying a receiver turned it away with BUSY, in order. */
function busyRetries(stderr: string): BusyRetry[] {
  const found: BusyRetry[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.includes('"code":"BUSY"')) continue;
    const record = JSON.parse(line) as { time: string; code: string; msg: string };
    const m = /^the receiver is still serving another agent session.*; retrying in (\d+) ms$/.exec(record.msg);
    assert.ok(m !== null, `a BUSY line without its delay: ${line}`);
    found.push({ at: Date.parse(record.time), delayMs: Number(m[1]) });
  }
  return found;
}

// Waits for the agent's third BUSY retry rather than sleeping a fixed time: how many attempts fit in
// a given time depends on the machine, the delays between them do not. The receiver's one agent slot
// stays taken until then, so every attempt so far was turned away.
test('SIGHUP (a terminal or ssh session that closed) stops the live agent and the receiver cleanly, as SIGTERM does', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  await buildTree(s.src, { 'etc/system.yaml': 'shared: {}\n', 'data/a.bin': 'a\n'.repeat(1000) });
  await settleTimes(s.src);
  const agent = startLiveAgent(s);
  const context = (): string => `--- agent stderr:\n${agent.stderr().slice(-3000)}\n--- receiver stderr:\n${s.receiver.stderr().slice(-3000)}`;
  await waitForConvergence(s, { what: 'the first pass', context });
  await writeFile(join(s.src, 'data/b.bin'), 'the last change before SIGHUP\n');
  await waitForConvergence(s, { what: 'a live change', context });
  assert.equal(await agent.stop('SIGHUP', 20_000), 0, `agent exit code\n${context()}`);
  assert.match(agent.stderr(), /SIGHUP: finishing what is in flight/);
  assert.equal(await s.receiver.stop('SIGHUP'), 0, `receiver exit code\n${context()}`);
  assert.match(s.receiver.stderr(), /SIGHUP: stopping/);
  assert.deepEqual(await findTempFiles(s.dst), []);
  // A clean stop leaves nothing for the next receiver to recover.
  const next = await restartReceiver(s);
  assert.doesNotMatch(next.stderr(), /RECOVERED/);
});

test('a receiver busy with another session: the live agent backs off (BUSY, growing delays), then syncs once the slot frees', { timeout: 90_000 }, async (t) => {
  const s = await openStandby();
  await buildTree(s.src, { 'a.txt': 'waits for the slot\n' });
  // An authenticated session holds the receiver's one agent slot, as a half-open old connection does.
  const holder = await RawPeer.connect(s.url);
  await holder.authenticate((await readFile(s.tokenFile, 'utf8')).trim());
  const agent = startLiveAgent(s);
  const rejected = (): number => [...s.receiver.stderr().matchAll(/"code":"BUSY","msg":"rejected agent from /g)].length;
  try {
    // Idle, the third retry is logged ~1-2 s after the first (delays 250-500 then 500-1000 ms).
    await waitFor('three BUSY retries from the agent', () => busyRetries(agent.stderr()).length >= 3, 30_000)
      .catch((err: Error) => assert.fail(`${err.message}\n--- agent stderr:\n${agent.stderr().slice(-5000)}`));
    const retries = busyRetries(agent.stderr());
    const delays = retries.map((r) => r.delayMs);
    t.diagnostic(`BUSY retry delays: ${delays.join(', ')} ms, logged ${retries.slice(1).map((r, i) => r.at - (retries[i] as BusyRetry).at).join(', ')} ms apart`);
    // Jittered 250 ms * 2^n (capped at 30 s, not reached here): 250-500, 500-1000, 1000-2000 ms...
    // A delay's window starts where the previous one's ends, so no delay is shorter than the one
    // before (equal only if the log's rounding meets at that edge), and two steps on a delay has at
    // least doubled. A constant delay, jittered or not, fails the second check.
    for (let i = 1; i < delays.length; i++) assert.ok((delays[i] as number) >= (delays[i - 1] as number), `delays grow: ${delays.join(', ')} ms`);
    for (let i = 2; i < delays.length; i++) assert.ok((delays[i] as number) >= 2 * (delays[i - 2] as number), `delays grow exponentially: ${delays.join(', ')} ms`);
    // The agent waits before it dials again (one that redialled at once made dozens of attempts a
    // second). Half the announced delay, not all of it: Node starts a timer from the event loop's
    // cached clock, so it may fire early by however long that turn was held up.
    for (let i = 1; i < retries.length; i++) {
      const [prev, next] = [retries[i - 1] as BusyRetry, retries[i] as BusyRetry];
      assert.ok(next.at - prev.at >= prev.delayMs / 2, `retry ${i + 1} came ${next.at - prev.at} ms after retry ${i}, which announced ${prev.delayMs} ms`);
    }
    assert.deepEqual(await readSynced(s.dst), {}, 'nothing synced while another session holds the slot');
    await holder.close();
    await waitForConvergence(s, { what: 'the standby once the slot is free', timeoutMs: 30_000 });
    // Every attempt the receiver turned away shows in the agent's log: the delays above are all of them.
    const logged = busyRetries(agent.stderr()).length;
    await waitFor(`the receiver's log of ${logged} BUSY rejections`, () => rejected() >= logged, 10_000);
    assert.equal(rejected(), logged, 'the receiver turned away attempts the agent did not log a delay for');
  } finally {
    await holder.close();
    assert.equal(await agent.stop(), 0);
  }
});
