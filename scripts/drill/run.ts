/**
 * `npm run drill [-- --seed S] [--runs N] [--long] [--json FILE]` (JSON default: TMPDIR/warmsync-drill-SEED.json): the failover drill
 * (scripts/drill/drill.ts) N times on seeds S, S+1, ..., each with the five procedures side by
 * side; prints the seed first, a table at the end (missing/corrupt/lost transactions/lost ms, and
 * the median ms lost), and writes every figure as JSON.
 * Short (default): 3 runs, the crash 6-12 s into the workload. --long: 20 runs, 10-30 s.
 */
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PROCEDURES, runDrill, type DrillResult, type ProcedureResult } from './drill.js';
import { ensurePostgres } from './pg.js';

const say = (line = ''): void => void process.stdout.write(line + '\n');

const { values } = parseArgs({
  options: { seed: { type: 'string' }, runs: { type: 'string' }, long: { type: 'boolean' }, json: { type: 'string' } },
  strict: true,
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(values.seed);
const runs = values.runs === undefined ? (values.long ? 20 : 3) : Number(values.runs);
if (!Number.isInteger(seed) || !Number.isInteger(runs) || runs < 1) {
  process.stderr.write('drill: --seed and --runs take whole numbers (runs >= 1)\n');
  process.exit(2);
}
const [minRunMs, maxRunMs] = values.long ? [10_000, 30_000] : [6_000, 12_000];
const jsonPath = resolve(values.json ?? join(tmpdir(), `warmsync-drill-${seed}.json`));

let pgBin: string;
try {
  pgBin = ensurePostgres(say);
} catch (err) {
  process.stderr.write(`drill: ${(err as Error).message}\n`);
  process.exit(1);
}

say(`drill: seed ${seed}, ${runs} run(s), crash ${minRunMs / 1000}-${maxRunMs / 1000} s into the workload, PostgreSQL from ${pgBin}`);
say(`rerun: npm run drill -- --seed ${seed} --runs ${runs}${values.long ? ' --long' : ''}`);
const settings = { applyDelayMs: 8000, skewMs: 1000, deleteGraceMs: 1000, rsyncEveryMs: 2000 };
const drills: DrillResult[] = [];
for (let i = 0; i < runs; i++) {
  drills.push(await runDrill({ seed: seed + i, pgBin, minRunMs, maxRunMs, procedures: PROCEDURES, say, ...settings }));
}

const cell = (r: ProcedureResult | undefined): string =>
  r === undefined ? '-' : r.error !== null ? 'FAILED' : `${r.missing}/${r.corrupt}/${r.lost}/${r.lostMs ?? '-'}`;
const header = ['seed', 'txns', ...PROCEDURES.map((p) => `${p} miss/corr/lost/ms`), 'lsn quarantined/kept'];
const rows = drills.map((d) => {
  const by = (p: string): ProcedureResult | undefined => d.results.find((r) => r.procedure === p);
  const b = by('lsn');
  return [String(d.seed), String(d.committed), ...PROCEDURES.map((p) => cell(by(p))), b?.error === null ? `${b.quarantined}/${b.keptReferenced}` : '-'];
});
const total = (p: string, key: 'missing' | 'corrupt' | 'lost'): number =>
  drills.reduce((n, d) => n + (d.results.find((r) => r.procedure === p)?.[key] ?? 0), 0);
const runsWith = (p: string, pred: (r: ProcedureResult) => boolean): number => drills.filter((d) => d.results.some((r) => r.procedure === p && pred(r))).length;
/** The median of the ms lost over the runs where the procedure completed. */
const medianLostMs = (p: string): string => {
  const ms = drills.flatMap((d) => d.results.filter((r) => r.procedure === p && r.lostMs !== null).map((r) => r.lostMs as number)).sort((a, b) => a - b);
  if (ms.length === 0) return '-';
  const mid = Math.floor(ms.length / 2);
  return String(ms.length % 2 === 1 ? ms[mid] : Math.round(((ms[mid - 1] as number) + (ms[mid] as number)) / 2));
};
rows.push(['total', String(drills.reduce((n, d) => n + d.committed, 0)), ...PROCEDURES.map((p) => `${total(p, 'missing')}/${total(p, 'corrupt')}/${total(p, 'lost')}`), '']);
rows.push(['median ms lost', '', ...PROCEDURES.map(medianLostMs), '']);
rows.push(['runs with missing', '', ...PROCEDURES.map((p) => `${runsWith(p, (r) => (r.missing ?? 0) > 0)} of ${runs}`), '']);
rows.push(['runs FAILED', '', ...PROCEDURES.map((p) => `${runsWith(p, (r) => r.error !== null)} of ${runs}`), '']);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
say();
say(line(header));
say(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
for (const r of rows) say(line(r));
for (const d of drills) for (const r of d.results) if (r.error !== null) say(`seed ${d.seed} ${r.procedure}: ${r.error}`);
await writeFile(jsonPath, JSON.stringify({ seed, runs, long: values.long ?? false, ...settings, minRunMs, maxRunMs, drills }, null, 2) + '\n');
say(`\nJSON: ${jsonPath}`);
// The claim under test: no W-bounded procedure ever leaves a referenced binary missing or corrupt.
for (const p of ['lsn', 'measured', 'bounded']) {
  const broken = runsWith(p, (r) => r.error !== null || (r.missing ?? 0) > 0 || (r.corrupt ?? 0) > 0);
  if (broken > 0) {
    say(`drill: the W-bounded procedure ${p} failed or lost binaries in ${broken} run(s)`);
    process.exitCode = 1;
  }
}
