// Faults: SIGKILL the receiver and, separately, the agent at seeded random points, first of an
// initial sync (`agent --once`, rerun after each kill) and then of a live stream (the daemon, with a
// writer changing the source all along). In the initial sync the agent talks through a proxy that
// goes quiet after a drawn number of bytes (early, middle or late in what the run must send, for
// each victim in turn): the kill lands at that point of the run's own progress, however fast or
// slow the machine. Throughout, a poller checks that every regular file at a
// final path on the standby is a version of that path the test wrote (never a partial, torn or
// unverified file); after each kill the manifest opens; at the end the standby equals the source,
// `warmsync verify` is clean and no temporary file is left outside the state dir.
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startAgentProcess } from '../../scripts/lib/cli-process.js';
import { Manifest } from '../../src/manifest/manifest.js';
import {
  assertSameTree, closeStandbys, findTempFiles, openStandby, restartReceiver, runCli, startLiveAgent, syncOnce, tombstonePaths,
  waitForConvergence, waitForReceiverIdle, type Standby,
} from '../helpers/e2e.js';
import { LONG, MiB, Rng, StandbyPoller, Versions, faultSeed, haltPollers } from '../helpers/faults.js';
import { FaultProxy } from '../helpers/proxy.js';
import { RESUMABLE_MIN_BYTES } from '../../src/protocol/limits.js';

let proxy: FaultProxy | null = null;
after(async () => {
  await haltPollers();
  await proxy?.close();
  await closeStandbys();
});

const seed = faultSeed('crash');
const rng = new Rng(seed);
/** Kill points per phase; each phase alternates receiver and agent. */
const ONCE_KILLS = LONG ? 40 : 12;
const LIVE_KILLS = LONG ? 40 : 10;

/**
 * Where in a run's stream a kill lands, as a share of the bytes the run must send: the handshake
 * and the first files, the middle, the last files before the run could finish.
 */
const STAGES = [['early', 0, 0.05], ['middle', 0.05, 0.6], ['late', 0.6, 1]] as const;
type Victim = 'receiver' | 'agent';
type Stage = (typeof STAGES)[number][0];

const onceKills = new Map<`${Victim} ${Stage}`, number>();
const live = { receiver: 0, agent: 0 };

/** The source: small files in 16 dirs, a few of some MiB, one large enough to be resumable (16 MiB+). */
class Source {
  readonly files: string[] = [];
  /** Paths written since the last run began: none of their contents can be on the standby yet. */
  private readonly fresh = new Set<string>();
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
    this.fresh.add(rel);
    await this.versions.writeAtomic(this.s.src, rel, rng.bytes(size));
  }

  /**
   * Bytes the next run must send at the least: every file written since the last run began, in
   * full (new content is never on the standby; a kept partial can only shorten a resumable file's
   * transfer, so those are left out). Starts a new count.
   */
  async mustSend(): Promise<number> {
    let bytes = 0;
    for (const rel of this.fresh) {
      const st = await lstat(join(this.s.src, rel)).catch(() => null);
      if (st !== null && st.size < RESUMABLE_MIN_BYTES) bytes += st.size;
    }
    this.fresh.clear();
    return bytes;
  }

  /** Some megabytes of changes: the next run has work to be killed in. */
  async churn(withBig: boolean): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const rel = rng.pick(this.files.filter((f) => !f.startsWith('big/')));
      this.fresh.add(rel);
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

function onceArgs(s: Standby, url: string): string[] {
  return ['--root', s.src, '--connect', url, '--token-file', s.tokenFile, '--once', '--connect-attempts', '20'];
}

async function killReceiver(s: Standby): Promise<void> {
  const receiver = s.receiver;
  const receiverExit = new Promise<number | null>((r) => receiver.child.once('close', r));
  receiver.child.kill('SIGKILL');
  await receiverExit;
}

/**
 * Runs `agent --once` through the proxy held after `point` bytes and, once the stream is held
 * there, SIGKILLs `victim`. The run cannot finish first: `point` is below what it must send. Then
 * lets the run (or its rerun against a restarted receiver) go on to its end.
 */
async function killOnceRun(s: Standby, p: FaultProxy, victim: Victim, point: number, mustSend: number): Promise<void> {
  const held = p.holdAfter(point);
  const agent = startAgentProcess(onceArgs(s, p.url));
  const first = await Promise.race([held.then(() => 'held' as const), agent.exited.then(() => 'exited' as const)]);
  assert.equal(first, 'held', `agent --once ended before sending ${point} bytes, though the run had ${mustSend} bytes of new file content to send:\n${agent.stderr()}`);
  // A moment for the receiver to act on what it got: the kill may find it writing, verifying or committing.
  await new Promise((r) => setTimeout(r, rng.int(0, 30)));
  if (victim === 'agent') {
    assert.equal(agent.child.exitCode, null, `the agent exited while its stream was held:\n${agent.stderr()}`);
    agent.child.kill('SIGKILL');
    await agent.exited;
    p.release();
  } else {
    await killReceiver(s);
    assertManifestOpens(s);
    p.release();
    // The agent redials the proxy until the new receiver answers on the same port.
    await restartReceiver(s);
  }
  await agent.exited;
  assertManifestOpens(s);
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

  // ---- initial sync: agent --once through the proxy, killed or its receiver killed, then run again ----
  const target = new URL(s.url);
  proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port) });
  for (let k = 0; k < ONCE_KILLS; k++) {
    if (k > 0) await source.churn(k % 3 === 0);
    const mustSend = await source.mustSend();
    const victim: Victim = k % 2 === 0 ? 'receiver' : 'agent';
    const [stage, from, to] = STAGES[Math.floor(k / 2) % STAGES.length] as (typeof STAGES)[number];
    const point = Math.floor(mustSend * (from + rng.next() * (to - from)));
    await waitForReceiverIdle(s.dst, 30_000);
    await killOnceRun(s, proxy, victim, point, mustSend);
    onceKills.set(`${victim} ${stage}`, (onceKills.get(`${victim} ${stage}`) ?? 0) + 1);
  }
  await waitForReceiverIdle(s.dst, 30_000);
  await syncOnce(s, ['--connect-attempts', '20'], 120_000);
  await assertSameTree(s.src, s.dst, { skipDst: (rel) => tombstonePaths(s.dst).includes(rel) });
  // Every victim was killed at every stage of a run.
  assert.equal(onceKills.size, 2 * STAGES.length, `kill points covered: ${[...onceKills.keys()].join(', ')}`);

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
    while (live.receiver + live.agent < LIVE_KILLS) {
      await new Promise((r) => setTimeout(r, rng.int(200, 1500)));
      if ((live.receiver + live.agent) % 2 === 0) {
        await killReceiver(s);
        live.receiver++;
        assertManifestOpens(s);
        await new Promise((r) => setTimeout(r, rng.int(0, 500)));
        await restartReceiver(s);
      } else {
        assert.equal(agent.child.exitCode, null, `the live agent exited on its own:\n${agent.stderr()}`);
        agent.child.kill('SIGKILL');
        await agent.exited;
        live.agent++;
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
  const points = [...onceKills].map(([where, n]) => `${n} ${where}`).join(', ');
  process.stdout.write(`# crash: seed ${seed}: initial sync: ${ONCE_KILLS} kills (${points}); live: ${live.receiver} receiver, ${live.agent} agent; `
    + `${versions.writes} source writes; ${poller.checks} standby checks; 0 partial files seen\n`);
});
