/**
 * The benchmark runner: `npm run bench` (quick), `npm run bench -- --full`, or `npm run bench -- --scale`
 * (the cost-growth table of issue 19, scale.ts: its own corpus per size, warmsync and the rsync daemon only).
 *
 * Builds warmsync, makes a seeded corpus in a temp dir under os.tmpdir(), starts an rsync daemon on
 * 127.0.0.1, runs the scenarios (scenarios.ts) with warmsync and each competitor alternating, and the
 * live agent under load (watching.ts: warmsync alone, against issue 3's targets), and
 * reports medians, min-max and per-pair ratios (warmsync / competitor, lower is better) as JSON in
 * benchmarks/results/<timestamp>.json and a markdown table on stdout and in docs/benchmarks.md
 * (between the bench:begin/end markers; the rest of that file is left alone).
 *
 * Results are compared, not asserted: the exit status says whether the harness ran, not whether a
 * target was met. Every child process is killed and the temp dir removed on exit, even on failure.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stopAll } from '../scripts/lib/cli-process.js';
import { cpSide, ensureLsyncd, localRsyncSide, lsyncdLive, rsyncDaemonSide, rsyncHasFsync, rsyncVersion, RsyncDaemon } from './competitors.js';
import { EXCLUDES, generateCorpus, writeBigBinary, type CorpusStats } from './corpus.js';
import { nodeImportFsFloor, nodeStartFloor, streamCopyFloor, walkFloor } from './floors.js';
import { REPO, gitCommit, tmpFilesystem } from './machine.js';
import { HAVE_TIME, killAll, runQuiet } from './proc.js';
import { parseSizes } from './scale-report.js';
import { runScale, type ScaleOptions } from './scale.js';
import {
  Persistent, freshScenario, liveScenario, mutationBefore, resyncScenario,
  type Comparison, type Context, type Floor, type LiveRecord, type RunLog, type ScenarioResult, type Unit,
} from './scenarios.js';
import type { RunRecord, Standby } from './side.js';
import { behindLargeScenario, burstScenario, watchMemoryScenario } from './watching.js';
import { WAN_LINK, bwlimitScenario, wanScenario, wanTextScenario, type WanSetup } from './wan.js';
import { warmsyncLive, warmsyncSide, type WarmsyncStandby } from './warmsync.js';

const SCENARIOS = ['initial', 'noop', 'mutation', 'live', 'behind-large', 'burst', 'watch-memory', 'bigfile', 'wan', 'wan-text', 'wan-text-synthetic'] as const;
type ScenarioId = (typeof SCENARIOS)[number];

const USAGE = `Usage: npm run bench [-- options]

  --full            100,000 files (~4.2 GB) (default: quick, 20,000 files, ~0.9 GB); a 2 GiB single file in both
  --files N         filestore binaries in the corpus
  --big-mib N       size of the single large file, MiB
  --pairs N         rounds of warmsync + each competitor (default 3)
  --only LIST       comma-separated subset of ${SCENARIOS.join(', ')}
  --live-files N    files written in the live scenario (default 200)
  --live-rate N     files per second in the live scenario (default 50)
  --behind-mib N    the large file in behind-large, MiB (default 256)
  --burst-files N   files in the burst scenario (default 10000)
  --burst-copy      burst: write the files beside the source, then cp -a them in (a restore)
  --watch-files N   files in the watch-memory tree (default 100000)
  --wan-rtt-ms N    wan, wan-text*: the proxy's round trip, ms (default 50)
  --wan-mbit N      wan, wan-text*: the proxy's rate, Mbit/s (default 100)
  --seed S          corpus seed (default "warmsync")
  --timeout-s N     limit for any single timed run (default 1800; 7200 with --scale)
  --scale           instead of the above: cost growth with the tree (issue 19): per size, a corpus of
                    100-2,000-byte files in 256 filestore dirs; initial sync, no-op and 1 % mutation,
                    warmsync and the rsync daemon alternating, then warmsync's live agent idle; CPU per
                    file and peak RSS of both ends of each. 1M files take ~40 min or more on 2 cores
                    and ~15 GB of disk (one size at a time)
  --scale-sizes L   comma-separated file counts (default 10000,100000,1000000)
  --scale-rounds N  rounds per scenario (default 3 below 100,000 files, 1 from there)
  --scale-idle-s N  the live agent's idle period, seconds (default 20)
  --no-build        do not run \`npm run build\` first
  --no-docs         do not rewrite docs/benchmarks.md
  --keep            keep the temp dir (its path is printed)`;

interface Options {
  readonly mode: 'quick' | 'full';
  readonly files: number;
  readonly bigMiB: number;
  readonly pairs: number;
  readonly only: readonly ScenarioId[];
  readonly liveFiles: number;
  readonly liveRate: number;
  readonly behindMiB: number;
  readonly burstFiles: number;
  readonly burstCopy: boolean;
  readonly watchFiles: number;
  readonly wanRttMs: number;
  readonly wanMbit: number;
  readonly seed: string;
  readonly timeoutMs: number;
  readonly build: boolean;
  readonly docs: boolean;
  readonly keep: boolean;
  /** Set with --scale: run the cost-growth table instead of the scenarios. */
  readonly scale: ScaleOptions | null;
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not ${JSON.stringify(value)}`);
  return n;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      full: { type: 'boolean' }, files: { type: 'string' }, 'big-mib': { type: 'string' }, pairs: { type: 'string' }, only: { type: 'string' },
      'live-files': { type: 'string' }, 'live-rate': { type: 'string' }, seed: { type: 'string' }, 'timeout-s': { type: 'string' },
      'behind-mib': { type: 'string' }, 'burst-files': { type: 'string' }, 'burst-copy': { type: 'boolean' }, 'watch-files': { type: 'string' },
      'wan-rtt-ms': { type: 'string' }, 'wan-mbit': { type: 'string' },
      'no-build': { type: 'boolean' }, 'no-docs': { type: 'boolean' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      scale: { type: 'boolean' }, 'scale-sizes': { type: 'string' }, 'scale-rounds': { type: 'string' }, 'scale-idle-s': { type: 'string' },
    },
  });
  if (values.help) return null;
  const scaleOnly = ['scale-sizes', 'scale-rounds', 'scale-idle-s'] as const;
  if (values.scale !== true) {
    for (const name of scaleOnly) if (values[name] !== undefined) throw new Error(`--${name} needs --scale`);
  } else {
    for (const name of ['full', 'files', 'big-mib', 'pairs', 'only', 'live-files', 'live-rate', 'behind-mib', 'burst-files', 'watch-files'] as const) {
      if (values[name] !== undefined) throw new Error(`--${name} does not apply to --scale (it has --scale-sizes, --scale-rounds and --scale-idle-s)`);
    }
  }
  const full = values.full === true;
  const only = values.only === undefined ? [...SCENARIOS] : values.only.split(',').map((s) => s.trim());
  for (const s of only) if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`--only: unknown scenario ${JSON.stringify(s)}; scenarios: ${SCENARIOS.join(', ')}`);
  return {
    mode: full ? 'full' : 'quick',
    // Issue 5's sizes: quick 20k files (about 1 GB), full 100k; one 2 GiB file in both.
    files: positive('files', values.files, full ? 100_000 : 20_000),
    bigMiB: positive('big-mib', values['big-mib'], 2048),
    pairs: positive('pairs', values.pairs, 3),
    only: only as ScenarioId[],
    liveFiles: positive('live-files', values['live-files'], 200),
    liveRate: positive('live-rate', values['live-rate'], 50),
    behindMiB: positive('behind-mib', values['behind-mib'], 256),
    burstFiles: positive('burst-files', values['burst-files'], 10_000),
    burstCopy: values['burst-copy'] === true,
    watchFiles: positive('watch-files', values['watch-files'], 100_000),
    wanRttMs: positive('wan-rtt-ms', values['wan-rtt-ms'], 2 * WAN_LINK.latencyMs),
    wanMbit: positive('wan-mbit', values['wan-mbit'], (WAN_LINK.bytesPerSec * 8) / 1e6),
    seed: values.seed ?? 'warmsync',
    timeoutMs: positive('timeout-s', values['timeout-s'], 1800) * 1000,
    build: values['no-build'] !== true,
    docs: values['no-docs'] !== true,
    keep: values.keep === true,
    scale: values.scale !== true ? null : {
      sizes: parseSizes(values['scale-sizes'] ?? '10000,100000,1000000'),
      rounds: values['scale-rounds'] === undefined ? null : positive('scale-rounds', values['scale-rounds'], 1),
      idleS: positive('scale-idle-s', values['scale-idle-s'], 20),
      seed: values.seed ?? 'warmsync',
      timeoutMs: positive('timeout-s', values['timeout-s'], 7200) * 1000,
      docs: values['no-docs'] !== true,
    },
  };
}

/** `npm run build` before a run (--no-build skips it); false, said, when it fails. */
async function built(say: (line: string) => void): Promise<boolean> {
  say('building (npm run build)...');
  const b = await runQuiet('npm', ['run', 'build', '--silent'], 600_000);
  if (b.code !== 0) say(`bench: npm run build failed:\n${b.stdout}${b.stderr}`);
  return b.code === 0;
}

/**
 * The cleanup of a run, done once, on the way out or at SIGINT/SIGTERM: `release` (standbys, the
 * daemon), then every child process, then the temp dir unless --keep.
 */
function cleanupOnce(root: string, keep: boolean, say: (line: string) => void, release: () => Promise<void>): () => Promise<void> {
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await release();
    await killAll();
    stopAll();
    if (keep) say(`kept ${root}`);
    else await rm(root, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    say(`${signal}: stopping every child process and removing ${root}`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return cleanup;
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function spread(xs: readonly number[]): { med: number; min: number; max: number } {
  const f = xs.filter(Number.isFinite);
  return { med: median(f), min: f.length ? Math.min(...f) : NaN, max: f.length ? Math.max(...f) : NaN };
}

function fmtValue(x: number, unit: Unit): string {
  if (!Number.isFinite(x)) return '-';
  if (unit === 'ms') return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`;
  if (unit === 'MB') return `${Math.round(x)} MB`;
  if (unit === 'count') return x.toLocaleString('en');
  return x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`;
}

const unitOf = (c: Comparison): Unit => c.unit ?? (c.metric === 'time' ? 'time' : 'ms');

function fmtSpread(xs: readonly number[], unit: Unit): string {
  const s = spread(xs);
  if (!Number.isFinite(s.med)) return '-';
  return s.min === s.max ? fmtValue(s.med, unit) : `${fmtValue(s.med, unit)} (${fmtValue(s.min, unit)}–${fmtValue(s.max, unit)})`;
}

/** a[i] / b[i] per round, where both ran. */
function pairRatios(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) out.push((a[i] as number) / (b[i] as number));
  return out.filter(Number.isFinite);
}

function ratios(c: Comparison): number[] {
  return pairRatios(c.warmsync, c.other);
}

/** "median× (pair, pair, ...)", or "-" when no pair ran. */
function fmtRatios(r: readonly number[]): string {
  return r.length ? `${median(r).toFixed(2)}× (${r.map((x) => x.toFixed(2)).join(', ')})` : '-';
}

function verdict(c: Comparison): string {
  const t = c.target;
  if (t === undefined) return '';
  if (t.max !== undefined) {
    const m = t.worst ? (c.warmsync.some((x) => !Number.isFinite(x)) ? NaN : Math.max(...c.warmsync)) : median(c.warmsync);
    return Number.isFinite(m) ? (m <= t.max ? 'met' : 'missed') : '-';
  }
  if (t.maxRatio !== undefined) {
    const r = median(ratios(c));
    return Number.isFinite(r) ? (r <= t.maxRatio ? 'met' : 'missed') : '-';
  }
  return '';
}

const mb = (kib: number | null | undefined): string => (kib === null || kib === undefined ? '-' : `${Math.round(kib / 1024)} MB`);

function maxOf(xs: ReadonlyArray<number | null | undefined>): number | null {
  const f = xs.filter((x): x is number => typeof x === 'number');
  return f.length ? Math.max(...f) : null;
}

// ---------------------------------------------------------------------------------------------
// The report

interface Machine {
  readonly date: string;
  readonly nproc: number;
  readonly cpu: string;
  readonly ramGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly rsync: string | null;
  readonly lsyncd: string | null;
  readonly tmpFs: string;
  readonly warmsyncCommit: string;
  readonly peakRssSource: string;
}

interface Report {
  readonly options: Options;
  readonly machine: Machine;
  readonly corpus: CorpusStats & { readonly generateMs: number };
  readonly loadAvgStart: number[];
  loadAvgEnd: number[];
  readonly setupNotes: string[];
  readonly scenarios: ScenarioResult[];
  durationMs: number;
}

const la = (xs: readonly number[]): string => xs.map((x) => x.toFixed(2)).join(', ');

function isLive(r: RunLog['record']): r is LiveRecord {
  return 'latenciesMs' in r;
}

/** A timed one-shot sync (agent --once, rsync, cp), as opposed to a live or load record. */
function isOnce(r: RunLog['record']): r is RunRecord {
  return !('latenciesMs' in r) && !('kind' in r);
}

function markdown(report: Report): string {
  const { options: o, machine: m, corpus: c } = report;
  const out: string[] = [];
  out.push(`Run ${m.date}, ${o.mode} mode (\`npm run bench${o.mode === 'full' ? ' -- --full' : ''}\`), ${o.pairs} pairs per scenario, seed "${o.seed}", in ${(report.durationMs / 60_000).toFixed(1)} min.`);
  out.push('');
  out.push(`Corpus: ${c.files.toLocaleString('en')} files, ${(c.bytes / 1048576).toFixed(0)} MiB synced (${o.files.toLocaleString('en')} filestore binaries, median ~20 KiB, plus etc/); `
    + `${c.excludedFiles.toLocaleString('en')} files (${(c.excludedBytes / 1048576).toFixed(0)} MiB) under the excluded dirs. Single large file: ${o.bigMiB} MiB.`);
  out.push('');
  out.push('| machine | |');
  out.push('| --- | --- |');
  out.push(`| CPU | ${m.nproc} × ${m.cpu} |`);
  out.push(`| RAM | ${m.ramGiB.toFixed(1)} GiB |`);
  out.push(`| kernel, temp dir | ${m.kernel}; ${m.tmpFs} |`);
  out.push(`| Node.js | ${m.node} |`);
  out.push(`| rsync | ${m.rsync ?? 'missing'} |`);
  out.push(`| lsyncd | ${m.lsyncd ?? 'not available'} |`);
  out.push(`| warmsync | ${m.warmsyncCommit} |`);
  out.push(`| load average (1, 5, 15 min) | start ${la(report.loadAvgStart)}; end ${la(report.loadAvgEnd)} |`);
  out.push('');
  for (const note of report.setupNotes) out.push(`- ${note}`);
  if (report.setupNotes.length) out.push('');

  out.push('Times are wall clock, process start to exit, medians with (min–max) over the pairs. Ratio = warmsync / competitor per pair, '
    + 'median then each pair: below 1 means warmsync is faster. Targets are issue 5\'s (stated there for 20k and 100k files); '
    + 'rows without a target are for reference; the floors (bounds, not competitors) have their own table below. '
    + 'The live agent under load (behind a large file, burst, watch memory) runs warmsync alone on trees of its own, against issue 3\'s targets.');
  out.push('');
  out.push('| scenario | competitor | warmsync | competitor | ratio (per pair) | target | |');
  out.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const s of report.scenarios) {
    if (s.error !== undefined && s.comparisons.every((cmp) => cmp.warmsync.length === 0)) {
      out.push(`| ${s.title} | | failed: ${s.error.split('\n')[0]?.slice(0, 200)} | | | | |`);
      continue;
    }
    for (const cmp of s.comparisons) {
      const ratio = fmtRatios(ratios(cmp));
      const metric = cmp.metric === 'time' ? s.title : `${s.title}: ${cmp.metric}`;
      const target = cmp.target?.text ?? '';
      out.push(`| ${metric} | ${cmp.competitor} | ${fmtSpread(cmp.warmsync, unitOf(cmp))} | ${fmtSpread(cmp.other, unitOf(cmp))} | ${ratio} | ${target} | ${verdict(cmp)} |`);
    }
    if (s.error !== undefined) out.push(`| ${s.title} | | incomplete: ${s.error.split('\n')[0]?.slice(0, 200)} | | | | |`);
  }
  out.push('');
  out.push(...floorsTable(report));

  // Live details
  const live = report.scenarios.find((s) => s.id === 'live');
  if (live && live.runs.length) {
    out.push('Live runs (latency from the writer\'s close to the file at its final name on the standby):');
    out.push('');
    out.push('| round | side | p50 | p90 | p99 | max | missing | watcher peak RSS | receiver peak RSS |');
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const run of live.runs) {
      if (!isLive(run.record)) continue;
      const r = run.record;
      const f = (x: number | null): string => (x === null ? '-' : `${x.toFixed(1)} ms`);
      out.push(`| ${run.round + 1} | ${run.side} | ${f(r.p50Ms)} | ${f(r.p90Ms)} | ${f(r.p99Ms)} | ${f(r.maxMs)} | ${r.missing} | ${mb(r.watcherPeakRssKiB)} | ${mb(r.receiverPeakRssKiB)} |`);
    }
    out.push('');
  }

  // Per-round details of the load scenarios
  for (const s of report.scenarios) {
    for (const t of s.tables ?? []) {
      if (t.rows.length === 0) continue;
      out.push(t.caption);
      out.push('');
      out.push(`| ${t.header.join(' | ')} |`);
      out.push(`| ${t.header.map(() => '---').join(' | ')} |`);
      for (const row of t.rows) out.push(`| ${row.join(' | ')} |`);
      out.push('');
    }
  }

  // Memory
  out.push(`Peak RSS (max over the scenario's runs; ${m.peakRssSource}):`);
  out.push('');
  out.push('| scenario | warmsync agent | warmsync receiver | competitors (client process) |');
  out.push('| --- | --- | --- | --- |');
  for (const s of report.scenarios) {
    const once = s.runs.filter((r) => isOnce(r.record));
    if (once.length === 0) continue;
    const mine = once.filter((r) => r.side === 'warmsync').map((r) => r.record as RunRecord);
    const others = [...new Set(once.filter((r) => r.side !== 'warmsync' && r.floor !== true).map((r) => r.side))]
      .map((side) => `${side} ${mb(maxOf(once.filter((r) => r.side === side).map((r) => (r.record as RunRecord).peakRssKiB)))}`);
    out.push(`| ${s.title} | ${mb(maxOf(mine.map((r) => r.peakRssKiB)))} | ${mb(maxOf(mine.map((r) => r.receiverPeakRssKiB)))} | ${others.join('; ')} |`);
  }
  out.push('');

  // Where warmsync's time goes
  out.push('Where warmsync\'s time goes (medians; start-up = wall − the agent\'s --json elapsedMs; scan+plan = to the agent\'s "scanned" log line, '
    + 'which comes after the walk, hashing, connecting, fetching the manifest and planning; transfer = from that line to the end):');
  out.push('');
  out.push('| scenario | wall | start-up | scan+plan | transfer+apply | hashed | files sent | MiB sent |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of report.scenarios) {
    const mine = s.runs.filter((r) => r.side === 'warmsync' && isOnce(r.record)).map((r) => r.record as RunRecord);
    if (mine.length === 0) continue;
    const ph = mine.map((r) => r.phases).filter((p) => p !== undefined);
    const num = (k: string): number => median(mine.map((r) => Number(r.summary?.[k])));
    out.push(`| ${s.title} | ${fmtValue(median(mine.map((r) => r.wallMs)), 'time')} | ${fmtValue(median(ph.map((p) => p.startupMs)), 'time')} | `
      + `${fmtValue(median(ph.map((p) => p.scanPlanMs)), 'time')} | ${fmtValue(median(ph.map((p) => p.transferMs)), 'time')} | `
      + `${num('hashed')} | ${num('filesSent')} | ${(num('bytesSent') / 1048576).toFixed(1)} |`);
  }
  out.push('');
  const notes = report.scenarios.flatMap((s) => s.notes.map((n) => `${s.title}: ${n}`));
  for (const n of notes) out.push(`- ${n}`);
  if (notes.length) out.push('');
  out.push(`Load average before each scenario: ${report.scenarios.map((s) => `${s.id} ${la(s.loadAvgBefore)}`).join('; ')}.`);
  return out.join('\n');
}

/** Per round, the wall (or CPU) time of `side`'s one-shot run in `s` (NaN for a round it did not finish or where CPU was not measured). */
function roundTimes(s: ScenarioResult, side: string, rounds: number, of: 'wallMs' | 'cpuMs' = 'wallMs'): number[] {
  const out = new Array<number>(rounds).fill(NaN);
  for (const r of s.runs) if (r.side === side && isOnce(r.record)) out[r.round] = r.record[of] ?? NaN;
  return out;
}

/**
 * The floors beside the competitors with a ratio target: how far warmsync and the competitor are
 * above each floor, and floor / competitor, the lowest warmsync / competitor ratio that anything
 * doing at least the floor's work could reach in that round.
 */
function floorsTable(report: Report): string[] {
  const rounds = report.options.pairs;
  const withFloors = report.scenarios.filter((s) => s.floors.length > 0 && s.runs.some((r) => r.floor === true));
  if (withFloors.length === 0) return [];
  const out: string[] = [];
  out.push('Floors, run in the same rounds right after the competitors: bounds a scenario\'s job cannot beat on this machine, not competitors. '
    + 'Ratios per round, medians then each round: warmsync / floor and competitor / floor say how far each is above the floor; '
    + 'floor / competitor is the lowest warmsync / competitor ratio that anything doing at least the floor\'s work could reach, beside the target. '
    + 'Floor CPU is the floor\'s user + system time: well below its wall time, the floor waited for the disk or for a busy CPU.');
  out.push('');
  out.push('| scenario | floor | floor time | floor CPU | warmsync / floor | competitor | competitor / floor | floor / competitor = best possible | target |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const s of withFloors) {
    const mine = roundTimes(s, 'warmsync', rounds);
    const targeted = s.comparisons.filter((c) => c.metric === 'time' && c.target?.maxRatio !== undefined);
    for (const f of s.floors) {
      const floor = roundTimes(s, f.name, rounds);
      const mineOverFloor = pairRatios(mine, floor);
      const head = `| ${s.title} | ${f.name} | ${fmtSpread(floor, 'time')} | ${fmtSpread(roundTimes(s, f.name, rounds, 'cpuMs'), 'time')} | ${fmtRatios(mineOverFloor)}`;
      if (targeted.length === 0) out.push(`${head} | - | - | - | |`);
      for (const c of targeted) {
        const theirs = roundTimes(s, c.competitor, rounds);
        const best = pairRatios(floor, theirs);
        const maxRatio = c.target?.maxRatio as number;
        // Every floor here bounds warmsync's own job: warmsync below it means this run's floor read high (load, writeback).
        const reach = best.length === 0 ? ''
          : median(mineOverFloor) < 1 ? ': no verdict, warmsync ran below this floor'
            : median(best) <= maxRatio ? ': not ruled out' : ': out of reach';
        out.push(`${head} | ${c.competitor} | ${fmtRatios(pairRatios(theirs, floor))} | ${fmtRatios(best)} | ${c.target?.text ?? ''}${reach} |`);
      }
    }
  }
  out.push('');
  const described = new Map(withFloors.flatMap((s) => s.floors.map((f) => [f.name, f.what] as const)));
  for (const [name, what] of described) out.push(`- ${name}: ${what}`);
  out.push('');
  return out;
}

const BEGIN = '<!-- bench:begin: written by benchmarks/run.ts from its latest run; edit outside these markers -->';
const END = '<!-- bench:end -->';

const DOC_HEAD = `# Benchmarks

warmsync side by side with its competitors, each measured in the same run on the same machine:
rsync through an rsync daemon on 127.0.0.1 (the fair wire comparison; plain, and with \`--fsync\`
for warmsync's durability), local \`rsync -a\` and \`cp -a\` for reference, \`cp -a\` + \`sync\` for the
single large file, and lsyncd (delay 0, and its default delay, pushing to the same rsync daemon) for live latency. Issue 5
holds the targets. Ratios are warmsync / competitor: below 1 means warmsync is faster. Floors, measured in
the same rounds, bound what any tool could reach on this machine: a durable copy (\`cp -a\` + \`sync -f\`)
for the initial sync, a C walk that lstats every source entry (\`find\`) for the no-op and the 1 %
mutation, and Node's own start-up (the least any run of warmsync's agent takes) for both.

## How to rerun

\`\`\`
npm run bench                  # quick: 20,000 binaries (~0.9 GB), 2 GiB single file
npm run bench -- --full        # 100,000 binaries (~4.2 GB), 2 GiB single file
npm run bench -- --files 2000 --pairs 5 --only initial,noop
npm run bench -- --only behind-large,burst,watch-memory   # the live agent under load, warmsync alone
npm run bench -- --only wan     # initial sync through a 100 Mbit/s, 50 ms proxy; --bwlimit 4M on loopback
npm run bench -- --only wan-text   # 48 MB of real text (node_modules) over that link: --compress zstd vs rsync -az
npm run bench -- --only wan-text-synthetic   # the same with 48 MB of generated etc/-like text
npm run bench -- --only burst --burst-copy --burst-files 60000   # a restore (cp -a) under a live agent
TMPDIR=/mnt/x npm run bench    # trees, standbys and rsync's target on another file system
npm run bench -- --help
\`\`\`

It builds warmsync, generates the seeded corpus (\`benchmarks/corpus.ts\`) in a temp dir under
\`os.tmpdir()\`, starts an rsync daemon on a free port, installs lsyncd with apt-get when it is missing
(and says so; the live comparison is skipped if that fails), runs every scenario with warmsync and
the competitors alternating (warmsync, C1, C2, ..., then again: at least 3 rounds), checks each
standby after each run (untimed), and writes \`benchmarks/results/<timestamp>.json\` (every run,
including warmsync's phase split and peak RSS) and the section below. Run nothing else meanwhile:
the ratios are only as good as the machine is quiet. \`sync\` runs (untimed) before every timed run.

Both sides use the same excludes file (\`/logs/ /work/ /backup/ /data/tmp/ /data/filestore/_pre/\`),
\`rsync -a --delete\` on the rsync side, \`agent --once --json\` against a running receiver on the
warmsync side (fresh receiver, standby and agent cache per run where the scenario says "fresh").

Three scenarios run the live agent under load, warmsync alone, against issue 3's targets
(\`benchmarks/watching.ts\`), each on trees of its own in a scratch dir it removes, failed or not:
\`behind-large\` (50 files of 1-20 KiB at 50/s written just after a 256 MiB file starts, \`--behind-mib\`),
\`burst\` (10,000 files of 1-20 KiB as fast as possible into 10 new dirs, \`--burst-files\`, or
copied in with \`cp -a\` with \`--burst-copy\`; content
checked byte for byte) and \`watch-memory\` (a 100,000-file tree in 256 dirs, \`--watch-files\`: synced
with \`agent --once\`, then the live agent's RSS once idle and its inotify watches).

`;

async function writeDocs(section: string): Promise<string> {
  const path = join(REPO, 'docs/benchmarks.md');
  const block = `${BEGIN}\n\n## Latest results\n\n${section}\n\n${END}`;
  const existing = existsSync(path) ? await readFile(path, 'utf8') : null;
  let text: string;
  if (existing !== null && existing.includes(BEGIN) && existing.includes(END)) {
    text = existing.slice(0, existing.indexOf(BEGIN)) + block + existing.slice(existing.indexOf(END) + END.length);
  } else {
    text = `${DOC_HEAD}${block}\n`;
  }
  await writeFile(path, text);
  return path;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let options: Options | null;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n${USAGE}\n`);
    return 2;
  }
  if (options === null) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const o = options;
  const say = (line: string): void => void process.stderr.write(line + '\n');
  if (o.scale !== null) return scaleMain(o, o.scale, say);
  const started = Date.now();
  const loadAvgStart = os.loadavg();
  say(`warmsync benchmarks, ${o.mode} mode: ${o.files} binaries, ${o.pairs} pairs, scenarios ${o.only.join(', ')}; load average ${la(loadAvgStart)}`);
  if (o.pairs < 3) say(`note: --pairs ${o.pairs} is below the 3 pairs the results need to mean much`);
  if (loadAvgStart[0] !== undefined && loadAvgStart[0] > os.availableParallelism()) say(`note: the 1-min load average (${loadAvgStart[0].toFixed(2)}) exceeds the ${os.availableParallelism()} CPUs: expect noise`);

  if (o.build && !(await built(say))) return 1;

  const root = await mkdtemp(join(os.tmpdir(), 'warmsync-bench-'));
  let daemon: RsyncDaemon | null = null;
  let persistent: Persistent | null = null;
  const cleanup = cleanupOnce(root, o.keep, say, async () => {
    await persistent?.closeAll().catch(() => undefined);
    await daemon?.stop().catch(() => undefined);
  });

  try {
    const src = join(root, 'src');
    const standbys = join(root, 'standbys');
    const work = join(root, 'work');
    await mkdir(src);
    await mkdir(standbys);
    await mkdir(work);
    const tokenFile = join(work, 'token');
    await writeFile(tokenFile, 'bench-token-0123456789abcdef0123456789\n', { mode: 0o600 });
    const excludesFile = join(work, 'excludes.txt');
    await writeFile(excludesFile, EXCLUDES);

    say(`generating the corpus in ${src}...`);
    const g0 = Date.now();
    const corpus = generateCorpus(src, o.seed, o.files);
    const generateMs = Date.now() - g0;
    say(`  ${corpus.files} files, ${(corpus.bytes / 1048576).toFixed(0)} MiB (+${corpus.excludedFiles} excluded files) in ${(generateMs / 1000).toFixed(1)} s`);

    const setupNotes: string[] = [];
    const rsync = await rsyncVersion();
    if (rsync === null) throw new Error('rsync is not installed (apt-get install -y rsync)');
    const hasFsync = await rsyncHasFsync();
    if (!hasFsync) setupNotes.push(`${rsync} has no --fsync option: the "rsync daemon --fsync" competitor is left out`);
    daemon = await RsyncDaemon.start(work, standbys);
    say(`rsync daemon on 127.0.0.1:${daemon.port} (TCP_NODELAY)`);

    let lsyncdVersion: string | null = null;
    let lsyncdWhy = 'not requested';
    if (o.only.includes('live')) {
      const l = await ensureLsyncd(say);
      lsyncdVersion = l.version;
      if (l.installed) setupNotes.push(`lsyncd was missing and was installed with apt-get by this run (${l.version ?? 'failed'}).`);
      if (l.version === null) {
        lsyncdWhy = l.why ?? 'unavailable';
        say(`lsyncd unavailable, the live comparison runs warmsync alone: ${lsyncdWhy}`);
        setupNotes.push(`lsyncd unavailable: ${lsyncdWhy}`);
      }
    }

    let python: string | null = null;
    if (o.only.includes('bigfile')) {
      python = (await runQuiet('python3', ['--version'], 10_000).catch(() => null))?.code === 0 ? 'python3' : null;
      if (python === null) setupNotes.push('python3 not found: the big file\'s loopback stream floor is left out');
    }

    const machine: Machine = {
      date: new Date().toISOString(), nproc: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown',
      ramGiB: os.totalmem() / 2 ** 30, kernel: `Linux ${os.release()}`, node: process.version, rsync, lsyncd: lsyncdVersion,
      tmpFs: tmpFilesystem(os.tmpdir()), warmsyncCommit: gitCommit(),
      peakRssSource: HAVE_TIME ? 'agent and clients from /usr/bin/time -v, receiver and watchers from /proc/PID/status VmHWM' : '/proc/PID/status VmHWM polled every 20 ms',
    };

    const tool = { excludesFile, timeoutMs: o.timeoutMs };
    const wsConfig = { tokenFile, excludesFile, stateRoot: join(work, 'agent-state'), timeoutMs: o.timeoutMs };
    const ws = warmsyncSide(wsConfig);
    const rsyncd = rsyncDaemonSide(daemon, tool, false);
    const liveDaemon = daemon;
    let bigSrc: string | null = null;
    const ctx: Context = {
      src, standbys, seed: o.seed, pairs: o.pairs, liveFiles: o.liveFiles, liveRate: o.liveRate,
      behindMiB: o.behindMiB, burstFiles: o.burstFiles, burstCopy: o.burstCopy, watchFiles: o.watchFiles, timeoutMs: o.timeoutMs,
      scratch: (name: string) => mkdtemp(join(root, `${name}-`)),
      async bigSrc() {
        if (bigSrc === null) {
          const dir = join(root, 'big-src');
          await mkdir(dir);
          say(`writing a ${o.bigMiB} MiB binary...`);
          writeBigBinary(dir, o.seed, o.bigMiB * 1048576);
          bigSrc = dir;
        }
        return bigSrc;
      },
      warmsync: ws, rsyncDaemon: rsyncd, rsyncDaemonFsync: hasFsync ? rsyncDaemonSide(daemon, tool, true) : null,
      localRsync: localRsyncSide(tool), cp: cpSide(tool, 'none'), cpSync: cpSide(tool, 'fsync each'),
      warmsyncLive: (standby: Standby) => warmsyncLive({ tokenFile, excludesFile, stateRoot: join(work, 'agent-state'), timeoutMs: o.timeoutMs }, standby as WarmsyncStandby),
      lsyncdLive: (standby: Standby, delay: number | null) => (lsyncdVersion === null ? lsyncdWhy : lsyncdLive(liveDaemon, standby.dir, { ...tool, workDir: work, delay })),
      say,
    };
    persistent = new Persistent(ctx);
    const p = persistent;
    const fsyncSide = ctx.rsyncDaemonFsync;
    const durableCopyFloor: Floor = {
      side: cpSide(tool, 'syncfs'),
      what: '`cp -a SRC/. DST/`, then one `sync -f DST` (syncfs): the same bytes made durable on the same disk in the cheapest way, with no '
        + 'network, protocol, hashing, per-file fsync or manifest (it cannot exclude, so it also copies the excluded files). syncfs also writes back '
        + 'what other processes left dirty on that file system: on a busy machine this floor reads high.',
    };
    const walk: Floor = {
      side: walkFloor(tool),
      what: '`find SRC` with the excluded dirs pruned, testing each entry\'s size (`-size -0c`, never true: nothing is printed): one lstat per entry, in C, '
        + 'of the source only. Any resync that finds changes by stat\'ing every source file does at least this (rsync\'s sender does it, '
        + 'its receiver the same again on the standby).',
    };
    const streamSide = streamCopyFloor(tool, python);
    const streamFloor: Floor[] = streamSide === null ? [] : [{
      side: streamSide,
      what: 'the file sent through a loopback TCP socket with `sendfile` (no copy through user space) by a forked process, received into one '
        + 'reused 1 MiB buffer, written and fsynced once (python3; 1 MiB per call, so the time is the kernel\'s): the least any sync that '
        + 'carries the bytes over a network connection to a durable file does, without hashing, protocol or chunking.',
    }];
    const nodeFloors: Floor[] = [
      { side: nodeStartFloor(tool), what: 'the node that runs warmsync\'s agent, starting and exiting: the least any `agent --once` takes.' },
      { side: nodeImportFsFloor(tool), what: 'that node running an ES module file that imports only node:fs: start-up through the module loader, as bin/warmsync.js starts.' },
    ];

    const report: Report = {
      options: o, machine, corpus: { ...corpus, generateMs }, loadAvgStart, loadAvgEnd: [], setupNotes, scenarios: [], durationMs: 0,
    };
    const wanSetup = (): WanSetup => ({ warmsync: wsConfig, tool, daemon: daemon as RsyncDaemon, link: { latencyMs: o.wanRttMs / 2, bytesPerSec: (o.wanMbit * 1e6) / 8 } });
    const plans: Record<ScenarioId, { title: string; run: () => Promise<ScenarioResult> }> = {
      initial: {
        title: 'Initial sync',
        run: () => freshScenario(ctx, 'initial', 'Initial sync', async () => src, [
          [rsyncd, { maxRatio: 1.0, text: '<= 1.0×' }],
          ...(fsyncSide ? [[fsyncSide, { maxRatio: 0.5, text: '<= 0.5×' }] as const] : []),
          [ctx.localRsync, undefined], [ctx.cp, undefined],
        ], [durableCopyFloor]),
      },
      noop: {
        title: 'No-op resync',
        run: () => resyncScenario(ctx, p, 'noop', 'No-op resync', [
          [rsyncd, { maxRatio: 0.5, text: '<= 0.5× (at 100k files)' }], ...(fsyncSide ? [[fsyncSide, undefined] as const] : []), [ctx.localRsync, undefined],
        ], [walk, ...nodeFloors], () => null),
      },
      mutation: {
        title: 'Resync after 1 % mutation',
        run: () => resyncScenario(ctx, p, 'mutation', 'Resync after 1 % mutation', [
          [rsyncd, { maxRatio: 0.5, text: '<= 0.5×' }], ...(fsyncSide ? [[fsyncSide, undefined] as const] : []), [ctx.localRsync, undefined],
        ], [walk, ...nodeFloors], mutationBefore(ctx)),
      },
      live: { title: 'Live latency', run: () => liveScenario(ctx, p) },
      'behind-large': { title: 'Behind a large file', run: () => behindLargeScenario(ctx) },
      burst: { title: 'Burst', run: () => burstScenario(ctx) },
      'watch-memory': { title: 'Watch memory', run: () => watchMemoryScenario(ctx) },
      bigfile: {
        title: `Single ${o.bigMiB} MiB file`,
        run: () => freshScenario(ctx, 'bigfile', `Single ${o.bigMiB} MiB file`, () => ctx.bigSrc(), [
          [ctx.cpSync, { maxRatio: 1.25, text: '>= 0.8× throughput (<= 1.25× time)' }],
          ...(fsyncSide ? [[fsyncSide, undefined] as const] : []), [rsyncd, undefined],
        ], streamFloor),
      },
      wan: {
        title: 'WAN link and --bwlimit',
        run: async () => {
          const setup = wanSetup();
          const wan = await wanScenario(ctx, setup);
          const bw = await bwlimitScenario(ctx, setup);
          return { ...wan, runs: [...wan.runs, ...bw.runs], notes: [...wan.notes, ...bw.notes], tables: [...(wan.tables ?? []), ...(bw.tables ?? [])] };
        },
      },
      'wan-text': { title: 'WAN link, real text', run: () => wanTextScenario(ctx, wanSetup(), 'real') },
      'wan-text-synthetic': { title: 'WAN link, synthetic text', run: () => wanTextScenario(ctx, wanSetup(), 'synthetic') },
    };

    for (const id of SCENARIOS) {
      if (!o.only.includes(id)) continue;
      const loadAvgBefore = os.loadavg();
      say(`\n== ${plans[id].title} (load average ${la(loadAvgBefore)})`);
      const t0 = Date.now();
      let result: ScenarioResult;
      try {
        result = await plans[id].run();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        say(`  ${id} failed: ${message}`);
        result = { id, title: plans[id].title, comparisons: [], floors: [], runs: [], notes: [], loadAvgBefore, durationMs: 0, error: message };
      }
      report.scenarios.push({ ...result, loadAvgBefore, durationMs: Date.now() - t0 });
    }

    report.loadAvgEnd = os.loadavg();
    report.durationMs = Date.now() - started;
    const table = markdown(report);
    const resultsDir = join(REPO, 'benchmarks/results');
    await mkdir(resultsDir, { recursive: true });
    const jsonPath = join(resultsDir, `${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(jsonPath, JSON.stringify(report, null, 2) + '\n');
    process.stdout.write(table + '\n');
    say(`\nwrote ${jsonPath}`);
    if (o.docs) say(`wrote ${await writeDocs(table)}`);
    return report.scenarios.some((s) => s.error !== undefined) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

/** `--scale`: build, start the rsync daemon, run scale.ts, write the JSON, print the table; cleans up as main does. */
async function scaleMain(o: Options, scale: ScaleOptions, say: (line: string) => void): Promise<number> {
  const started = Date.now();
  if (o.build && !(await built(say))) return 1;
  const root = await mkdtemp(join(os.tmpdir(), 'warmsync-bench-scale-'));
  let daemon: RsyncDaemon | null = null;
  const cleanup = cleanupOnce(root, o.keep, say, async () => {
    await daemon?.stop().catch(() => undefined);
  });
  try {
    const work = join(root, 'work');
    const standbys = join(root, 'standbys');
    await mkdir(work);
    const tokenFile = join(work, 'token');
    await writeFile(tokenFile, 'bench-token-0123456789abcdef0123456789\n', { mode: 0o600 });
    const excludesFile = join(work, 'excludes.txt');
    await writeFile(excludesFile, EXCLUDES);
    if ((await rsyncVersion()) === null) throw new Error('rsync is not installed (apt-get install -y rsync)');
    if (!HAVE_TIME) throw new Error('/usr/bin/time is missing (apt-get install -y time): --scale reads the CPU of the agent and of the rsync client from it');
    daemon = await RsyncDaemon.start(work, standbys);
    say(`rsync daemon on 127.0.0.1:${daemon.port} (TCP_NODELAY); working in ${root}`);
    const { markdown: table, ok, results } = await runScale(scale, { root, daemon, standbys, tokenFile, excludesFile, say });
    const resultsDir = join(REPO, 'benchmarks/results');
    await mkdir(resultsDir, { recursive: true });
    const jsonPath = join(resultsDir, `scale-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(jsonPath, JSON.stringify({ options: scale, results }, null, 2) + '\n');
    process.stdout.write(table + '\n');
    say(`\nwrote ${jsonPath}`);
    return ok ? 0 : 1;
  } catch (err) {
    say(`bench --scale: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
