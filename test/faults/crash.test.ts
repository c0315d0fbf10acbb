// Faults: SIGKILL the receiver and, separately, the agent at seeded random points, first of an
// initial sync (`agent --once`, rerun after each kill) and then of a live stream (the daemon, with a
// writer changing the source all along). Throughout, a poller checks that every regular file at a
// final path on the standby is a version of that path the test wrote (never a partial, torn or
// unverified file); after each kill the manifest opens; at the end the standby equals the source,
// `warmsync verify` is clean and no temporary file is left outside the state dir.
import assert from 'node:assert/strict';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startAgentProcess, type AgentProcess } from '../../scripts/lib/cli-process.js';
import { Manifest } from '../../src/manifest/manifest.js';
import {
  assertSameTree, closeStandbys, findTempFiles, openStandby, restartReceiver, runCli, startLiveAgent, syncOnce, tombstonePaths,
  waitForConvergence, waitForReceiverIdle, type Standby,
} from '../helpers/e2e.js';
import { LONG, MiB, Rng, StandbyPoller, Versions, faultSeed, haltPollers } from '../helpers/faults.js';

after(async () => {
  await haltPollers();
  await closeStandbys();
});

const seed = faultSeed('crash');
const rng = new Rng(seed);
/** Kill points per phase; each phase alternates receiver and agent. */
const ONCE_KILLS = LONG ? 40 : 12;
const LIVE_KILLS = LONG ? 40 : 10;

interface Tally { receiver: number; agent: number; misses: number }
const tally = { once: { receiver: 0, agent: 0, misses: 0 } as Tally, live: { receiver: 0, agent: 0, misses: 0 } as Tally };

/** The source: small files in 16 dirs, a few of some MiB, one large enough to be resumable (16 MiB+). */
class Source {
  readonly files: string[] = [];
  private next = 0;
  constructor(private readonly s: Standby, readonly versions: Versions) {}

  async build(): Promise<void> {
    for (let d = 0; d < 16; d++) await mkdir(join(this.s.src, `filestore/${d.toString(16).padStart(2, '0')}`), { recursive: true });
    for (let i = 0; i < 200; i++) await this.add(rng.int(1, 32 * 1024));
    for (let i = 0; i < 6; i++) await this.add(rng.int(1 * MiB, 3 * MiB));
    this.files.push('big/huge.bin');
    await mkdir(join(this.s.src, 'big'), { recursive: true });
    await this.versions.writeAtomic(this.s.src, 'big/huge.bin', rng.bytes(17 * MiB + rng.int(0, MiB)));
  }

  async add(size: number): Promise<void> {
    const rel = `filestore/${(this.next % 16).toString(16).padStart(2, '0')}/blob-${this.next++}`;
    this.files.push(rel);
    await this.versions.writeAtomic(this.s.src, rel, rng.bytes(size));
  }

  /** Some megabytes of changes: the next run has work to be killed in. */
  async churn(withBig: boolean): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const rel = rng.pick(this.files.filter((f) => !f.startsWith('big/')));
      await this.versions.writeInPlace(this.s.src, rel, rng.bytes(rng.int(0, 48 * 1024)));
    }
    for (let i = 0; i < 3; i++) await this.add(rng.int(MiB, 3 * MiB));
    for (let i = 0; i < 10; i++) await this.add(rng.int(1, 16 * 1024));
    if (withBig) await this.versions.writeAtomic(this.s.src, 'big/huge.bin', rng.bytes(17 * MiB + rng.int(0, MiB)));
    if (this.files.length > 50) {
      const gone = this.files.splice(rng.int(0, this.files.length - 2), 1)[0] as string;
      await rm(join(this.s.src, gone));
    }
  }
}

/** Operator commands must always be able to open the manifest, whatever the kill interrupted. */
function assertManifestOpens(s: Standby): void {
  const manifest = Manifest.openExisting(join(s.dst, '.warmsync'));
  try {
    assert.equal(manifest.db.pragma('quick_check', { simple: true }), 'ok');
    manifest.counts();
  } finally {
    manifest.close();
  }
}

function onceArgs(s: Standby): string[] {
  return ['--root', s.src, '--connect', s.url, '--token-file', s.tokenFile, '--once', '--connect-attempts', '20'];
}

/** Kills `victim` `delayMs` from now unless it exited by then; true when the kill landed. */
async function killAfter(child: AgentProcess['child'], exited: Promise<number | null>, delayMs: number): Promise<boolean> {
  const done = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), delayMs))]);
  if (done || child.exitCode !== null || child.signalCode !== null) return false;
  child.kill('SIGKILL');
  await exited;
  return true;
}

async function finalChecks(s: Standby, poller: StandbyPoller): Promise<void> {
  await poller.stop();
  const tombstones = tombstonePaths(s.dst);
  await assertSameTree(s.src, s.dst, { skipDst: (rel) => tombstones.includes(rel) });
  const verify = await runCli(['verify', '--root', s.dst], { timeoutMs: 60_000 });
  assert.equal(verify.code, 0, `verify found differences:\n${verify.stdout}${verify.stderr}`);
  assert.deepEqual(await findTempFiles(s.dst), [], 'temporary files left outside the state dir');
  assert.deepEqual((await readdir(s.src)).filter((n) => n.startsWith('.warmsync-tmp.')), []);
}

test('SIGKILL of the receiver and of the agent during an initial sync and a live stream', { timeout: LONG ? 1_800_000 : 300_000 }, async () => {
  const s = await openStandby();
  const versions = new Versions();
  const source = new Source(s, versions);
  await source.build();
  const poller = new StandbyPoller(s.dst, versions);

  // ---- initial sync: agent --once, killed or its receiver killed, then run again ----
  let attempts = 0;
  for (let k = 0; tally.once.receiver + tally.once.agent < ONCE_KILLS; k++) {
    assert.ok(attempts++ < ONCE_KILLS * 4, `only ${tally.once.receiver + tally.once.agent} kills landed in ${attempts} runs`);
    if (k > 0) await source.churn(k % 3 === 0);
    await waitForReceiverIdle(s.dst, 30_000);
    const agent = startAgentProcess(onceArgs(s));
    const victim = (tally.once.receiver + tally.once.agent) % 2 === 0 ? 'receiver' : 'agent';
    const delay = rng.int(100, 1500);
    if (victim === 'agent') {
      if (await killAfter(agent.child, agent.exited, delay)) tally.once.agent++;
      else tally.once.misses++;
    } else {
      const receiver = s.receiver;
      const receiverExit = new Promise<number | null>((r) => receiver.child.once('close', r));
      const landed = await Promise.race([agent.exited.then(() => false), new Promise<true>((r) => setTimeout(() => r(true), delay))]);
      if (landed) {
        receiver.child.kill('SIGKILL');
        await receiverExit;
        tally.once.receiver++;
        assertManifestOpens(s);
        // The agent may still be dialling (it had not connected yet): it gets the new receiver.
        await restartReceiver(s);
      } else {
        tally.once.misses++;
      }
    }
    await agent.exited;
    assertManifestOpens(s);
  }
  await waitForReceiverIdle(s.dst, 30_000);
  await syncOnce(s, ['--connect-attempts', '20'], 120_000);
  await assertSameTree(s.src, s.dst, { skipDst: (rel) => tombstonePaths(s.dst).includes(rel) });

  // ---- live stream: the daemon runs while a writer changes the source ----
  let stopWriting = false;
  const writer = (async () => {
    while (!stopWriting) {
      const rel = rng.pick(source.files.filter((f) => !f.startsWith('big/')));
      if (rng.next() < 0.1) await source.add(rng.int(MiB / 2, 2 * MiB));
      else await versions.writeInPlace(s.src, rel, rng.bytes(rng.int(0, 64 * 1024)));
      await new Promise((r) => setTimeout(r, rng.int(5, 40)));
    }
  })();
  let agent = startLiveAgent(s);
  try {
    await agent.waitForLog(/connected to/, 30_000);
    while (tally.live.receiver + tally.live.agent < LIVE_KILLS) {
      await new Promise((r) => setTimeout(r, rng.int(200, 1500)));
      if ((tally.live.receiver + tally.live.agent) % 2 === 0) {
        const receiver = s.receiver;
        const receiverExit = new Promise<number | null>((r) => receiver.child.once('close', r));
        receiver.child.kill('SIGKILL');
        await receiverExit;
        tally.live.receiver++;
        assertManifestOpens(s);
        await new Promise((r) => setTimeout(r, rng.int(0, 500)));
        await restartReceiver(s);
      } else {
        assert.equal(agent.child.exitCode, null, `the live agent exited on its own:\n${agent.stderr()}`);
        agent.child.kill('SIGKILL');
        await agent.exited;
        tally.live.agent++;
        assertManifestOpens(s);
        agent = startLiveAgent(s);
      }
    }
    stopWriting = true;
    await writer;
    await waitForConvergence(s, { timeoutMs: 120_000, what: 'the standby after the live kills', context: () => `agent:\n${agent.stderr().slice(-3000)}\nreceiver:\n${s.receiver.stderr().slice(-3000)}` });
    assert.equal(await agent.stop(), 0);
  } finally {
    stopWriting = true;
    await writer;
  }
  await finalChecks(s, poller);
  const total = tally.once.receiver + tally.once.agent + tally.live.receiver + tally.live.agent;
  process.stdout.write(`# crash: seed ${seed}: ${total} kill points (initial sync: ${tally.once.receiver} receiver, ${tally.once.agent} agent, `
    + `${tally.once.misses} runs finished before their kill; live: ${tally.live.receiver} receiver, ${tally.live.agent} agent); `
    + `${versions.writes} source writes; ${poller.checks} standby checks; 0 partial files seen\n`);
  assert.ok(total >= 20, `only ${total} kill points`);
});
