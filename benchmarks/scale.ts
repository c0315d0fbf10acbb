/**
 * `npm run bench -- --scale` (issue 19): how the cost of a sync grows with the tree. For each size
 * (default 10k, 100k and 1M files) it generates the small-file corpus once (100-2,000 bytes, 256
 * filestore dirs; corpus.ts, `small`), then runs, warmsync and the rsync daemon alternating:
 *
 *   initial   a fresh standby per round; the last round's standbys stay for the next two
 *   noop      nothing changed
 *   mutation  a fresh 1 % mutation before each round
 *   idle      warmsync's live agent alone on its standby: spawn -> idle (its first pass), then an
 *             idle period (--scale-idle-s) with its CPU and peak RSS, VmHWM reset at its start
 *
 * and measures both ends of each: the agent and the rsync client through /usr/bin/time -v (CPU,
 * peak RSS); the receiver through /proc/PID/stat and VmHWM (reset before each run); the rsync
 * daemon through the CPU of the children it reaped (cutime + cstime) and the VmHWM of its
 * per-connection processes, polled every 20 ms and summed. Each size's trees are deleted before the
 * next size, so the disk holds one size at a time.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { rsyncDaemonSide, rsyncVersion, type RsyncDaemon } from './competitors.js';
import { generateCorpus, mutate } from './corpus.js';
import { REPO, gitCommit, tmpFilesystem } from './machine.js';
import {
  TICKS_PER_S, cpuTicks, descendants, memoryKiB, reapedChildCpuTicks, resetPeakRss, vmHwmKiB,
} from './proc.js';
import {
  fmtCount, fmtMB, fmtTime, scaleTable, spliceSection, verdicts,
  type IdleRun, type Rounds, type ScenarioKey, type SideRun, type SizeResult,
  CPU_RATIO_LIMIT, RSS_LIMIT_MB, SLOPE_LIMIT,
} from './scale-report.js';
import { awaitStartupSync, checkStandby, settle, sleep } from './scenarios.js';
import type { Standby } from './side.js';
import { IDLE_CPU_SHARE, IDLE_WINDOW_MS, waitIdle } from './watching.js';
import { findLogLine, warmsyncLive, warmsyncSide, type WarmsyncConfig, type WarmsyncStandby } from './warmsync.js';

export interface ScaleOptions {
  readonly sizes: readonly number[];
  /** Rounds per scenario; null: 3 below 100,000 files, 1 from there. */
  readonly rounds: number | null;
  readonly idleS: number;
  readonly seed: string;
  readonly timeoutMs: number;
  readonly docs: boolean;
}

export interface ScaleEnv {
  /** The run's temp dir; each size works in a dir of its own under it, removed before the next size. */
  readonly root: string;
  readonly daemon: RsyncDaemon;
  /** The daemon's module root: standbys go under it. */
  readonly standbys: string;
  readonly tokenFile: string;
  readonly excludesFile: string;
  say(line: string): void;
}

/**
 * The up-front estimate of one size, ms: a fixed part, generation, and the rounds. Fitted to the
 * 10k (3 rounds: 98 s) and 100k (1 round: 205 s) runs on the 2-core development machine at load 5-6.
 */
const estimateMs = (files: number, rounds: number): number => 20_000 + files * 0.3 + files * rounds * 1.8;

const roundsFor = (o: ScaleOptions, binaries: number): number => o.rounds ?? (binaries >= 100_000 ? 1 : 3);

/** Measures the rsync daemon's side of one connection: CPU of what it reaped, peak RSS of its children. */
function daemonMeter(pid: number | undefined): { stop(): Promise<{ cpuMs: number | null; peakKiB: number | null }> } {
  const cpu0 = reapedChildCpuTicks(pid);
  const peaks = new Map<number, number>();
  const poll = (): void => {
    if (pid === undefined) return;
    for (const child of descendants(pid)) {
      const hwm = vmHwmKiB(child);
      if (hwm !== null) peaks.set(child, Math.max(peaks.get(child) ?? 0, hwm));
    }
  };
  poll();
  const timer = setInterval(poll, 20);
  return {
    async stop() {
      clearInterval(timer);
      // The client has exited; the daemon's children end and are reaped just after (bounded wait).
      const deadline = Date.now() + 10_000;
      while (pid !== undefined && descendants(pid).length > 0 && Date.now() < deadline) {
        poll();
        await sleep(10);
      }
      const cpu1 = reapedChildCpuTicks(pid);
      const peakKiB = peaks.size === 0 ? null : [...peaks.values()].reduce((a, b) => a + b, 0);
      return { cpuMs: cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) * 1000) / TICKS_PER_S, peakKiB };
    },
  };
}

const ticksToMs = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : ((b - a) * 1000) / TICKS_PER_S);

async function runWarmsync(standby: WarmsyncStandby, src: string, resetOk: { value: boolean }): Promise<SideRun> {
  await settle();
  resetOk.value = resetPeakRss(standby.receiverPid) && resetOk.value;
  const c0 = cpuTicks(standby.receiverPid);
  const r = await standby.sync(src);
  return { wallMs: r.wallMs, sendCpuMs: r.cpuMs, sendPeakKiB: r.peakRssKiB, recvCpuMs: ticksToMs(c0, cpuTicks(standby.receiverPid)), recvPeakKiB: vmHwmKiB(standby.receiverPid) };
}

async function runRsync(daemon: RsyncDaemon, standby: Standby, src: string): Promise<SideRun> {
  await settle();
  const meter = daemonMeter(daemon.pid);
  const r = await standby.sync(src);
  const d = await meter.stop();
  return { wallMs: r.wallMs, sendCpuMs: r.cpuMs, sendPeakKiB: r.peakRssKiB, recvCpuMs: d.cpuMs, recvPeakKiB: d.peakKiB };
}

function describe(who: string, run: SideRun, files: number): string {
  const us = (ms: number | null): string => (ms === null ? '-' : `${((ms * 1000) / files).toFixed(0)} us/file`);
  return `${who.padEnd(12)} ${fmtTime(run.wallMs).padStart(8)}; CPU ${us(run.sendCpuMs)} + ${us(run.recvCpuMs)}; peak RSS ${fmtMB(run.sendPeakKiB)} + ${fmtMB(run.recvPeakKiB)}`;
}

function checked(src: string, dir: string, who: string): void {
  const problems = checkStandby(src, dir);
  if (problems.length > 0) throw new Error(`${who} left the standby incomplete: ${problems.join('; ')}`);
}

/** The live agent alone on warmsync's standby: first pass to idle, then `idleS` seconds idle. */
async function idleRun(cfg: WarmsyncConfig, standby: WarmsyncStandby, src: string, files: number, idleS: number, timeoutMs: number, say: (l: string) => void): Promise<IdleRun> {
  await settle();
  resetPeakRss(standby.receiverPid);
  const rc0 = cpuTicks(standby.receiverPid);
  const spawnedAt = Date.now();
  const t0 = performance.now();
  const run = await warmsyncLive(cfg, standby).start(src);
  try {
    const scanned = (): number | null => {
      const line = findLogLine(run.log?.() ?? '', 'scanned ');
      return line === null ? null : t0 + (line.at - spawnedAt);
    };
    const idleAt = await waitIdle(run.watcherPid, scanned, timeoutMs);
    if (idleAt === null) throw new Error(`the live agent was not idle within ${Math.round(timeoutMs / 1000)} s`);
    // Proves it delivers (and that its first pass is over) before the idle reading starts.
    await awaitStartupSync(src, run, 'warmsync live agent', `scale-${files}`, Math.min(timeoutMs, 300_000));
    const agentFirst = memoryKiB(run.watcherPid);
    const firstPass: SideRun = {
      wallMs: idleAt - t0, sendCpuMs: ticksToMs(0, cpuTicks(run.watcherPid)), sendPeakKiB: agentFirst?.hwmKiB ?? null,
      recvCpuMs: ticksToMs(rc0, cpuTicks(standby.receiverPid)), recvPeakKiB: vmHwmKiB(standby.receiverPid),
    };
    say(`  ${describe('live 1st pass', firstPass, files)}`);
    resetPeakRss(run.watcherPid);
    resetPeakRss(standby.receiverPid);
    const a0 = cpuTicks(run.watcherPid);
    const r0 = cpuTicks(standby.receiverPid);
    await sleep(idleS * 1000);
    const agent = memoryKiB(run.watcherPid);
    const receiver = memoryKiB(standby.receiverPid);
    const idle: IdleRun = {
      firstPass, idleS,
      agentCpuMs: ticksToMs(a0, cpuTicks(run.watcherPid)), agentPeakKiB: agent?.hwmKiB ?? null, agentRssKiB: agent?.rssKiB ?? null,
      receiverCpuMs: ticksToMs(r0, cpuTicks(standby.receiverPid)), receiverPeakKiB: receiver?.hwmKiB ?? null, receiverRssKiB: receiver?.rssKiB ?? null,
    };
    say(`  live idle ${idleS} s: agent CPU ${fmtTime(idle.agentCpuMs)}, peak ${fmtMB(idle.agentPeakKiB)} (RSS ${fmtMB(idle.agentRssKiB)}); receiver CPU ${fmtTime(idle.receiverCpuMs)}, peak ${fmtMB(idle.receiverPeakKiB)}`);
    return idle;
  } finally {
    await run.stop().catch(() => undefined);
  }
}

/** One size: generate, initial, no-op, mutation, idle; everything of it removed at the end. */
async function runSize(o: ScaleOptions, env: ScaleEnv, binaries: number, resetOk: { value: boolean }): Promise<SizeResult> {
  const { say } = env;
  const dir = join(env.root, `size-${binaries}`);
  const src = join(dir, 'src');
  const standbyRoot = join(env.standbys, `size-${binaries}`);
  const stateRoot = join(dir, 'agent-state');
  await mkdir(src, { recursive: true });
  await mkdir(standbyRoot, { recursive: true });
  const cfg: WarmsyncConfig = { tokenFile: env.tokenFile, excludesFile: env.excludesFile, stateRoot, timeoutMs: o.timeoutMs };
  const ws = warmsyncSide(cfg);
  const rsyncd = rsyncDaemonSide(env.daemon, { excludesFile: env.excludesFile, timeoutMs: o.timeoutMs }, false);
  const scenarios: Partial<Record<ScenarioKey, Rounds>> = {};
  const errors: string[] = [];
  let files = 0;
  let wsStandby: WarmsyncStandby | null = null;
  let rsStandby: Standby | null = null;
  try {
    say(`generating ${fmtCount(binaries)} binaries of 100-2,000 bytes in ${src}...`);
    const g0 = performance.now();
    const corpus = generateCorpus(src, `${o.seed}:scale`, binaries, {
      small: true,
      onProgress: (n) => say(`  ${fmtCount(n)} of ${fmtCount(binaries)} written (${((performance.now() - g0) / 1000).toFixed(0)} s)`),
    });
    files = corpus.files;
    say(`  ${fmtCount(corpus.files)} files to sync (${(corpus.bytes / 1048576).toFixed(0)} MiB), ${fmtCount(corpus.excludedFiles)} excluded, in ${fmtTime(performance.now() - g0)}`);
    const rounds = roundsFor(o, binaries);
    // A run at 1M files takes minutes with nothing to print: say what is running.
    const starting = (round: number, who: string): void => {
      if (binaries >= 100_000) say(`  round ${round + 1}: ${who} running (${new Date().toISOString().slice(11, 19)} UTC)...`);
    };

    say(`initial sync, ${rounds} round(s) (load ${os.loadavg()[0]?.toFixed(2)})`);
    const initial: Rounds = { warmsync: [], rsync: [] };
    scenarios.initial = initial;
    for (let round = 0; round < rounds; round++) {
      const last = round === rounds - 1;
      const w = await ws.open(join(standbyRoot, `warmsync-${round}`), `size-${binaries}-${round}`);
      try {
        starting(round, 'warmsync');
        const run = await runWarmsync(w, src, resetOk);
        checked(src, w.dir, 'warmsync');
        initial.warmsync.push(run);
        say(`  round ${round + 1}: ${describe('warmsync', run, files)}`);
      } finally {
        if (last) wsStandby = w;
        else {
          await w.close();
          await rm(w.dir, { recursive: true, force: true });
          await rm(w.agentStateDir, { recursive: true, force: true });
        }
      }
      const r = await rsyncd.open(join(standbyRoot, `rsync-${round}`), `rsync-${round}`);
      starting(round, 'rsync');
      const run = await runRsync(env.daemon, r, src);
      checked(src, r.dir, 'rsync');
      initial.rsync.push(run);
      say(`  round ${round + 1}: ${describe('rsync', run, files)}`);
      if (last) rsStandby = r;
      else await rm(r.dir, { recursive: true, force: true });
    }
    const w = wsStandby as WarmsyncStandby | null;
    const r = rsStandby as Standby | null;
    if (w === null || r === null) throw new Error('no standby left from the initial sync');

    for (const key of ['noop', 'mutation'] as const) {
      say(`${key === 'noop' ? 'no-op' : '1 % mutation'}, ${rounds} round(s) (load ${os.loadavg()[0]?.toFixed(2)})`);
      const rs: Rounds = { warmsync: [], rsync: [] };
      scenarios[key] = rs;
      for (let round = 0; round < rounds; round++) {
        if (key === 'mutation') {
          const m = mutate(src, `${o.seed}:scale:round-${round}`, { small: true });
          say(`  round ${round + 1}: mutated the source: +${m.added}, -${m.deleted}, ${m.edited} etc/ edits`);
        }
        starting(round, 'warmsync');
        const a = await runWarmsync(w, src, resetOk);
        if (key === 'mutation') checked(src, w.dir, 'warmsync');
        rs.warmsync.push(a);
        say(`  round ${round + 1}: ${describe('warmsync', a, files)}`);
        starting(round, 'rsync');
        const b = await runRsync(env.daemon, r, src);
        if (key === 'mutation') checked(src, r.dir, 'rsync');
        rs.rsync.push(b);
        say(`  round ${round + 1}: ${describe('rsync', b, files)}`);
      }
    }

    say(`live agent alone: first pass, then ${o.idleS} s idle (load ${os.loadavg()[0]?.toFixed(2)})`);
    const idle = await idleRun(cfg, w, src, files, o.idleS, o.timeoutMs, say);
    return { binaries, files, scenarios, idle, errors };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    say(`  ${fmtCount(binaries)} files: failed: ${message}`);
    errors.push(message);
    return { binaries, files, scenarios, idle: null, errors };
  } finally {
    await (wsStandby as WarmsyncStandby | null)?.close().catch(() => undefined);
    say(`removing the ${fmtCount(binaries)}-file trees...`);
    await rm(standbyRoot, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

/** The command that reproduces a run (options left at their defaults are left out). */
function commandLine(o: ScaleOptions): string {
  const parts = ['npm run bench -- --scale', `--scale-sizes ${o.sizes.join(',')}`];
  if (o.rounds !== null) parts.push(`--scale-rounds ${o.rounds}`);
  if (o.idleS !== 20) parts.push(`--scale-idle-s ${o.idleS}`);
  if (o.seed !== 'warmsync') parts.push(`--seed ${JSON.stringify(o.seed)}`);
  return parts.join(' ');
}

const BEGIN = '<!-- bench-scale:begin: written by `npm run bench -- --scale` from its latest run; edit outside these markers -->';
const END = '<!-- bench-scale:end -->';

/** Runs every size and returns the report (markdown) and whether everything ran. */
export async function runScale(o: ScaleOptions, env: ScaleEnv): Promise<{ markdown: string; ok: boolean; results: SizeResult[] }> {
  const { say } = env;
  const started = Date.now();
  const loadStart = os.loadavg();
  const expected = o.sizes.reduce((sum, n) => sum + estimateMs(n, roundsFor(o, n)), 0);
  say(`--scale: sizes ${o.sizes.map(fmtCount).join(', ')}; expect roughly ${Math.ceil(expected / 60_000)} min on a 2-core machine at load 5 (more under more load) `
    + `(file creation alone costs 0.3-1 ms a file on this disk), and free disk for about ${Math.ceil((Math.max(...o.sizes) * 3 * 5) / 1e6)} GB (source and two standbys of the largest size, ~5 KB a file with its inode)`);
  const resetOk = { value: true };
  const results: SizeResult[] = [];
  for (const [i, binaries] of o.sizes.entries()) {
    const t0 = Date.now();
    say(`\n== ${fmtCount(binaries)} files (${i + 1} of ${o.sizes.length}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(', ')})`);
    results.push(await runSize(o, env, binaries, resetOk));
    const took = Date.now() - t0;
    const next = o.sizes[i + 1];
    // Linear in files and rounds: crude (generation and the idle period are paid once), but it tells the user what to expect.
    const expected = next === undefined ? 0 : (took * next * roundsFor(o, next)) / (binaries * roundsFor(o, binaries));
    say(`  ${fmtCount(binaries)} files took ${fmtTime(took)}${next === undefined ? '' : `; ${fmtCount(next)} files should take roughly ${fmtTime(expected)}`}`);
  }
  const loadEnd = os.loadavg();
  const rsync = await rsyncVersion();
  const la = (xs: readonly number[]): string => xs.map((x) => x.toFixed(2)).join(', ');
  const md: string[] = [
    `Run ${new Date(started).toISOString()} (\`${commandLine(o)}\`) in ${((Date.now() - started) / 60_000).toFixed(1)} min, `
      + `warmsync ${gitCommit()}, ${os.availableParallelism()} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${rsync?.replace(/\s+/g, ' ') ?? 'rsync'}, ${tmpFilesystem(os.tmpdir())}; `
      + `load average (1, 5, 15 min) ${la(loadStart)} at the start, ${la(loadEnd)} at the end.`,
    '',
    'Corpus: small Artifactory-like binaries of 100-2,000 bytes named by their SHA-1 in the 256 filestore dirs, plus etc/ (and ~3 % excluded files); '
      + '"files" counts what a sync carries. warmsync (`agent --once` into a running receiver, durable) and `rsync -a --delete` into the rsync daemon on 127.0.0.1 (not durable) alternate, '
      + 'round by round; values are medians over the rounds, ratios warmsync / rsync per round, then their median. CPU per file is user + system CPU divided by the files in the tree '
      + '(in every scenario, so that it shows how the cost of a pass grows with the tree): the agent and the rsync client from `/usr/bin/time -v`; the receiver from /proc/PID/stat; '
      + 'the rsync daemon from the CPU of the per-connection processes it reaped (cutime + cstime). Peak RSS: `time -v` for agent and client; the receiver\'s VmHWM, reset before each run '
      + `(/proc/PID/clear_refs${resetOk.value ? '' : ': the kernel refused the reset, so the receiver\'s figures are peaks over its life'}); the daemon side's per-connection processes polled every 20 ms, their peaks summed. `
      + `The live agent runs alone on warmsync's standby: first pass = spawn to idle (after its "scanned" line, under ${IDLE_CPU_SHARE * 100} % of a core for ${IDLE_WINDOW_MS / 1000} s); `
      + 'then the idle period, VmHWM reset at its start. CPU and time are read in 10 ms steps, and every run pays a fixed start-up (node\'s for the agent, '
      + '~0.2-0.3 s of CPU): at small sizes both weigh on the per-file figures, which then fall as the tree grows.',
    '',
    ...scaleTable(results),
    '',
    `Targets (issue 19). Rules: wall ratios <= 1.0×; CPU per file <= ${CPU_RATIO_LIMIT}× rsync's same side; peak RSS <= ${RSS_LIMIT_MB} MB; `
      + `slope flat = CPU per file at the largest size run at most ${SLOPE_LIMIT}× that at the smallest (same side, same scenario).`,
    '',
    ...verdicts(results),
  ];
  const markdown = md.join('\n');
  if (o.docs) {
    const path = join(REPO, 'docs/benchmarks.md');
    const doc = await readFile(path, 'utf8');
    await writeFile(path, spliceSection(doc, BEGIN, END, `${BEGIN}\n\n## Cost growth (\`--scale\`): latest run\n\n${markdown}\n\n${END}`));
    say(`wrote ${path}`);
  }
  return { markdown, ok: results.every((r) => r.errors.length === 0), results };
}
