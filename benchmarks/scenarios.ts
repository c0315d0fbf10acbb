/**
 * The scenarios. Each runs warmsync and its competitors alternately, round after round
 * (warmsync, C1, C2, ..., warmsync, C1, C2, ...), so that drift in a shared machine's load hits both
 * sides alike; round i's warmsync run is paired with round i's run of each competitor.
 *
 * A scenario may also run floors in the same rounds, after the competitors (warmsync, C1, ..., F1,
 * ...): bounds its job cannot beat on this machine (a durable copy, a walk of the source, Node's
 * start-up). They are recorded apart from the competitors (ScenarioResult.floors, RunLog.floor),
 * so that the report can say which ratio to a competitor is physically possible, not who wins.
 *
 *   initial   fresh standby per run: full copy of the corpus
 *   noop      a synced standby per side, nothing changed
 *   mutation  before each round the source gets a fresh 1 % mutation (corpus.mutate); every side
 *             syncs it into its own standby, which matched the source before the round
 *   live      close on source -> file present at its final name on the standby, 50 files/s
 *   bigfile   fresh standby per run: one large binary
 *
 * The live agent under load (small files behind a large one, a burst, 100k-file watch memory) is in
 * watching.ts: warmsync alone, each on its own temp tree, reported against issue 3's targets.
 *
 * Results are compared, not asserted: nothing here fails on a target, it only reports it.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Arrivals } from './arrivals.js';
import { Rng, binarySize, mutate, writeBinary } from './corpus.js';
import { runQuiet } from './proc.js';
import type { LiveRun, LiveSide, RunRecord, Side, Standby } from './side.js';
import type { WarmsyncSide } from './warmsync.js';
import type { BehindRecord, BurstRecord, WatchRecord } from './watching.js';

export interface Target {
  /** warmsync/competitor must be <= this (medians). */
  readonly maxRatio?: number;
  /** or warmsync's own median (worst value, with `worst`) must be <= this, in the comparison's unit. */
  readonly max?: number;
  readonly worst?: boolean;
  readonly text: string;
}

/** How a comparison's values print: time (ms, shown as ms or s), ms (one decimal), MB (MiB), count. */
export type Unit = 'time' | 'ms' | 'MB' | 'count';

export interface Comparison {
  readonly competitor: string;
  /** What is compared: "time" (wall ms of a sync), "p50 latency", "p99 latency". */
  readonly metric: string;
  /** Default: "time" when metric is "time", else "ms". */
  readonly unit?: Unit;
  /** Per round, warmsync then the competitor (null where a run failed). */
  readonly warmsync: number[];
  readonly other: number[];
  readonly target?: Target;
}

export interface RunLog {
  readonly round: number;
  readonly side: string;
  /** The run was a floor's, not a competitor's. */
  readonly floor?: true;
  readonly record: RunRecord | LiveRecord | BehindRecord | BurstRecord | WatchRecord;
}

/** A table of per-round details printed under the main table. */
export interface DetailTable {
  readonly caption: string;
  readonly header: readonly string[];
  readonly rows: string[][];
}

/** A floor in a scenario: a side run in the same rounds, reported as a bound rather than compared as a competitor. */
export interface Floor {
  readonly side: Side;
  /** What it does and why the scenario's job cannot go below it; printed under the floors table. */
  readonly what: string;
}

export interface ScenarioResult {
  readonly id: string;
  readonly title: string;
  readonly comparisons: Comparison[];
  /** The floors run with the sides (their times: the runs marked `floor`). */
  readonly floors: Array<{ readonly name: string; readonly what: string }>;
  readonly runs: RunLog[];
  readonly notes: string[];
  tables?: DetailTable[];
  readonly loadAvgBefore: number[];
  readonly durationMs: number;
  error?: string;
}

export interface LiveRecord {
  readonly latenciesMs: number[];
  readonly p50Ms: number | null;
  readonly p90Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  readonly missing: number;
  readonly watcherPeakRssKiB: number | null;
  readonly receiverPeakRssKiB: number | null;
}

export interface Context {
  readonly src: string;
  /** A new empty directory for one scenario's own trees; the scenario removes it. */
  scratch(name: string): Promise<string>;
  /** Created on demand by the big-file scenario. */
  bigSrc(): Promise<string>;
  /** Where standby dirs go (the rsync daemon's module root). */
  readonly standbys: string;
  readonly seed: string;
  readonly pairs: number;
  readonly liveFiles: number;
  readonly liveRate: number;
  readonly behindMiB: number;
  readonly burstFiles: number;
  /** --burst-copy: the burst is copied in with `cp -a` (a restore) instead of written file by file. */
  readonly burstCopy: boolean;
  readonly watchFiles: number;
  readonly timeoutMs: number;
  readonly warmsync: WarmsyncSide;
  readonly rsyncDaemon: Side;
  readonly rsyncDaemonFsync: Side | null;
  readonly localRsync: Side;
  readonly cp: Side;
  readonly cpSync: Side;
  /** warmsync's live agent on warmsync's persistent standby. */
  warmsyncLive(standby: Standby): LiveSide;
  /** lsyncd on the rsync daemon's persistent standby (delay in s, null for its default), or the reason it is skipped. */
  lsyncdLive(standby: Standby, delay: number | null): LiveSide | string;
  say(line: string): void;
}

/** The directories EXCLUDES names, plus warmsync's state dir: skipped by checkStandby. */
const SKIPPED = new Set(['logs', 'work', 'backup', 'data/tmp', 'data/filestore/_pre', '.warmsync']);

/**
 * Untimed check after every run: each file the source holds (outside the excluded dirs) is on the
 * standby with the same size. Extra files are allowed (warmsync keeps deletions as tombstones).
 */
export function checkStandby(src: string, dst: string): string[] {
  const problems: string[] = [];
  const stack = [''];
  while (stack.length > 0 && problems.length < 10) {
    const rel = stack.pop() as string;
    for (const d of readdirSync(join(src, rel), { withFileTypes: true })) {
      const child = rel === '' ? d.name : `${rel}/${d.name}`;
      if (SKIPPED.has(child)) continue;
      if (d.isDirectory()) stack.push(child);
      else if (d.isFile()) {
        const there = (() => {
          try {
            return lstatSync(join(dst, child));
          } catch {
            return null;
          }
        })();
        if (there === null) problems.push(`${child} missing`);
        else if (there.size !== lstatSync(join(src, child)).size) problems.push(`${child} has ${there.size} bytes, source ${lstatSync(join(src, child)).size}`);
      }
    }
  }
  return problems;
}

/** Flushes dirty pages so that no run pays for the previous run's writeback. */
export async function settle(): Promise<void> {
  await runQuiet('sync', [], 300_000);
}

let labelCounter = 0;
export function label(prefix: string): string {
  return `${prefix}-${++labelCounter}`;
}

export function slug(name: string): string {
  return name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
}

async function timedRun(side: Side, standby: Standby, src: string, round: number, floor: boolean, result: ScenarioResult, say: (l: string) => void): Promise<number> {
  await settle();
  const record = await standby.sync(src);
  if (side.writesNoStandby !== true) {
    const problems = checkStandby(src, standby.dir);
    if (problems.length > 0) throw new Error(`${side.name} left the standby incomplete: ${problems.join('; ')}`);
  }
  result.runs.push({ round, side: side.name, ...(floor ? { floor: true } : {}), record });
  const cpu = record.cpuMs === null ? '' : `, CPU ${record.cpuMs} ms`;
  say(`  round ${round + 1}: ${side.name.padEnd(26)} ${record.wallMs.toFixed(0).padStart(7)} ms${floor ? ' (floor)' : ''}${cpu}`);
  return record.wallMs;
}

export function newResult(id: string, title: string): ScenarioResult {
  return { id, title, comparisons: [], floors: [], runs: [], notes: [], loadAvgBefore: [], durationMs: 0 };
}

/** One round's sides in running order: warmsync, the competitors (each recording into its comparison), the floors. */
interface Entrant {
  readonly side: Side;
  readonly comparison: Comparison | null;
  readonly floor: boolean;
}

function entrants(ctx: Context, result: ScenarioResult, competitors: ReadonlyArray<readonly [Side, Target | undefined]>, floors: readonly Floor[]): Entrant[] {
  const out: Entrant[] = [{ side: ctx.warmsync, comparison: null, floor: false }];
  for (const [side, target] of competitors) {
    const comparison: Comparison = { competitor: side.name, metric: 'time', warmsync: [], other: [], ...(target ? { target } : {}) };
    result.comparisons.push(comparison);
    out.push({ side, comparison, floor: false });
  }
  for (const f of floors) {
    result.floors.push({ name: f.side.name, what: f.what });
    out.push({ side: f.side, comparison: null, floor: true });
  }
  return out;
}

/** Fresh standby per run: open, time one sync, close, delete. */
export async function freshScenario(ctx: Context, id: string, title: string, src: () => Promise<string>, competitors: ReadonlyArray<readonly [Side, Target | undefined]>, floors: readonly Floor[] = []): Promise<ScenarioResult> {
  const result = newResult(id, title);
  const sides = entrants(ctx, result, competitors, floors);
  const source = await src();
  for (let round = 0; round < ctx.pairs; round++) {
    let mine = NaN;
    for (const { side, comparison, floor } of sides) {
      const dir = join(ctx.standbys, label(`${id}-${slug(side.name)}`));
      const standby = await side.open(dir, `state-${label(id)}`);
      try {
        const ms = await timedRun(side, standby, source, round, floor, result, ctx.say);
        if (side === ctx.warmsync) mine = ms;
        else if (comparison !== null) {
          comparison.warmsync.push(mine);
          comparison.other.push(ms);
        }
      } finally {
        await standby.close();
        await rm(dir, { recursive: true, force: true });
      }
    }
  }
  return result;
}

/** Persistent standbys (one per side, synced once, untimed), reused by noop, mutation and live. */
export class Persistent {
  private readonly standbys = new Map<string, Standby>();

  constructor(private readonly ctx: Context) {}

  async get(side: Side): Promise<Standby> {
    const have = this.standbys.get(side.name);
    if (have) return have;
    const dir = join(this.ctx.standbys, `persistent-${slug(side.name)}`);
    const standby = await side.open(dir, `persistent-${slug(side.name)}`);
    this.standbys.set(side.name, standby);
    if (side.writesNoStandby === true) return standby;
    this.ctx.say(`  (untimed) first sync of the ${side.name} standby`);
    await standby.sync(this.ctx.src);
    return standby;
  }

  async closeAll(): Promise<void> {
    for (const s of this.standbys.values()) await s.close().catch(() => undefined);
    this.standbys.clear();
  }
}

/** Re-sync into persistent standbys; `beforeRound` changes the source (or not). */
export async function resyncScenario(ctx: Context, persistent: Persistent, id: string, title: string, competitors: ReadonlyArray<readonly [Side, Target | undefined]>, floors: readonly Floor[], beforeRound: (round: number) => string | null): Promise<ScenarioResult> {
  const result = newResult(id, title);
  const sides = entrants(ctx, result, competitors, floors);
  const standbys = new Map<Side, Standby>();
  for (const { side } of sides) standbys.set(side, await persistent.get(side));
  // One untimed no-op pass first, so every side starts from the same steady state (warm caches).
  for (const { side } of sides) await (standbys.get(side) as Standby).sync(ctx.src);
  for (let round = 0; round < ctx.pairs; round++) {
    const note = beforeRound(round);
    if (note !== null) ctx.say(`  round ${round + 1}: ${note}`);
    let mine = NaN;
    for (const { side, comparison, floor } of sides) {
      const ms = await timedRun(side, standbys.get(side) as Standby, ctx.src, round, floor, result, ctx.say);
      if (side === ctx.warmsync) mine = ms;
      else if (comparison !== null) {
        comparison.warmsync.push(mine);
        comparison.other.push(ms);
      }
    }
  }
  return result;
}

export function mutationBefore(ctx: Context): (round: number) => string {
  return (round) => {
    const m = mutate(ctx.src, `${ctx.seed}:round-${round}`);
    return `mutated the source: +${m.added} binaries (${(m.addedBytes / 1048576).toFixed(1)} MiB), -${m.deleted}, ${m.edited} etc/ edits`;
  };
}

export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pred()) return true;
    await sleep(10);
  }
  return pred();
}

/**
 * Waits until a running replicator's start-up sync is done: writes a sentinel file on the source and
 * waits (bounded) for it to appear on the standby, then lets it settle for a second.
 */
export async function awaitStartupSync(src: string, run: LiveRun, sideName: string, runLabel: string, timeoutMs = 300_000): Promise<void> {
  const sentinel = `etc/bench-sentinel-${runLabel}.txt`;
  mkdirSync(dirname(join(src, sentinel)), { recursive: true });
  writeFileSync(join(src, sentinel), `${runLabel}\n`);
  if (!(await waitUntil(() => existsSync(join(run.standbyDir, sentinel)), timeoutMs))) {
    throw new Error(`${sideName}: the start-up sync did not deliver ${sentinel} within ${Math.round(timeoutMs / 1000)} s`);
  }
  await sleep(1000);
}

/** p50/p90/p99/max of latencies (ms). */
export function latencySummary(latencies: readonly number[]): Pick<LiveRecord, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'maxMs'> {
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50Ms: percentile(sorted, 50), p90Ms: percentile(sorted, 90), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1) ?? null };
}

/**
 * One live run: start the replicator, wait for its start-up sync (a sentinel file), then write
 * `count` new binaries at `rate` per second and record, for each, the time from the writer's close
 * to the file at its final name, full size, on the standby (Arrivals: polled every 1 ms).
 */
export async function liveRun(ctx: Context, side: LiveSide, runLabel: string): Promise<LiveRecord> {
  const run = await side.start(ctx.src);
  let stopped: { watcherPeakRssKiB: number | null; receiverPeakRssKiB: number | null } | null = null;
  try {
    await awaitStartupSync(ctx.src, run, side.name, runLabel);
    const rng = new Rng(`${ctx.seed}:live:${runLabel}`);
    const arrivals = new Arrivals(run.standbyDir);
    try {
      const interval = 1000 / ctx.liveRate;
      const start = performance.now();
      for (let k = 0; k < ctx.liveFiles; k++) {
        const wait = start + k * interval - performance.now();
        if (wait > 0) await sleep(wait);
        const size = binarySize(rng, 256 * 1024);
        const { rel, bytes } = writeBinary(ctx.src, ctx.seed, `live-${runLabel}-${k}`, size);
        arrivals.expect(rel, performance.now(), bytes);
      }
      await arrivals.waitAll(60_000);
    } finally {
      arrivals.stop();
    }
    stopped = await run.stop();
    const latencies = arrivals.latencies();
    return {
      latenciesMs: latencies.map((x) => Math.round(x * 10) / 10), ...latencySummary(latencies),
      missing: arrivals.missing, watcherPeakRssKiB: stopped.watcherPeakRssKiB, receiverPeakRssKiB: stopped.receiverPeakRssKiB,
    };
  } finally {
    if (stopped === null) await run.stop().catch(() => undefined);
  }
}

export async function liveScenario(ctx: Context, persistent: Persistent): Promise<ScenarioResult> {
  const result = newResult('live', `Live latency: close on source -> present on standby, ${ctx.liveFiles} files at ${ctx.liveRate}/s`);
  const mine = ctx.warmsyncLive(await persistent.get(ctx.warmsync));
  const rsyncStandby = await persistent.get(ctx.rsyncDaemon);
  // lsyncd tuned for latency (delay 0) and as most run it (its default delay).
  const theirs: LiveSide[] = [];
  for (const delay of [0, null]) {
    const side = ctx.lsyncdLive(rsyncStandby, delay);
    if (typeof side === 'string') {
      result.notes.push(`lsyncd skipped: ${side}`);
      break;
    }
    theirs.push(side);
  }
  // Without lsyncd, warmsync's figures still go against the targets, beside an empty column.
  const names = theirs.length > 0 ? theirs.map((t) => t.name) : ['lsyncd (skipped)'];
  const byName = new Map(names.map((competitor) => {
    const p50: Comparison = { competitor, metric: 'p50 latency', warmsync: [], other: [], target: { max: 10, text: 'p50 <= 10 ms' } };
    const p99: Comparison = { competitor, metric: 'p99 latency', warmsync: [], other: [], target: { max: 50, text: 'p99 <= 50 ms' } };
    result.comparisons.push(p50, p99);
    return [competitor, { p50, p99 }] as const;
  }));
  const run = async (side: LiveSide, round: number): Promise<LiveRecord> => {
    await settle();
    const rec = await liveRun(ctx, side, `${slug(side.name)}-${round + 1}`);
    result.runs.push({ round, side: side.name, record: rec });
    const f = (x: number | null): string => (x === null ? '-' : x.toFixed(1));
    ctx.say(`  round ${round + 1}: ${side.name.padEnd(22)} p50 ${f(rec.p50Ms)} ms, p99 ${f(rec.p99Ms)} ms, max ${f(rec.maxMs)} ms, missing ${rec.missing}`);
    return rec;
  };
  for (let round = 0; round < ctx.pairs; round++) {
    const own = await run(mine, round);
    for (const name of names) {
      const side = theirs.find((t) => t.name === name);
      const other = side === undefined ? null : await run(side, round);
      const c = byName.get(name) as { p50: Comparison; p99: Comparison };
      c.p50.warmsync.push(own.p50Ms ?? NaN);
      c.p50.other.push(other?.p50Ms ?? NaN);
      c.p99.warmsync.push(own.p99Ms ?? NaN);
      c.p99.other.push(other?.p99Ms ?? NaN);
    }
  }
  return result;
}
