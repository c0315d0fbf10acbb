// One agent, two standbys (issue 21: a local standby and a DR site), through the real bin/warmsync
// with real sockets and SQLite. Live: both converge; one receiver SIGKILLed while files keep
// changing, and the other still gets each new file within a couple of seconds; `status` on each
// reports its own W (the dead one's stays put, the live one's moves on); the restarted one catches
// up by itself, and its W then passes the outage. The agent's own /healthz and /metrics
// (--metrics-listen) say which standby is connected, its W and what was sent to it. With a small
// WARMSYNC_MAX_BACKLOG, a standby down while hundreds of paths change keeps at most that many
// queued, says STANDBY_BEHIND once per outage, and catches up in full with no feed gap left. --once: both synced with a per-standby summary;
// one unreachable gives exit 1 and the other is synced anyway. Bad --connect lists are exit-2 lines.
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AGENT_CACHE, assertCleanFailure, buildTree, closeStandbys, exists, openStandby, openStandbyOf, restartReceiver, runAgent, runCli, startLiveAgent,
  settleTimes, statusJson, waitFor, waitForConvergence, type AgentProcess, type Standby, type TreeSpec,
} from '../helpers/e2e.js';
import { FaultProxy } from '../helpers/proxy.js';

interface HealthOfStandby { url: string; connected: boolean; watermark: number | null; lagMs: number | null; queuedPaths: number; opsInFlight: number }

/** How long a new file may take to reach the standby that stayed up (the brief: a couple of seconds). */
const LIVE_LATENCY_MS = 2000;

/** A local standby and a DR one sharing its source, which holds `files`. */
async function openPair(files: TreeSpec): Promise<{ local: Standby; dr: Standby }> {
  const local = await openStandby();
  const dr = await openStandbyOf(local);
  await buildTree(local.src, files);
  return { local, dr };
}

describe('agent feeding two standbys (live)', () => {
  let local: Standby;
  let dr: Standby;
  let agent: AgentProcess;

  before(async () => {
    ({ local, dr } = await openPair({
      'etc/app.yaml': 'port: 8081\n',
      'data/filestore/ab/ab01': 'binary ab01\n',
      'data/filestore/cd/cd02': 'binary cd02\n',
    }));
    agent = startLiveAgent([local, dr], ['--metrics-listen', '127.0.0.1:0']);
    metricsUrl = (await agent.waitForLog(/serving \/healthz and \/metrics on (http:\/\/[0-9.]+:\d+)/, 20_000))[1] as string;
  });
  after(closeStandbys);

  let metricsUrl = '';
  const context = (): string => `agent stderr:\n${agent.stderr().slice(-6000)}`;
  /** The agent's /healthz, by standby URL. */
  const health = async (): Promise<Map<string, HealthOfStandby>> => {
    const res = await fetch(`${metricsUrl}/healthz`);
    assert.equal(res.status, 200);
    const body = await res.json() as { ok: boolean; standbys: HealthOfStandby[] };
    assert.equal(body.ok, true);
    return new Map(body.standbys.map((s) => [s.url, s]));
  };
  /** One sample of the agent's /metrics for `standby` (asserts it is there). */
  const metric = async (name: string, standby: Standby): Promise<number> => {
    const res = await fetch(`${metricsUrl}/metrics`, { headers: { authorization: `Bearer ${local.token}` } });
    assert.equal(res.status, 200);
    const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name}{standby="${standby.url}"} `));
    assert.ok(line !== undefined, `no ${name} for ${standby.url}`);
    return Number(line.split(' ')[1]);
  };

  test('both standbys converge on the source, each with a watermark', { timeout: 60_000 }, async () => {
    await waitForConvergence(local, { what: 'the local standby', context });
    await waitForConvergence(dr, { what: 'the DR standby', context });
    for (const s of [local, dr]) await waitFor(`a watermark on ${s.url}`, async () => (await statusJson(s.dst)).watermark !== null, 10_000);
  });

  test('the agent\'s /healthz and /metrics report each standby; /metrics wants the token', { timeout: 30_000 }, async () => {
    const h = await health();
    assert.deepEqual([...h.keys()], [local.url, dr.url]);
    for (const s of [local, dr]) {
      assert.equal(h.get(s.url)?.connected, true);
      assert.ok(h.get(s.url)?.watermark !== null);
      assert.equal(await metric('warmsync_standby_connected', s), 1);
      assert.equal(await metric('warmsync_standby_sent_files_total', s), 3);
      assert.ok(await metric('warmsync_standby_sent_bytes_total', s) > 0);
      assert.ok(await metric('warmsync_standby_watermark_lag_seconds', s) >= 0);
    }
    assert.equal((await fetch(`${metricsUrl}/metrics`)).status, 401);
    assert.equal((await fetch(`${metricsUrl}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  });

  test('one receiver SIGKILLed: the other keeps its live latency; each status reports its own W; the killed one catches up', { timeout: 90_000 }, async () => {
    const logFrom = agent.stderr().length;
    const killed = new Promise((r) => local.receiver.child.once('close', r));
    local.receiver.child.kill('SIGKILL');
    await killed;
    await agent.waitForLog(new RegExp(`"code":"(CONNECTION_LOST|RECONNECT)","msg":"standby ${local.url}: `), 10_000, logFrom);
    const frozen = (await statusJson(local.dst)).watermark;
    assert.ok(frozen !== null);

    let lastWrite = 0;
    for (let i = 0; i < 5; i++) {
      const rel = `data/filestore/ef/outage-${i}`;
      lastWrite = Date.now();
      await buildTree(local.src, { [rel]: `written while the local standby is down ${i}\n` });
      const started = Date.now();
      await waitFor(`${rel} on the DR standby within ${LIVE_LATENCY_MS} ms`, () => exists(join(dr.dst, rel)), LIVE_LATENCY_MS)
        .catch((err: Error) => assert.fail(`${err.message}\n${context()}`));
      process.stdout.write(`# DR latency for ${rel} while the local standby is down: ${Date.now() - started} ms\n`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await waitForConvergence(dr, { what: 'the DR standby during the outage', context });
    // The DR site's W passes every change made during the outage; the dead standby's W has not moved.
    await waitFor('the DR watermark to pass the last write', async () => ((await statusJson(dr.dst)).watermark ?? 0) > lastWrite, 10_000);
    assert.equal((await statusJson(local.dst)).watermark, frozen, 'the killed standby\'s W must not move while it is down');
    assert.equal(await exists(join(local.dst, 'data/filestore/ef/outage-0')), false);
    // The agent's own view agrees: the local standby is down, the DR site connected and served.
    const h = await health();
    assert.equal(h.get(local.url)?.connected, false);
    assert.equal(h.get(dr.url)?.connected, true);
    assert.equal(await metric('warmsync_standby_connected', local), 0);
    assert.equal(await metric('warmsync_standby_sent_files_total', dr), 3 + 5);

    await restartReceiver(local);
    await waitForConvergence(local, { what: 'the restarted local standby', timeoutMs: 40_000, context });
    await waitFor('the local watermark to pass the outage', async () => ((await statusJson(local.dst)).watermark ?? 0) > lastWrite, 20_000);
    // Only the local standby was reconnected: the DR link's log lines name no outage.
    assert.doesNotMatch(agent.stderr().slice(logFrom), new RegExp(`"code":"(CONNECTION_LOST|RECONNECT)","msg":"standby ${dr.url}: `));
    assert.equal(agent.child.exitCode, null, 'the agent keeps running');
  });

  test('a change after the outage reaches both; SIGTERM stops the agent with exit 0', { timeout: 60_000 }, async () => {
    await writeFile(join(local.src, 'etc/app.yaml'), 'port: 9090\n');
    await waitForConvergence(local, { what: 'the local standby', context });
    await waitForConvergence(dr, { what: 'the DR standby', context });
    assert.equal(await agent.stop('SIGTERM'), 0, context());
  });
});

describe('a standby too far behind is reconciled in full, not queued without bound', () => {
  const MAX_BACKLOG = 100;
  /** The first outage writes this many batches of 20 files, paced: 300 paths in all. */
  const BATCHES = 15;
  let local: Standby;
  let dr: Standby;
  let agent: AgentProcess;

  before(async () => {
    // The outages' files go into directories that exist (and are watched) from the start: each file
    // is then an event and a path of its own. Written into a directory made during the outage, the
    // files that came before its watch would be one subtree mark, and how many paths waited would
    // depend on how fast the agent added that watch (CI once saw too few for STANDBY_BEHIND).
    const dirs: TreeSpec = { 'data/again': { dir: true } };
    for (let batch = 0; batch < BATCHES; batch++) dirs[`data/filestore/b${batch}`] = { dir: true };
    ({ local, dr } = await openPair({ 'etc/app.yaml': 'port: 8081\n', ...dirs }));
    agent = startLiveAgent([local, dr], ['--metrics-listen', '127.0.0.1:0'], [], { WARMSYNC_MAX_BACKLOG: String(MAX_BACKLOG) });
  });
  after(closeStandbys);

  test(`past ${MAX_BACKLOG} waiting paths the down standby's queue is dropped (STANDBY_BEHIND); it catches up on return, its W held until then`, { timeout: 90_000 }, async () => {
    const context = (): string => `agent stderr:\n${agent.stderr().slice(-6000)}`;
    const metricsUrl = (await agent.waitForLog(/serving \/healthz and \/metrics on (http:\/\/[0-9.]+:\d+)/, 20_000))[1] as string;
    await waitForConvergence(local, { context });
    await waitForConvergence(dr, { context });
    const logFrom = agent.stderr().length;
    const killed = new Promise((r) => local.receiver.child.once('close', r));
    local.receiver.child.kill('SIGKILL');
    await killed;
    await agent.waitForLog(new RegExp(`"code":"(CONNECTION_LOST|RECONNECT)","msg":"standby ${local.url}: `), 10_000, logFrom);

    // Paced, so that the DR link (connected) never has that many waiting; the local one has them all.
    let maxQueued = 0;
    for (let batch = 0; batch < BATCHES; batch++) {
      const spec: Record<string, string> = {};
      for (let i = 0; i < 20; i++) spec[`data/filestore/b${batch}/f${i}`] = `batch ${batch} file ${i}\n`;
      await buildTree(local.src, spec);
      await new Promise((r) => setTimeout(r, 100));
      const h = await (await fetch(`${metricsUrl}/healthz`)).json() as { standbys: Array<{ url: string; queuedPaths: number }> };
      maxQueued = Math.max(maxQueued, h.standbys.find((s) => s.url === local.url)?.queuedPaths ?? Infinity);
    }
    const lastWrite = Date.now();
    assert.ok(maxQueued <= MAX_BACKLOG, `the down standby had ${maxQueued} paths queued, more than ${MAX_BACKLOG}`);
    await agent.waitForLog(new RegExp(`"code":"STANDBY_BEHIND","msg":"standby ${local.url}: `), 10_000, logFrom);
    await waitForConvergence(dr, { what: 'the DR standby', context });
    assert.doesNotMatch(agent.stderr().slice(logFrom), new RegExp(`STANDBY_BEHIND","msg":"standby ${dr.url}`), 'the connected standby kept up');
    // Logged once for the whole outage, however often the queue filled again.
    assert.equal(agent.stderr().slice(logFrom).split('"code":"STANDBY_BEHIND"').length - 1, 1, context());

    await restartReceiver(local);
    await waitForConvergence(local, { what: 'the restarted standby', timeoutMs: 40_000, context });
    await waitFor('the local W to pass the outage, with no feed gap left', async () => {
      const st = await statusJson(local.dst);
      return (st.watermark ?? 0) > lastWrite && st.feedIncomplete === null;
    }, 20_000);
  });

  test('a second outage: STANDBY_BEHIND is said again (the catch-up closed the first), and the next catch-up closes it too', { timeout: 60_000 }, async () => {
    const logFrom = agent.stderr().length;
    const killed = new Promise((r) => local.receiver.child.once('close', r));
    local.receiver.child.kill('SIGKILL');
    await killed;
    await agent.waitForLog(new RegExp(`"code":"(CONNECTION_LOST|RECONNECT)","msg":"standby ${local.url}: `), 10_000, logFrom);
    const spec: Record<string, string> = {};
    for (let i = 0; i <= MAX_BACKLOG; i++) spec[`data/again/f${i}`] = `again ${i}\n`;
    await buildTree(local.src, spec);
    await agent.waitForLog(new RegExp(`"code":"STANDBY_BEHIND","msg":"standby ${local.url}: `), 10_000, logFrom);
    await restartReceiver(local);
    await waitForConvergence(local, { what: 'the restarted standby', timeoutMs: 40_000 });
    await waitFor('no feed gap left on the standby', async () => (await statusJson(local.dst)).feedIncomplete === null, 20_000);
  });
});

describe('agent --once with two standbys', () => {
  let local: Standby;
  let dr: Standby;

  before(async () => {
    local = await openStandby();
    dr = await openStandbyOf(local);
    await buildTree(local.src, { 'a.txt': 'a\n', 'dir/b.txt': 'b\n' });
  });
  after(closeStandbys);

  test('a --config list of two URLs: both synced, one summary per standby', { timeout: 60_000 }, async () => {
    const config = join(local.dir, 'agent.yaml');
    await writeFile(config, `connect:\n  - ${local.url}\n  - ${dr.url}\n`);
    const r = await runCli(['agent', '--root', local.src, '--config', config, '--token-file', local.tokenFile, '--once', '--json'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { standbys: Array<{ url: string; ok: boolean; filesSent: number }> };
    assert.deepEqual(out.standbys.map((s) => [s.url, s.ok, s.filesSent]), [[local.url, true, 2], [dr.url, true, 2]]);
    await waitForConvergence(local);
    await waitForConvergence(dr);
  });

  test('each file is hashed once, whatever the number of standbys', { timeout: 60_000 }, async () => {
    // Old mtimes (a hash of a file changed within the last second is never cached), synced to both.
    await settleTimes(local.src);
    assert.equal((await runAgent([local, dr])).code, 0);
    // Without its cache the agent must hash every file the standbys hold at that size: once, for both.
    await rm(join(local.src, AGENT_CACHE));
    const r = await runAgent([local, dr]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { standbys: Array<{ url: string; hashed: number; filesScanned: number; filesSent: number }> };
    assert.deepEqual(out.standbys.map((s) => [s.filesScanned, s.filesSent]), [[2, 0], [2, 0]]);
    assert.equal(out.standbys.reduce((sum, s) => sum + s.hashed, 0), 2, `hashed per standby: ${out.standbys.map((s) => s.hashed).join(', ')}`);
  });

  test('one standby down: exit 1 naming it, and the other is synced anyway', { timeout: 60_000 }, async () => {
    await local.receiver.stop();
    await buildTree(local.src, { 'c.txt': 'c\n' });
    const r = await runAgent([local, dr], ['--connect-attempts', '1']);
    assertCleanFailure(r, 1, new RegExp(`STANDBY_FAILED: 1 of 2 standbys did not sync: ${local.url}`));
    const out = JSON.parse(r.stdout.trim()) as { standbys: Array<{ url: string; ok: boolean; code?: string; filesSent?: number }> };
    assert.deepEqual(out.standbys.map((s) => [s.url, s.ok, s.filesSent]), [[local.url, false, undefined], [dr.url, true, 1]]);
    assert.equal(out.standbys[0]?.code, 'UNREACHABLE');
    await waitForConvergence(dr);
    assert.equal(await exists(join(local.dst, 'c.txt')), false);
  });

  test('the text summary has one line per standby', { timeout: 60_000 }, async () => {
    await buildTree(local.src, { 'd.txt': 'd\n' });
    const r = await runCli(['agent', '--root', local.src, '--connect', local.url, '--connect', dr.url, '--token-file', local.tokenFile, '--once', '--quiet', '--connect-attempts', '1'], { timeoutMs: 60_000 });
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^${dr.url}: synced: .* 1 sent`, 'm'));
    assert.match(r.stdout, new RegExp(`^${local.url}: failed: `, 'm'));
  });
});

describe('agent --once: a standby on a thin link holds back no other', () => {
  after(closeStandbys);

  test('a new DR standby behind a thin link (1 MB/s) syncs for seconds; the other, in sync behind a long one (200 ms), is done long before', { timeout: 120_000 }, async () => {
    // More files than a pass has queued and unanswered (2,048 each): the DR pass's scan waits on its link, as a big first sync does.
    const spec: TreeSpec = {};
    for (let i = 0; i < 8000; i++) spec[`data/filestore/${(i % 16).toString(16).padStart(2, '0')}/f${i}`] = `${i}:`.padEnd(1024, 'x');
    const { local, dr } = await openPair(spec);
    await settleTimes(local.src);
    assert.equal((await runAgent(local)).code, 0);
    const proxyTo = (s: Standby): Promise<FaultProxy> => FaultProxy.start({ host: '127.0.0.1', port: Number(new URL(s.url).port) });
    const [long, thin] = await Promise.all([proxyTo(local), proxyTo(dr)]);
    try {
      // The thin link's pass starts first (the long one's manifest comes 200 ms later): its scan must not hold the other's back.
      long.settings.latencyMs = 100;
      thin.settings.bytesPerSec = 1_000_000;
      const r = await runCli(['agent', '--root', local.src, '--connect', long.url, '--connect', thin.url, '--token-file', local.tokenFile, '--once', '--json'], { timeoutMs: 100_000 });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim()) as { standbys: Array<{ ok: boolean; filesSent: number; elapsedMs: number }> };
      const [near, far] = out.standbys as [typeof out.standbys[0], typeof out.standbys[0]];
      assert.deepEqual([near.filesSent, far.filesSent], [0, 8000]);
      // 8 MB at 1 MB/s: the DR pass takes 8 s at least.
      assert.ok(far.elapsedMs >= 7000, `DR: ${far.elapsedMs} ms`);
      assert.ok(near.elapsedMs < far.elapsedMs / 3, `in sync: ${near.elapsedMs} ms, DR: ${far.elapsedMs} ms`);
    } finally {
      await Promise.all([long.close(), thin.close()]);
    }
    await waitForConvergence(dr);
  });
});

describe('bad --connect lists and --metrics-listen', () => {
  const args = (...urls: string[]): string[] => ['agent', '--root', '/nonexistent-src', ...urls.flatMap((u) => ['--connect', u]), '--once'];
  const env = { WARMSYNC_TOKEN: 'x'.repeat(32) };

  test('the same receiver twice is refused (exit 2), however it is spelled', async () => {
    const r = await runCli(args('ws://127.0.0.1:7373', 'ws://127.0.0.1:7373/'), { env });
    assertCleanFailure(r, 2, /BAD_URL: agent: --connect ws:\/\/127\.0\.0\.1:7373\/ names the same receiver as ws:\/\/127\.0\.0\.1:7373/);
  });

  test('more standbys than one agent feeds is refused (exit 2)', async () => {
    const r = await runCli(args(...Array.from({ length: 9 }, (_, i) => `ws://127.0.0.1:${7000 + i}`)), { env });
    assertCleanFailure(r, 2, /BAD_FLAG: agent: --connect given 9 times; one agent feeds at most 8 standbys/);
  });

  test('one bad URL among good ones is named', async () => {
    const r = await runCli(args('ws://127.0.0.1:7373', 'http://dr.example:7373'), { env });
    assertCleanFailure(r, 2, /BAD_URL: --connect must be a ws:\/\/ or wss:\/\/ URL, not "http:\/\/dr\.example:7373"/);
  });

  test('--metrics-listen: HOST:PORT only, and only for the watching agent', async () => {
    const bad = await runCli([...args('ws://127.0.0.1:7373').filter((a) => a !== '--once'), '--metrics-listen', '9100'], { env });
    assertCleanFailure(bad, 2, /BAD_LISTEN: --metrics-listen "9100" is not HOST:PORT/);
    const once = await runCli([...args('ws://127.0.0.1:7373'), '--metrics-listen', '127.0.0.1:0'], { env });
    assertCleanFailure(once, 2, /BAD_FLAG: agent: --metrics-listen is for the watching agent/);
  });
});
