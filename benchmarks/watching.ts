/**
 * The live agent under load, against issue 3's targets. warmsync alone (no competitor), each
 * scenario on trees of its own in a scratch dir: its receiver and agents are stopped and the dir
 * (and the agent's state dir) removed when it ends, failed or not, and every wait is bounded.
 *
 *   behind-large  the live agent running, a 256 MiB file starts being written, and right after its
 *                 first MiB 50 small files (1-20 KiB) follow at 50/s: close -> full size on the
 *                 standby for each small file (p99 <= 250 ms), and the large file's own times
 *   burst         the live agent running, 10,000 small files (1-20 KiB) written as fast as one
 *                 process can into 10 new directories: time until all are on the standby, each
 *                 checked byte for byte at the end; peak RSS of agent and receiver during it
 *                 (VmHWM reset through /proc/PID/clear_refs just before)
 *   watch-memory  a 100,000-file tree (1-byte files in 256 dirs) synced once with `agent --once`,
 *                 then the live agent started on it: time from spawn to idle (its initial
 *                 reconcile done and under 5 % of a core for 2 s), its RSS then (<= 200 MB), its
 *                 peak, and the inotify watches it holds
 *
 * Rounds: --pairs of them; each starts a fresh live agent on the same standby.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Arrivals } from './arrivals.js';
import { Rng, content, generateFlatTree, writeBinary, writeLargeFile } from './corpus.js';
import { TICKS_PER_S, cpuTicks, inotifyWatches, memoryKiB, resetPeakRss, vmHwmKiB } from './proc.js';
import {
  awaitStartupSync, checkStandby, label, latencySummary, newResult, settle, sleep,
  type Comparison, type Context, type LiveRecord, type ScenarioResult, type Target, type Unit,
} from './scenarios.js';
import type { LiveRun } from './side.js';
import { findLogLine, type WarmsyncStandby } from './warmsync.js';

const MiB = 1024 * 1024;
const SIDE = 'warmsync live agent';
const BEHIND_FILES = 50;
const BEHIND_RATE = 50;
const BURST_DIRS = 10;
const WATCH_DIRS = 256;
/** Idle: under this share of one core over IDLE_WINDOW_MS, after the agent logged its initial scan. */
export const IDLE_CPU_SHARE = 0.05;
export const IDLE_WINDOW_MS = 2000;

const smallSize = (rng: Rng): number => rng.int(1024, 20 * 1024);

export interface BehindRecord extends LiveRecord {
  readonly kind: 'behind-large';
  readonly bigBytes: number;
  /** Open to close of the large file on the source. */
  readonly bigWriteMs: number;
  /** Its close on the source to full size on the standby, and its first byte to that. */
  readonly bigCloseToStandbyMs: number | null;
  readonly bigStartToStandbyMs: number | null;
  /** First to last small file written (paced at 50/s). */
  readonly smallWriteSpanMs: number;
  /** Small files that arrived before the large file did. */
  readonly smallBeforeBig: number;
  /** Timeline from the large file's first byte (ms): its close and arrival, and each small file's close and arrival. */
  readonly timeline: { readonly big: readonly [number, number | null]; readonly small: ReadonlyArray<readonly [number, number | null]> };
}

export interface BurstRecord {
  readonly kind: 'burst';
  readonly files: number;
  readonly bytes: number;
  /** First mkdir to the last file closed on the source (--burst-copy: the `cp -a`, start to end). */
  readonly writeMs: number;
  /** From the same start to the last file found complete on the standby (null when some never arrived). */
  readonly allOnStandbyMs: number | null;
  readonly missing: number;
  /** Arrived, but not byte-identical to what was written. */
  readonly different: number;
  readonly agentRssBeforeKiB: number | null;
  readonly agentPeakRssKiB: number | null;
  readonly receiverRssBeforeKiB: number | null;
  readonly receiverPeakRssKiB: number | null;
  /** Whether the peaks are from a VmHWM reset just before the burst (else: the process's lifetime). */
  readonly peaksSinceBurst: boolean;
  /** CPU time (user + system) each process used from the first write to the last arrival. */
  readonly agentCpuMs: number | null;
  readonly receiverCpuMs: number | null;
}

export interface WatchRecord {
  readonly kind: 'watch';
  readonly files: number;
  /** From spawn (Date.now) to the agent's log lines. */
  readonly watchingMs: number | null;
  readonly connectedMs: number | null;
  readonly scannedMs: number | null;
  /** From spawn to the start of the first quiet window after "scanned" (null: never idle in time). */
  readonly idleMs: number | null;
  readonly hashed: number | null;
  readonly fromCache: number | null;
  readonly agentRssIdleKiB: number | null;
  readonly agentPeakRssKiB: number | null;
  readonly inotifyWatches: number | null;
  /** CPU time (user + system) the agent used from spawn to idle. */
  readonly agentCpuMs: number | null;
  readonly receiverRssKiB: number | null;
  readonly receiverPeakRssKiB: number | null;
  /** A file written once idle: close -> on the standby (proves it is watching). */
  readonly liveCheckMs: number | null;
}

function metric(result: ScenarioResult, name: string, unit: Unit, target?: Target): Comparison {
  const c: Comparison = { competitor: '-', metric: name, unit, warmsync: [], other: [], ...(target ? { target } : {}) };
  result.comparisons.push(c);
  return c;
}

const kib2mb = (kib: number | null): number => (kib === null ? NaN : kib / 1024);
const ms = (x: number | null): string => (x === null ? '-' : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
const mb = (kib: number | null): string => (kib === null ? '-' : `${Math.round(kib / 1024)} MB`);

interface Scratch {
  readonly src: string;
  /** The receiver serving standby/ (replaced by restartReceiver). */
  readonly standby: () => WarmsyncStandby;
  /** Stops the receiver and starts a fresh one on the same standby (same agent cache). */
  restartReceiver(): Promise<void>;
}

/** A scratch dir with src/ and a warmsync receiver on standby/; everything removed afterwards. */
async function onScratch<T>(ctx: Context, id: string, body: (scratch: Scratch) => Promise<T>): Promise<T> {
  const dir = await ctx.scratch(id);
  const standbyDir = join(dir, 'standby');
  const standbyLabel = label(`scratch-${id}`);
  let standby: WarmsyncStandby | null = null;
  let agentStateDir: string | null = null;
  try {
    const src = join(dir, 'src');
    mkdirSync(src);
    standby = await ctx.warmsync.open(standbyDir, standbyLabel);
    agentStateDir = standby.agentStateDir;
    return await body({
      src,
      standby: () => standby as WarmsyncStandby,
      async restartReceiver() {
        await standby?.close();
        standby = null;
        standby = await ctx.warmsync.open(standbyDir, standbyLabel);
      },
    });
  } finally {
    await standby?.close().catch(() => undefined);
    if (agentStateDir !== null) await rm(agentStateDir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

/** Starts the live agent on `src`, runs `body`, stops the agent (bounded) whatever happened. */
async function withLiveAgent<T>(ctx: Context, standby: WarmsyncStandby, src: string, body: (run: LiveRun) => Promise<T>): Promise<T> {
  const run = await ctx.warmsyncLive(standby).start(src);
  try {
    return await body(run);
  } finally {
    await run.stop().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------

async function behindRound(ctx: Context, src: string, run: LiveRun, round: number): Promise<BehindRecord> {
  await awaitStartupSync(src, run, SIDE, `behind-${round + 1}`);
  const rng = new Rng(`${ctx.seed}:behind:${round}`);
  const bigRel = `data/big/behind-${round + 1}.bin`;
  const bigBytes = ctx.behindMiB * MiB;
  const small: Array<{ rel: string; closedAt: number }> = [];
  const arrivals = new Arrivals(run.standbyDir);
  try {
    const bigStart = performance.now();
    let started = (): void => undefined;
    const firstMiB = new Promise<void>((resolve) => (started = resolve));
    const bigClosed = writeLargeFile(src, ctx.seed, bigRel, bigBytes, () => started());
    await Promise.race([firstMiB, bigClosed]);
    const interval = 1000 / BEHIND_RATE;
    const smallStart = performance.now();
    for (let k = 0; k < BEHIND_FILES; k++) {
      const wait = smallStart + k * interval - performance.now();
      if (wait > 0) await sleep(wait);
      const { rel, bytes } = writeBinary(src, ctx.seed, `behind-${round}-${k}`, smallSize(rng));
      const closedAt = performance.now();
      arrivals.expect(rel, closedAt, bytes);
      small.push({ rel, closedAt });
    }
    const smallWriteSpanMs = performance.now() - smallStart;
    const bigClosedAt = await bigClosed;
    arrivals.expect(bigRel, bigClosedAt, bigBytes);
    await arrivals.waitAll(Math.min(ctx.timeoutMs, 600_000));
    const big = arrivals.arrival(bigRel);
    const latencies = small.map((f) => arrivals.arrival(f.rel)?.latencyMs).filter((x): x is number => x !== undefined);
    const smallBeforeBig = big === null ? latencies.length : small.filter((f) => (arrivals.arrival(f.rel)?.at ?? Infinity) < big.at).length;
    const since = (t: number | undefined): number | null => (t === undefined ? null : Math.round((t - bigStart) * 10) / 10);
    return {
      kind: 'behind-large', latenciesMs: latencies.map((x) => Math.round(x * 10) / 10), ...latencySummary(latencies),
      missing: small.length - latencies.length, watcherPeakRssKiB: vmHwmKiB(run.watcherPid), receiverPeakRssKiB: vmHwmKiB(run.receiverPid),
      bigBytes, bigWriteMs: bigClosedAt - bigStart, bigCloseToStandbyMs: big?.latencyMs ?? null,
      bigStartToStandbyMs: big === null ? null : big.at - bigStart, smallWriteSpanMs, smallBeforeBig,
      timeline: {
        big: [since(bigClosedAt) as number, since(big?.at)],
        small: small.map((f) => [since(f.closedAt) as number, since(arrivals.arrival(f.rel)?.at)] as const),
      },
    };
  } finally {
    arrivals.stop();
  }
}

export async function behindLargeScenario(ctx: Context): Promise<ScenarioResult> {
  const result = newResult('behind-large', `Behind a large file: ${BEHIND_FILES} files (1-20 KiB) at ${BEHIND_RATE}/s just after a ${ctx.behindMiB} MiB file starts`);
  const p50 = metric(result, 'small files p50 latency', 'ms');
  const p99 = metric(result, 'small files p99 latency', 'ms', { max: 250, text: 'p99 <= 250 ms' });
  const max = metric(result, 'small files max latency', 'ms');
  const big = metric(result, `${ctx.behindMiB} MiB file, first byte -> on standby`, 'time');
  const rows: string[][] = [];
  await onScratch(ctx, 'behind-large', async ({ src, standby }) => {
    for (let round = 0; round < ctx.pairs; round++) {
      await settle();
      const rec = await withLiveAgent(ctx, standby(), src, (run) => behindRound(ctx, src, run, round));
      result.runs.push({ round, side: SIDE, record: rec });
      p50.warmsync.push(rec.p50Ms ?? NaN);
      p99.warmsync.push(rec.p99Ms ?? NaN);
      max.warmsync.push(rec.maxMs ?? NaN);
      big.warmsync.push(rec.bigStartToStandbyMs ?? NaN);
      ctx.say(`  round ${round + 1}: small p50 ${ms(rec.p50Ms)}, p99 ${ms(rec.p99Ms)}, max ${ms(rec.maxMs)}, missing ${rec.missing}; `
        + `large written in ${ms(rec.bigWriteMs)}, on standby ${ms(rec.bigCloseToStandbyMs)} after its close; ${rec.smallBeforeBig}/${BEHIND_FILES} small files arrived before it`);
      const bigAt = rec.timeline.big[1];
      const withBig = bigAt === null ? 0 : rec.timeline.small.filter(([, at]) => at !== null && Math.abs(at - bigAt) <= 50).length;
      rows.push([`${round + 1}`, ms(rec.p50Ms), ms(rec.p90Ms), ms(rec.p99Ms), ms(rec.maxMs), `${rec.missing}`, `${rec.smallBeforeBig} of ${BEHIND_FILES}`, `${withBig}`,
        ms(rec.bigWriteMs), ms(rec.bigCloseToStandbyMs), ms(rec.bigStartToStandbyMs), mb(rec.watcherPeakRssKiB), mb(rec.receiverPeakRssKiB)]);
    }
  });
  result.tables = [{
    caption: `Behind a large file, per round (small-file latency = writer's close -> full size on the standby, polled every 1 ms; the ${ctx.behindMiB} MiB file is written in place, 1 MiB per write):`,
    header: ['round', 'p50', 'p90', 'p99', 'max', 'missing', 'small before large', 'small within 50 ms of large', 'large: write', 'large: close -> standby', 'large: first byte -> standby', 'agent peak RSS', 'receiver peak RSS'],
    rows,
  }];
  return result;
}

// ---------------------------------------------------------------------------------------------

/** Writes the burst's files under `root` (its BURST_DIRS dirs first), calling `written(i)` after each. */
function writeBurst(root: string, rels: readonly string[], data: (i: number) => Buffer, written: (i: number) => void): void {
  for (const rel of new Set(rels.map((r) => r.slice(0, r.lastIndexOf('/'))))) mkdirSync(join(root, rel), { recursive: true });
  for (let i = 0; i < rels.length; i++) {
    writeFileSync(join(root, rels[i] as string), data(i));
    written(i);
  }
}

async function burstRound(ctx: Context, src: string, run: LiveRun, round: number): Promise<BurstRecord> {
  await awaitStartupSync(src, run, SIDE, `burst-${round + 1}`);
  // Untimed: sizes and contents up front, so the timed loop only writes.
  const rng = new Rng(`${ctx.seed}:burst:${round}`);
  const sizes = Array.from({ length: ctx.burstFiles }, () => smallSize(rng));
  const pool = content(ctx.seed, `burst-${round}`, sizes.reduce((a, b) => a + b, 0));
  const rels = sizes.map((_, i) => `burst-${round + 1}/d${String(i % BURST_DIRS).padStart(2, '0')}/f${String(i).padStart(5, '0')}`);
  const offsets: number[] = [];
  sizes.reduce((off, size) => (offsets.push(off), off + size), 0);
  const data = (i: number): Buffer => pool.subarray(offsets[i] as number, (offsets[i] as number) + (sizes[i] as number));

  const agentBefore = memoryKiB(run.watcherPid);
  const receiverBefore = memoryKiB(run.receiverPid);
  const peaksSinceBurst = resetPeakRss(run.watcherPid) && resetPeakRss(run.receiverPid);
  const arrivals = new Arrivals(run.standbyDir, 20);
  const cpu0 = [cpuTicks(run.watcherPid), cpuTicks(run.receiverPid)] as const;
  const cpuMs = (pid: number | undefined, before: number | null): number | null => {
    const now = cpuTicks(pid);
    return now === null || before === null ? null : ((now - before) * 1000) / TICKS_PER_S;
  };
  try {
    // Written in place, file by file; or (--burst-copy) written beside the source first, untimed, and
    // copied in with `cp -a` as a restore does: every file then counts from the copy's end.
    const into = ctx.burstCopy ? `${src}.burst-${round + 1}` : src;
    if (ctx.burstCopy) writeBurst(into, rels, data, () => undefined);
    const t0 = performance.now();
    if (ctx.burstCopy) {
      execFileSync('cp', ['-a', join(into, `burst-${round + 1}`), join(src, `burst-${round + 1}`)]);
      const copied = performance.now();
      rels.forEach((rel, i) => arrivals.expect(rel, copied, sizes[i] as number));
    } else {
      writeBurst(src, rels, data, (i) => arrivals.expect(rels[i] as string, performance.now(), sizes[i] as number));
    }
    const writeMs = performance.now() - t0;
    const complete = await arrivals.waitAll(Math.min(ctx.timeoutMs, 600_000));
    const last = arrivals.lastArrivalAt();
    const agentCpuMs = cpuMs(run.watcherPid, cpu0[0]);
    const receiverCpuMs = cpuMs(run.receiverPid, cpu0[1]);
    const agentPeakRssKiB = vmHwmKiB(run.watcherPid);
    const receiverPeakRssKiB = vmHwmKiB(run.receiverPid);
    // The copy's origin goes only now: a restore keeps its backup, and removing 60,000 files while
    // the burst is timed took CPU from both ends on this two-core machine.
    if (ctx.burstCopy) await rm(into, { recursive: true, force: true });
    let different = 0;
    rels.forEach((rel, i) => {
      if (arrivals.arrival(rel) === null) return;
      if (!readFileSync(join(run.standbyDir, rel)).equals(data(i))) different++;
    });
    return {
      kind: 'burst', files: rels.length, bytes: pool.length, writeMs, allOnStandbyMs: complete && last !== null ? last - t0 : null,
      missing: arrivals.missing, different, agentRssBeforeKiB: agentBefore?.rssKiB ?? null, agentPeakRssKiB,
      receiverRssBeforeKiB: receiverBefore?.rssKiB ?? null, receiverPeakRssKiB, peaksSinceBurst, agentCpuMs, receiverCpuMs,
    };
  } finally {
    arrivals.stop();
  }
}

export async function burstScenario(ctx: Context): Promise<ScenarioResult> {
  const how = ctx.burstCopy ? 'copied in with `cp -a`' : 'written as fast as possible';
  const result = newResult('burst', `Burst: ${ctx.burstFiles.toLocaleString('en')} files (1-20 KiB) in ${BURST_DIRS} new dirs, ${how}`);
  const time = metric(result, 'first write -> all on standby', 'time');
  const bad = metric(result, 'files missing or different', 'count', { max: 0, worst: true, text: 'all arrive complete' });
  const agent = metric(result, 'agent peak RSS', 'MB');
  const receiver = metric(result, 'receiver peak RSS', 'MB');
  const rows: string[][] = [];
  await onScratch(ctx, 'burst', async ({ src, standby }) => {
    for (let round = 0; round < ctx.pairs; round++) {
      await settle();
      const rec = await withLiveAgent(ctx, standby(), src, (run) => burstRound(ctx, src, run, round));
      result.runs.push({ round, side: SIDE, record: rec });
      time.warmsync.push(rec.allOnStandbyMs ?? NaN);
      bad.warmsync.push(rec.missing + rec.different);
      agent.warmsync.push(kib2mb(rec.agentPeakRssKiB));
      receiver.warmsync.push(kib2mb(rec.receiverPeakRssKiB));
      ctx.say(`  round ${round + 1}: written in ${ms(rec.writeMs)}, all on standby after ${ms(rec.allOnStandbyMs)}; missing ${rec.missing}, different ${rec.different}; `
        + `peak RSS agent ${mb(rec.agentPeakRssKiB)} (from ${mb(rec.agentRssBeforeKiB)}), receiver ${mb(rec.receiverPeakRssKiB)} (from ${mb(rec.receiverRssBeforeKiB)})`);
      rows.push([`${round + 1}`, `${rec.files} (${(rec.bytes / MiB).toFixed(0)} MiB)`, ms(rec.writeMs), ms(rec.allOnStandbyMs),
        rec.allOnStandbyMs === null ? '-' : ms(rec.allOnStandbyMs - rec.writeMs),
        rec.allOnStandbyMs === null ? '-' : `${Math.round(rec.files / (rec.allOnStandbyMs / 1000))}`, `${rec.missing}`, `${rec.different}`,
        `${ms(rec.agentCpuMs)} / ${ms(rec.receiverCpuMs)}`,
        `${mb(rec.agentRssBeforeKiB)} -> ${mb(rec.agentPeakRssKiB)}`, `${mb(rec.receiverRssBeforeKiB)} -> ${mb(rec.receiverPeakRssKiB)}`]);
      if (!rec.peaksSinceBurst) result.notes.push(`round ${round + 1}: /proc/PID/clear_refs refused, so its peaks are over each process's life`);
    }
  });
  result.tables = [{
    caption: 'Burst, per round (arrival polled every 20 ms; content compared byte for byte afterwards; RSS = VmRSS before -> VmHWM reset just before the burst and read once all arrived):',
    header: ['round', 'files', ctx.burstCopy ? 'copied in' : 'written in', 'all on standby', 'after the last write', 'files/s', 'missing', 'different', 'CPU agent / receiver', 'agent RSS', 'receiver RSS'],
    rows,
  }];
  return result;
}

// ---------------------------------------------------------------------------------------------

/** Epoch ms of the first log line matching `pattern` (lines start with an ISO timestamp), or null. */
interface Sample { readonly t: number; readonly ticks: number }

/**
 * Watches `pid`'s CPU time (every 100 ms) until it has used under IDLE_CPU_SHARE of a core over
 * IDLE_WINDOW_MS, counting only from `notBefore()` (performance.now(), null while unknown).
 * Resolves with when that quiet window began, or null after `timeoutMs` or once the process is gone.
 */
export async function waitIdle(pid: number | undefined, notBefore: () => number | null, timeoutMs: number): Promise<number | null> {
  const samples: Sample[] = [];
  const maxTicks = IDLE_CPU_SHARE * TICKS_PER_S * (IDLE_WINDOW_MS / 1000);
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const ticks = cpuTicks(pid);
    if (ticks === null) return null;
    const now = performance.now();
    samples.push({ t: now, ticks });
    const from = notBefore();
    const start = from === null ? undefined : samples.find((s) => s.t >= Math.max(from, now - IDLE_WINDOW_MS));
    if (start !== undefined && from !== null && now - start.t >= IDLE_WINDOW_MS * 0.95 && ticks - start.ticks <= maxTicks) return start.t;
    await sleep(100);
  }
  return null;
}

async function watchRound(ctx: Context, src: string, standby: WarmsyncStandby, round: number): Promise<WatchRecord> {
  const spawnedAt = Date.now();
  const t0 = performance.now();
  return withLiveAgent(ctx, standby, src, async (run) => {
    const log = run.log ?? ((): string => '');
    const sinceSpawn = (prefix: string): number | null => {
      const line = findLogLine(log(), prefix);
      return line === null ? null : line.at - spawnedAt;
    };
    const scannedPerf = (): number | null => {
      const s = sinceSpawn('scanned ');
      return s === null ? null : t0 + s;
    };
    const budget = Math.min(ctx.timeoutMs, 600_000);
    const idleAt = await waitIdle(run.watcherPid, scannedPerf, budget);
    const agent = memoryKiB(run.watcherPid);
    const ticks = cpuTicks(run.watcherPid);
    const watches = inotifyWatches(run.watcherPid);
    const receiver = memoryKiB(run.receiverPid);
    const counts = /\((\d+) hashed, (\d+) from cache/.exec(findLogLine(log(), 'scanned ')?.msg ?? '');
    // Only now (it would disturb the idle reading): one new file, to prove the agent is watching.
    const arrivals = new Arrivals(run.standbyDir);
    let liveCheckMs: number | null = null;
    try {
      const rel = `00/bench-watch-check-${round + 1}`;
      writeFileSync(join(src, rel), 'watched\n');
      arrivals.expect(rel, performance.now(), 'watched\n'.length);
      if (await arrivals.waitAll(30_000)) liveCheckMs = arrivals.arrival(rel)?.latencyMs ?? null;
    } finally {
      arrivals.stop();
    }
    return {
      kind: 'watch', files: ctx.watchFiles,
      watchingMs: sinceSpawn('watching '), connectedMs: sinceSpawn('connected to '), scannedMs: sinceSpawn('scanned '),
      idleMs: idleAt === null ? null : idleAt - t0,
      hashed: counts ? Number(counts[1]) : null, fromCache: counts ? Number(counts[2]) : null,
      agentRssIdleKiB: agent?.rssKiB ?? null, agentPeakRssKiB: agent?.hwmKiB ?? null, inotifyWatches: watches,
      agentCpuMs: ticks === null ? null : (ticks * 1000) / TICKS_PER_S,
      receiverRssKiB: receiver?.rssKiB ?? null, receiverPeakRssKiB: receiver?.hwmKiB ?? null, liveCheckMs,
    };
  });
}

export async function watchMemoryScenario(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.watchFiles.toLocaleString('en');
  const result = newResult('watch-memory', `Watch memory: live agent on ${n} files in ${WATCH_DIRS} dirs`);
  const rss = metric(result, 'agent RSS when idle', 'MB', { max: 200, text: '<= 200 MB' });
  const peak = metric(result, 'agent peak RSS (start-up)', 'MB');
  const idle = metric(result, 'spawn -> idle', 'time');
  const watches = metric(result, 'inotify watches', 'count');
  const receiverRss = metric(result, 'receiver RSS when idle', 'MB', { max: 200, text: '<= 200 MB (issue 5)' });
  const onceAgent = metric(result, 'first sync (agent --once): agent peak RSS', 'MB');
  const onceReceiver = metric(result, 'first sync: receiver peak RSS', 'MB');
  const rows: string[][] = [];
  await onScratch(ctx, 'watch-memory', async ({ src, standby, restartReceiver }) => {
    const g0 = performance.now();
    generateFlatTree(src, ctx.watchFiles, WATCH_DIRS);
    ctx.say(`  generated ${n} 1-byte files in ${WATCH_DIRS} dirs in ${ms(performance.now() - g0)}`);
    await settle();
    const once = await standby().sync(src);
    const problems = checkStandby(src, standby().dir);
    if (problems.length > 0) throw new Error(`agent --once left the standby incomplete: ${problems.join('; ')}`);
    result.runs.push({ round: 0, side: 'warmsync', record: once });
    const receiverAfter = memoryKiB(standby().receiverPid);
    onceAgent.warmsync.push(kib2mb(once.peakRssKiB));
    onceReceiver.warmsync.push(kib2mb(receiverAfter?.hwmKiB ?? null));
    result.notes.push(`the untimed first sync (\`agent --once\`, ${n} files onto an empty standby) took ${ms(once.wallMs)}; peak RSS agent ${mb(once.peakRssKiB)}, `
      + `receiver ${mb(receiverAfter?.hwmKiB ?? null)} (still ${mb(receiverAfter?.rssKiB ?? null)} once it was over); the live rounds then run against a freshly started receiver on that standby`);
    ctx.say(`  agent --once: ${ms(once.wallMs)}, peak RSS agent ${mb(once.peakRssKiB)}, receiver ${mb(receiverAfter?.hwmKiB ?? null)} (${mb(receiverAfter?.rssKiB ?? null)} after)`);
    await restartReceiver();
    for (let round = 0; round < ctx.pairs; round++) {
      await settle();
      await sleep(1000);
      const rec = await watchRound(ctx, src, standby(), round);
      result.runs.push({ round, side: SIDE, record: rec });
      rss.warmsync.push(kib2mb(rec.agentRssIdleKiB));
      peak.warmsync.push(kib2mb(rec.agentPeakRssKiB));
      idle.warmsync.push(rec.idleMs ?? NaN);
      watches.warmsync.push(rec.inotifyWatches ?? NaN);
      receiverRss.warmsync.push(kib2mb(rec.receiverRssKiB));
      ctx.say(`  round ${round + 1}: idle after ${ms(rec.idleMs)} (watching ${ms(rec.watchingMs)}, connected ${ms(rec.connectedMs)}, scanned ${ms(rec.scannedMs)}); `
        + `RSS ${mb(rec.agentRssIdleKiB)}, peak ${mb(rec.agentPeakRssKiB)}, ${rec.inotifyWatches ?? '-'} inotify watches; receiver ${mb(rec.receiverRssKiB)}; live check ${ms(rec.liveCheckMs)}`);
      rows.push([`${round + 1}`, ms(rec.watchingMs), ms(rec.connectedMs), ms(rec.scannedMs), ms(rec.idleMs), ms(rec.agentCpuMs),
        rec.hashed === null ? '-' : `${rec.hashed} / ${rec.fromCache}`, mb(rec.agentRssIdleKiB), mb(rec.agentPeakRssKiB), `${rec.inotifyWatches ?? '-'}`,
        `${mb(rec.receiverRssKiB)} (peak ${mb(rec.receiverPeakRssKiB)})`, ms(rec.liveCheckMs)]);
      if (rec.idleMs === null) result.notes.push(`round ${round + 1}: the agent was not idle within the time limit; RSS read when it ran out`);
      if (rec.liveCheckMs === null) result.notes.push(`round ${round + 1}: the file written after the idle reading did not reach the standby within 30 s`);
    }
  });
  result.tables = [{
    caption: `Watch memory, per round: a fresh live agent on the ${n}-file tree already on the standby (times from spawn, from its log lines; idle = after "scanned", under ${IDLE_CPU_SHARE * 100} % of a core for ${IDLE_WINDOW_MS / 1000} s; RSS = VmRSS then, peak = VmHWM since spawn; the receiver was restarted after the --once sync and serves every round):`,
    header: ['round', 'watching', 'connected', 'scanned', 'idle', 'agent CPU to idle', 'hashed / from cache', 'agent RSS idle', 'agent peak', 'inotify watches', 'receiver RSS', 'new file -> standby'],
    rows,
  }];
  return result;
}
