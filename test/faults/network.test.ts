// Faults: a bad network between a live agent and its receiver, played by a TCP proxy on 127.0.0.1
// (test/helpers/proxy.ts): latency plus a bandwidth cap for the initial sync, then connections cut
// mid-file and connections stalled without being closed (half-open), at seeded points. Both sides
// run with WARMSYNC_KEEPALIVE_MS=1500, so a stall is noticed in seconds instead of 20 s. After each
// fault the agent reconnects and the standby converges; no partial file ever sits at a final path;
// agent and receiver RSS stay bounded throughout. Each fault hits at its exact byte of the agent's
// stream (the proxy injects it; a fault point never reached fails the test). The first cut and the
// first stall always hit a 17 MiB file (resumable: 16 MiB and up) late enough that the receiver
// must have kept at least 1 MiB of it: every such transfer must resume from its kept prefix.
import assert from 'node:assert/strict';
import { mkdir, rename, writeFile } from 'node:fs/promises';
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
/** The size the receiver kept prefixes of (src/protocol/limits.ts RESUMABLE_MIN_BYTES is 16 MiB). */
const RESUMABLE = 17 * MiB;
/**
 * The receiver's credit window (src/receiver/receiver.ts): the agent never has more file bytes
 * than this sent and not yet written by the receiver. A fault after 8 MiB + 2 MiB of a file's
 * stream therefore finds at least 1 MiB of it written (more than the 1 MiB a partial needs to be kept).
 */
const WINDOW = 8 * MiB;
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
    let mustResume = 0;
    for (let i = 0; i < FAULTS; i++) {
      const connectionsBefore = proxy.connections;
      const stall = i % 2 === 1;
      // A large file in flight when the fault hits. The first cut and stall hit a resumable one.
      const size = i < 2 ? RESUMABLE : rng.pick([3 * MiB, 6 * MiB, RESUMABLE]);
      const rel = `filestore/0${i % 8}/large-${i + 1}`;
      const content = rng.bytes(size);
      // Of a resumable file, past the credit window plus 2 MiB: the receiver has kept at least 1 MiB.
      const at = size >= RESUMABLE ? rng.int(WINDOW + 2 * MiB, size - MiB) : rng.int(MiB / 2, size / 2);
      const what = `${stall ? 'a stall' : 'a cut'} at byte ${at} of ${rel} (${size} bytes)`;
      const agentMark = agent.stderr().length;
      const receiverMark = receiver.stderr().length;
      const fault = proxy.faultAfter(at, stall ? 'stall' : 'cut');
      // Written beside the source and renamed in: the agent sees the file once, whole, and sends
      // nothing else meanwhile, so the bytes counted up to the fault are this file's.
      versions.record(rel, content);
      await writeFile(join(s.dir, 'incoming'), content);
      await rename(join(s.dir, 'incoming'), join(s.src, rel));
      let timer: NodeJS.Timeout | undefined;
      const reached = await Promise.race([fault.then(() => true), new Promise<false>((r) => (timer = setTimeout(r, 60_000, false)))]);
      clearTimeout(timer);
      assert.ok(reached, `the fault point was never reached: ${proxy.holdSeen} of ${at} bytes came from the agent in 60 s (${what})${context()}`);
      if (stall) stalls++;
      else cuts++;
      await agent.waitForLog(/CONNECTION_LOST|RECONNECT/, 30_000, agentMark);
      await waitForConvergence(s, { timeoutMs: 90_000, what: `the standby after ${what}`, context });
      assert.ok(proxy.connections > connectionsBefore, 'the agent did not reconnect');
      if (size >= RESUMABLE) {
        // Converged, so the transfer that resumed (it logs before its data) is in the log already.
        const log = receiver.stderr().slice(receiverMark);
        assert.match(log, new RegExp(`"${rel}: kept \\d+ of ${size} bytes to resume later"`), `the receiver kept no prefix after ${what}:\n${log}`);
        assert.match(log, new RegExp(`"${rel}: resuming at byte [1-9]\\d* of ${size}"`), `the transfer did not resume after ${what}:\n${log}`);
        mustResume++;
      }
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
    process.stdout.write(`# network: seed ${seed}: ${cuts} cuts, ${stalls} half-open stalls, ${proxy.connections} connections, ${resumed} transfers resumed (${mustResume} had to); `
      + `peak RSS agent ${peak('agent')} MiB, receiver ${peak('receiver')} MiB\n`);
    for (const [name, bytes] of rss.peak) assert.ok(bytes < RSS_LIMIT, `${name} RSS peaked at ${Math.round(bytes / MiB)} MiB`);
  } finally {
    rss.stop();
    await agent?.stop('SIGKILL').catch(() => undefined);
  }
});
