// Faults: a bad network between a live agent and its receiver, played by a TCP proxy on 127.0.0.1
// (test/helpers/proxy.ts): latency plus a bandwidth cap for the initial sync, then connections cut
// mid-file and connections stalled without being closed (half-open), at seeded points. Both sides
// run with WARMSYNC_KEEPALIVE_MS=1500, so a stall is noticed in seconds instead of 20 s. After each
// fault the agent reconnects, resumes and the standby converges; no partial file ever sits at a
// final path; agent and receiver RSS stay bounded throughout.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startAgentProcess, startReceiverProcess, type AgentProcess } from '../../scripts/lib/cli-process.js';
import {
  closeStandbys, findTempFiles, openWorkspace, receiverArgs, runCli, waitForConvergence, type Standby,
} from '../helpers/e2e.js';
import { LONG, MiB, Rng, RssSampler, StandbyPoller, Versions, faultSeed, haltPollers } from '../helpers/faults.js';
import { FaultProxy } from '../helpers/proxy.js';

const seed = faultSeed('network');
const rng = new Rng(seed);
const FAULTS = LONG ? 30 : 6;
const ENV = { WARMSYNC_KEEPALIVE_MS: '1500' };
/** RSS ceiling for either process: large files stream through bounded buffers and a credit window. */
const RSS_LIMIT = 400 * MiB;

let proxy: FaultProxy | null = null;
after(async () => {
  await haltPollers();
  await proxy?.close();
  await closeStandbys();
});

test('latency, throttling, cuts mid-file and half-open stalls: the live agent reconnects, resumes and converges', { timeout: LONG ? 1_800_000 : 240_000 }, async () => {
  const ws = await openWorkspace();
  const receiver = await startReceiverProcess(receiverArgs(ws), ENV);
  const s: Standby = { ...ws, receiver, url: receiver.url };
  const target = new URL(receiver.url);
  proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port) });
  const versions = new Versions();
  for (let d = 0; d < 8; d++) await mkdir(join(s.src, `filestore/0${d}`), { recursive: true });
  for (let i = 0; i < 150; i++) await versions.writeAtomic(s.src, `filestore/0${i % 8}/small-${i}`, rng.bytes(rng.int(1, 64 * 1024)));
  await versions.writeAtomic(s.src, 'filestore/00/large-0', rng.bytes(6 * MiB));
  const poller = new StandbyPoller(s.dst, versions);

  let agent: AgentProcess | null = null;
  const rss = new RssSampler(() => ({ agent: agent?.child.pid, receiver: receiver.child.pid }));
  const context = (): string => `\nagent:\n${agent?.stderr().slice(-3000)}\nreceiver:\n${receiver.stderr().slice(-3000)}`;
  try {
    // Initial sync over a slow, lagging link.
    proxy.settings.latencyMs = 5;
    proxy.settings.bytesPerSec = 8 * MiB;
    agent = startAgentProcess(['--root', s.src, '--connect', proxy.url, '--token-file', s.tokenFile], ENV);
    await waitForConvergence(s, { timeoutMs: 60_000, what: 'the initial sync through a slow link', context });
    proxy.settings.latencyMs = 0;
    proxy.settings.bytesPerSec = 32 * MiB;

    let cuts = 0;
    let stalls = 0;
    for (let i = 0; i < FAULTS; i++) {
      const connectionsBefore = proxy.connections;
      const stall = i % 2 === 1;
      // A large file in flight when the fault hits; resumable from 16 MiB on.
      const size = rng.pick([3 * MiB, 6 * MiB, 17 * MiB]);
      const forwardedBefore = proxy.forwardedNow;
      await versions.writeAtomic(s.src, `filestore/0${i % 8}/large-${i + 1}`, rng.bytes(size));
      const at = rng.int(MiB / 2, size / 2);
      const deadline = Date.now() + 30_000;
      while (proxy.forwardedNow - forwardedBefore < at && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      if (stall) {
        proxy.stall();
        stalls++;
      } else {
        proxy.cut();
        cuts++;
      }
      const from = agent.stderr().length;
      await agent.waitForLog(/CONNECTION_LOST|RECONNECT/, 30_000, from);
      await waitForConvergence(s, { timeoutMs: 90_000, what: `the standby after ${stall ? 'a stall' : 'a cut'} at byte ${at} of ${size}`, context });
      assert.ok(proxy.connections > connectionsBefore, 'the agent did not reconnect');
    }
    assert.equal(receiver.child.exitCode, null, 'the receiver died');
    assert.equal(await agent.stop(), 0);
    // Every source file stayed readable: a transfer cut short by the network is a lost connection.
    assert.doesNotMatch(agent.stderr(), /"code":"READ_FAILED"/);
    await poller.stop();
    rss.stop();
    assert.deepEqual(await findTempFiles(s.dst), []);
    const verify = await runCli(['verify', '--root', s.dst], { timeoutMs: 60_000 });
    assert.equal(verify.code, 0, `verify:\n${verify.stdout}${verify.stderr}`);
    const peak = (name: string): number => Math.round((rss.peak.get(name) ?? 0) / MiB);
    const resumed = receiver.stderr().match(/resuming at byte/g)?.length ?? 0;
    process.stdout.write(`# network: seed ${seed}: ${cuts} cuts, ${stalls} half-open stalls, ${proxy.connections} connections, ${resumed} transfers resumed; `
      + `peak RSS agent ${peak('agent')} MiB, receiver ${peak('receiver')} MiB\n`);
    for (const [name, bytes] of rss.peak) assert.ok(bytes < RSS_LIMIT, `${name} RSS peaked at ${Math.round(bytes / MiB)} MiB`);
  } finally {
    rss.stop();
    await agent?.stop('SIGKILL').catch(() => undefined);
  }
});
