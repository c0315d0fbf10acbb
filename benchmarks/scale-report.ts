/**
 * The cost-growth report of `npm run bench -- --scale` (issue 19), from measurements already taken:
 * the markdown table (one block of rows per tree size), the verdict lines against issue 19's targets,
 * and the splice of that section into docs/benchmarks.md. Pure: nothing here runs or reads anything.
 */

/** One timed run of one side. CPU in ms, RSS in KiB; null where it could not be read. */
export interface SideRun {
  readonly wallMs: number;
  /** warmsync's agent, or the rsync client (the sender). */
  readonly sendCpuMs: number | null;
  readonly sendPeakKiB: number | null;
  /** warmsync's receiver, or the rsync daemon's per-connection processes (the receiving end). */
  readonly recvCpuMs: number | null;
  readonly recvPeakKiB: number | null;
}

/** One scenario at one size: a run per round of each side (round i of warmsync paired with round i of rsync). */
export interface Rounds {
  readonly warmsync: SideRun[];
  readonly rsync: SideRun[];
}

/** The live agent alone: its first pass (spawn -> idle) and then an idle period. */
export interface IdleRun {
  /** Spawn -> idle (the initial pass done and the agent quiet). */
  readonly firstPass: SideRun;
  readonly idleS: number;
  /** Over the idle period: CPU used, peak RSS (VmHWM reset at its start), RSS at its end. */
  readonly agentCpuMs: number | null;
  readonly agentPeakKiB: number | null;
  readonly agentRssKiB: number | null;
  readonly receiverCpuMs: number | null;
  readonly receiverPeakKiB: number | null;
  readonly receiverRssKiB: number | null;
}

export type ScenarioKey = 'initial' | 'noop' | 'mutation';
export const SCENARIO_TITLES: Readonly<Record<ScenarioKey, string>> = { initial: 'initial sync', noop: 'no-op', mutation: '1 % mutation' };
const KEYS: readonly ScenarioKey[] = ['initial', 'noop', 'mutation'];

export interface SizeResult {
  /** The size asked for (filestore binaries). */
  readonly binaries: number;
  /** Files a sync carries (binaries + etc/): CPU per file divides by this. */
  readonly files: number;
  readonly scenarios: Partial<Record<ScenarioKey, Rounds>>;
  readonly idle: IdleRun | null;
  /** Why something at this size did not run or did not finish. */
  readonly errors: string[];
}

// ---------------------------------------------------------------------------------------------
// Numbers

export function median(xs: ReadonlyArray<number | null>): number | null {
  const s = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median over rounds of warmsync's value / rsync's value in the same round. */
export function pairedRatio(r: Rounds, pick: (run: SideRun) => number | null): number | null {
  const out: number[] = [];
  for (let i = 0; i < Math.min(r.warmsync.length, r.rsync.length); i++) {
    const a = pick(r.warmsync[i] as SideRun);
    const b = pick(r.rsync[i] as SideRun);
    if (a !== null && b !== null && b > 0) out.push(a / b);
  }
  return median(out);
}

/** Per-file CPU pickers (us per file) for a tree of `files`. */
const perFile = (files: number) => ({
  send: (run: SideRun): number | null => (run.sendCpuMs === null ? null : (run.sendCpuMs * 1000) / files),
  recv: (run: SideRun): number | null => (run.recvCpuMs === null ? null : (run.recvCpuMs * 1000) / files),
});

const wall = (run: SideRun): number => run.wallMs;
const sendPeak = (run: SideRun): number | null => run.sendPeakKiB;
const recvPeak = (run: SideRun): number | null => run.recvPeakKiB;

// ---------------------------------------------------------------------------------------------
// Formatting

export function fmtTime(ms: number | null): string {
  if (ms === null) return '-';
  if (ms >= 600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

export const fmtUs = (us: number | null): string => (us === null ? '-' : us >= 100 ? `${us.toFixed(0)} us` : `${us.toFixed(1)} us`);
export const fmtMB = (kib: number | null): string => (kib === null ? '-' : `${Math.round(kib / 1024)} MB`);
export const fmtRatio = (r: number | null): string => (r === null ? '-' : `${r.toFixed(2)}×`);
export const fmtCount = (n: number): string => n.toLocaleString('en');

/** "a / b (ratio)", the shape of every compared cell. */
function pair(a: string, b: string, ratio?: number | null): string {
  return ratio === undefined ? `${a} / ${b}` : `${a} / ${b} (${fmtRatio(ratio)})`;
}

/** The cost-growth table: per size, one row per scenario (warmsync / rsync daemon), then the live agent. */
export function scaleTable(results: readonly SizeResult[]): string[] {
  const out: string[] = [
    '| files | scenario | rounds | wall: warmsync / rsync (ratio) | CPU per file, sender: agent / rsync client (ratio) | CPU per file, receiving end: receiver / rsync daemon (ratio) | peak RSS: agent / rsync client | peak RSS: receiver / rsync daemon |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const size of results) {
    const n = fmtCount(size.files);
    const pf = perFile(size.files);
    for (const key of KEYS) {
      const r = size.scenarios[key];
      if (r === undefined) continue;
      const w = (pick: (run: SideRun) => number | null): number | null => median(r.warmsync.map(pick));
      const o = (pick: (run: SideRun) => number | null): number | null => median(r.rsync.map(pick));
      out.push(`| ${n} | ${SCENARIO_TITLES[key]} | ${Math.min(r.warmsync.length, r.rsync.length)} `
        + `| ${pair(fmtTime(w(wall)), fmtTime(o(wall)), pairedRatio(r, wall))} `
        + `| ${pair(fmtUs(w(pf.send)), fmtUs(o(pf.send)), pairedRatio(r, pf.send))} `
        + `| ${pair(fmtUs(w(pf.recv)), fmtUs(o(pf.recv)), pairedRatio(r, pf.recv))} `
        + `| ${pair(fmtMB(w(sendPeak)), fmtMB(o(sendPeak)))} | ${pair(fmtMB(w(recvPeak)), fmtMB(o(recvPeak)))} |`);
    }
    const idle = size.idle;
    if (idle !== null) {
      const f = idle.firstPass;
      out.push(`| ${n} | live agent: first pass (spawn -> idle) | 1 | ${fmtTime(f.wallMs)} (warmsync alone) | ${fmtUs(pf.send(f))} | ${fmtUs(pf.recv(f))} | ${fmtMB(f.sendPeakKiB)} | ${fmtMB(f.recvPeakKiB)} |`);
      out.push(`| ${n} | live agent: idle ${idle.idleS} s | 1 | - | ${fmtTime(idle.agentCpuMs)} of CPU in all | ${fmtTime(idle.receiverCpuMs)} of CPU in all `
        + `| ${fmtMB(idle.agentPeakKiB)} (${fmtMB(idle.agentRssKiB)} at the end) | ${fmtMB(idle.receiverPeakKiB)} (${fmtMB(idle.receiverRssKiB)} at the end) |`);
    }
    for (const e of size.errors) out.push(`| ${n} | failed | | ${e.split('\n')[0]?.slice(0, 200) ?? ''} | | | | |`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/** Issue 19's sizes for the resync and memory targets. */
export const ISSUE_SIZES = [100_000, 1_000_000] as const;
export const RSS_LIMIT_MB = 200;
export const CPU_RATIO_LIMIT = 1.5;
/** "Slope flat": CPU per file at the largest size at most this many times that at the smallest. */
export const SLOPE_LIMIT = 1.3;

type Check = { readonly at: string; readonly ok: boolean; readonly figure: string };

function line(target: string, checks: readonly Check[], missing: string | null): string {
  if (checks.length === 0) return `- ${target}: not judged${missing === null ? '' : ` (${missing})`}`;
  const ok = checks.every((c) => c.ok);
  const detail = checks.map((c) => `${c.at}: ${c.ok ? 'met' : 'missed'} (${c.figure})`).join('; ');
  return `- ${target}: **${ok ? 'met' : 'missed'}** — ${detail}${missing === null ? '' : `; ${missing}`}`;
}

/** Sizes of ISSUE_SIZES this run did not have, as a phrase, or null. */
function notRun(results: readonly SizeResult[], sizes: readonly number[]): string | null {
  const absent = sizes.filter((s) => !results.some((r) => r.binaries === s));
  return absent.length === 0 ? null : `${absent.map(fmtCount).join(' and ')} files not in this run`;
}

function wallTarget(results: readonly SizeResult[], key: ScenarioKey, sizes: readonly number[] | null): string {
  const judged = results.filter((r) => sizes === null || sizes.includes(r.binaries));
  const checks: Check[] = [];
  for (const r of judged) {
    const rounds = r.scenarios[key];
    const ratio = rounds === undefined ? null : pairedRatio(rounds, wall);
    if (ratio !== null) checks.push({ at: fmtCount(r.files), ok: ratio <= 1.0, figure: fmtRatio(ratio) });
  }
  const where = sizes === null ? 'at every size' : `at ${sizes.map(fmtCount).join(' and ')} files`;
  const reference = sizes === null ? null : results.filter((r) => !sizes.includes(r.binaries))
    .map((r) => {
      const rounds = r.scenarios[key];
      const ratio = rounds === undefined ? null : pairedRatio(rounds, wall);
      return ratio === null ? null : `${fmtCount(r.files)}: ${fmtRatio(ratio)}`;
    }).filter((x): x is string => x !== null);
  const missing = [sizes === null ? null : notRun(results, sizes), reference && reference.length ? `for reference, ${reference.join(', ')}` : null].filter((x) => x !== null).join('; ');
  return line(`${SCENARIO_TITLES[key]} wall <= 1.0× the rsync daemon's, ${where}`, checks, missing === '' ? null : missing);
}

function cpuTarget(results: readonly SizeResult[], side: 'send' | 'recv'): string {
  const checks: Check[] = [];
  for (const r of results) {
    const pf = perFile(r.files);
    const parts: string[] = [];
    let ok = true;
    for (const key of KEYS) {
      const rounds = r.scenarios[key];
      const ratio = rounds === undefined ? null : pairedRatio(rounds, pf[side]);
      if (ratio === null) continue;
      parts.push(`${SCENARIO_TITLES[key]} ${fmtRatio(ratio)}`);
      ok &&= ratio <= CPU_RATIO_LIMIT;
    }
    if (parts.length) checks.push({ at: fmtCount(r.files), ok, figure: parts.join(', ') });
  }
  const who = side === 'send' ? 'sender (agent vs rsync client)' : 'receiving end (receiver vs rsync daemon)';
  return line(`CPU per file, ${who}, <= ${CPU_RATIO_LIMIT}× rsync's in every scenario`, checks, null);
}

function rssTarget(results: readonly SizeResult[], who: 'agent' | 'receiver'): string {
  const big = ISSUE_SIZES[ISSUE_SIZES.length - 1] as number;
  const figures = (r: SizeResult): { peak: number | null; parts: string[] } => {
    const parts: string[] = [];
    let peak: number | null = null;
    const add = (what: string, kib: number | null): void => {
      if (kib === null) return;
      parts.push(`${what} ${fmtMB(kib)}`);
      peak = Math.max(peak ?? 0, kib);
    };
    for (const key of ['initial', 'noop'] as const) {
      const rounds = r.scenarios[key];
      if (rounds !== undefined) add(SCENARIO_TITLES[key], median(rounds.warmsync.map(who === 'agent' ? sendPeak : recvPeak)));
    }
    if (r.idle !== null) add('idle', who === 'agent' ? r.idle.agentPeakKiB : r.idle.receiverPeakKiB);
    return { peak, parts };
  };
  const checks: Check[] = [];
  const reference: string[] = [];
  for (const r of results) {
    const { peak, parts } = figures(r);
    if (peak === null) continue;
    if (r.binaries === big) checks.push({ at: fmtCount(r.files), ok: peak / 1024 <= RSS_LIMIT_MB, figure: parts.join(', ') });
    else reference.push(`${fmtCount(r.files)}: ${parts.join(', ')}`);
  }
  const missing = [notRun(results, [big]), reference.length ? `for reference, ${reference.join('; ')}` : null].filter((x) => x !== null).join('; ');
  return line(`${who} peak RSS <= ${RSS_LIMIT_MB} MB in the first sync, a no-op and idle watching, at ${fmtCount(big)} files`, checks, missing === '' ? null : missing);
}

function slopeTarget(results: readonly SizeResult[]): string {
  const sorted = [...results].sort((a, b) => a.files - b.files);
  const small = sorted[0];
  const large = sorted[sorted.length - 1];
  const target = `slope flat: CPU per file at the largest size <= ${SLOPE_LIMIT}× that at the smallest, each side, each scenario`;
  if (small === undefined || large === undefined || small === large) return line(target, [], 'needs two sizes or more');
  const checks: Check[] = [];
  for (const key of KEYS) {
    const a = small.scenarios[key];
    const b = large.scenarios[key];
    if (a === undefined || b === undefined) continue;
    for (const side of ['send', 'recv'] as const) {
      const growth = (pick: (rounds: Rounds) => SideRun[], files: number[]): number | null => {
        const x = median(pick(a).map(perFile(files[0] as number)[side]));
        const y = median(pick(b).map(perFile(files[1] as number)[side]));
        return x === null || y === null || x <= 0 ? null : y / x;
      };
      const mine = growth((r) => r.warmsync, [small.files, large.files]);
      const theirs = growth((r) => r.rsync, [small.files, large.files]);
      if (mine === null) continue;
      const who = side === 'send' ? 'agent' : 'receiver';
      checks.push({ at: `${SCENARIO_TITLES[key]}, ${who}`, ok: mine <= SLOPE_LIMIT, figure: `${fmtRatio(mine)}; rsync's ${side === 'send' ? 'client' : 'daemon'} ${fmtRatio(theirs)}` });
    }
  }
  return line(`${target} (${fmtCount(small.files)} -> ${fmtCount(large.files)} files)`, checks, null);
}

/** One line per issue 19 target these runs can judge: met / missed with the figures, or why not judged. */
export function verdicts(results: readonly SizeResult[]): string[] {
  return [
    wallTarget(results, 'initial', null),
    wallTarget(results, 'noop', ISSUE_SIZES),
    wallTarget(results, 'mutation', ISSUE_SIZES),
    cpuTarget(results, 'send'),
    cpuTarget(results, 'recv'),
    rssTarget(results, 'agent'),
    rssTarget(results, 'receiver'),
    slopeTarget(results),
  ];
}

// ---------------------------------------------------------------------------------------------
// Options and docs

/** "10000,100000" -> [10000, 100000]: positive integers, at least one, no repeats. */
export function parseSizes(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim().replace(/_/g, ''));
  const sizes: number[] = [];
  for (const p of parts) {
    const n = /^\d+$/.test(p) ? Number(p) : NaN;
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--scale-sizes takes comma-separated positive file counts, such as 10000,100000; ${JSON.stringify(p)} is not one`);
    if (sizes.includes(n)) throw new Error(`--scale-sizes names ${n} twice`);
    sizes.push(n);
  }
  return sizes;
}

/**
 * `doc` with the text between `begin` and `end` (markers included) replaced by `block`; when the
 * markers are not both there, `block` appended at the end.
 */
export function spliceSection(doc: string, begin: string, end: string, block: string): string {
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i === -1 || j === -1 || j < i) return `${doc.replace(/\n*$/, '\n')}\n${block}\n`;
  return doc.slice(0, i) + block + doc.slice(j + end.length);
}
