/**
 * One failover drill (docs/failover.md): a real PostgreSQL primary and streaming standby (with an
 * apply delay), the real receiver (--snapshot-source, small delete grace) and live agent, an rsync
 * loop into a second standby tree (the seed recipe), and the Artifactory-like workload. At a random
 * moment the workload, the agent and rsync are SIGKILLed and the primary stops immediately. The
 * standby's DB and trees are then copied, and each procedure fails over on its own copy of the same
 * history:
 *   lsn       warmsync failover --target lsn (recovery up to the WAL position the agent read from the
 *             primary at a moment W covers), then warmsync promote --time T --references
 *   measured  warmsync failover --target time (W - skew, the skew the agent measured against the
 *             primary's clock), then the same promote
 *   bounded   warmsync failover --target time --skew 2000 (W - the default skew), then the same promote
 *   naive     the standby DB promoted at the latest WAL it has, then the same warmsync promote
 *   rsync     the same promoted DB as naive, with the rsync tree (no warmsync)
 * and is checked: every sha1 the promoted DB references must be in the tree and hash to its name;
 * the work lost is counted in transactions and in ms (the last commit on the primary to the
 * promoted DB's last transaction).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXCLUDES, Rng } from '../../benchmarks/corpus.js';
import { runCli, startAgentProcess, startReceiverProcess, stopAll } from '../lib/cli-process.js';
import { DEFAULT_SKEW_MS } from '../../src/gate/policy.js';
import { PgServer, createPair, stopServers, until } from './pg.js';

export type Procedure = 'lsn' | 'measured' | 'bounded' | 'naive' | 'rsync';
export const PROCEDURES: readonly Procedure[] = ['lsn', 'measured', 'bounded', 'naive', 'rsync'];
/** The procedures that run warmsync failover, with what they add to its command line. */
const W_BOUNDED: ReadonlyArray<[Procedure, string[]]> = [
  ['lsn', ['--target', 'lsn']],
  ['measured', ['--target', 'time']],
  ['bounded', ['--target', 'time', '--skew', String(DEFAULT_SKEW_MS)]],
];

export interface DrillOptions {
  readonly seed: number;
  /** PostgreSQL bin dir (scripts/drill/pg.ts, ensurePostgres). */
  readonly pgBin: string;
  /** The kill comes at a seeded moment between these (ms after the workload's first commit). */
  readonly minRunMs: number;
  readonly maxRunMs: number;
  /**
   * The kill also waits (past its seeded moment if need be) until the agent's watermark, less the
   * skew, is past this many of the workload's commits: on a loaded machine a few seconds may hold
   * too little work, or too little of it under W, for the outcome to prove anything. Default 0.
   */
  readonly minCoveredCommits?: number;
  readonly procedures: readonly Procedure[];
  readonly applyDelayMs: number;
  readonly skewMs: number;
  readonly deleteGraceMs: number;
  readonly rsyncEveryMs: number;
  readonly say: (line: string) => void;
}

export interface ProcedureResult {
  readonly procedure: Procedure;
  /** Set when the procedure could not complete; the counts are then null. */
  readonly error: string | null;
  /** The promoted DB's last transaction time (what promote --time got). */
  readonly promotedAt: number | null;
  readonly referenced: number | null;
  readonly missing: number | null;
  readonly corrupt: number | null;
  /** Files promote quarantined (all unreferenced: --references keeps the rest). */
  readonly quarantined: number | null;
  /** Files the gate picked that the promoted DB references, kept by --references. */
  readonly keptReferenced: number | null;
  /** Files under the filestore the promoted DB does not reference, after promotion. */
  readonly unreferencedLeft: number | null;
  /** Transactions the workload saw commit on the primary that the promoted DB lacks. */
  readonly lost: number | null;
  /** ms from the last commit on the primary (the workload's log) to the promoted DB's last transaction. */
  readonly lostMs: number | null;
  /** What the failover recovered to: "lsn X/Y", "time (skew N ms, SOURCE)", or "latest WAL". */
  readonly target: string | null;
}

export interface DrillResult {
  readonly seed: number;
  readonly killAfterMs: number;
  /** When the crash happened (epoch ms): the watermark's lag is killedAt - watermark. */
  readonly killedAt: number;
  readonly committed: number;
  readonly uploads: number;
  readonly gcs: number;
  readonly watermark: number | null;
  readonly recoveryTarget: number | null;
  /** The WAL position status reported (the agent's --db-primary), and when the agent read it. */
  readonly recoveryTargetLsn: string | null;
  readonly recoveryTargetLsnAt: number | null;
  /** The skew status reported in force, and where it came from. */
  readonly skewMs: number | null;
  readonly skewSource: string | null;
  readonly results: ProcedureResult[];
}

const WORKLOAD = fileURLToPath(new URL('./workload.ts', import.meta.url));
const FILESTORE = 'data/filestore';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function copyTree(from: string, to: string): void {
  const r = spawnSync('cp', ['-a', from, to], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cp -a ${from} ${to} failed: ${r.stderr.trim()}`);
}

/** The seed recipe: rsync -a --delete --exclude-from every few seconds until stopped. */
function rsyncLoop(src: string, dst: string, excludes: string, everyMs: number): { stop(): Promise<void> } {
  let stopped = false;
  let child: ChildProcess | null = null;
  const loop = (async () => {
    while (!stopped) {
      child = spawn('rsync', ['-a', '--delete', `--exclude-from=${excludes}`, `${src}/`, `${dst}/`], { stdio: 'ignore' });
      await new Promise((r) => child?.once('close', r));
      child = null;
      if (!stopped) await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      (child as ChildProcess | null)?.kill('SIGKILL');
      await loop;
    },
  };
}

/** What the workload's log says was committed; commitMs in log order (just after each COMMIT returned). */
interface Committed { ids: Set<number>; uploads: number; gcs: number; commitMs: number[] }

async function readWorkloadLog(path: string): Promise<Committed> {
  const ids = new Set<number>();
  const commitMs: number[] = [];
  let uploads = 0;
  let gcs = 0;
  const lines = (await readFile(path, 'utf8').catch(() => '')).split('\n');
  for (const [i, line] of lines.entries()) {
    const [id, kind, ms] = line.split(' ');
    if (id === undefined || kind === undefined) continue; // the last line, cut by the SIGKILL
    ids.add(Number(id));
    // A time only from a whole line (the last may still be being written).
    if (i < lines.length - 1 && ms !== undefined) commitMs.push(Number(ms));
    if (kind === 'upload') uploads++;
    else gcs++;
  }
  return { ids, uploads, gcs, commitMs };
}

/** Every referenced sha1 against the tree; files nobody references; transactions missing. */
async function check(root: string, db: PgServer, committed: Committed): Promise<Pick<ProcedureResult, 'referenced' | 'missing' | 'corrupt' | 'unreferencedLeft' | 'lost'>> {
  const referenced = new Set((await db.query<{ sha1: string }>('SELECT sha1 FROM binaries')).map((r) => r.sha1));
  let missing = 0;
  let corrupt = 0;
  for (const sha1 of referenced) {
    const data = await readFile(join(root, FILESTORE, sha1.slice(0, 2), sha1)).catch(() => null);
    if (data === null) missing++;
    else if (createHash('sha1').update(data).digest('hex') !== sha1) corrupt++;
  }
  let unreferencedLeft = 0;
  for (const dir of await readdir(join(root, FILESTORE)).catch(() => [] as string[])) {
    if (dir === '_pre') continue;
    for (const name of await readdir(join(root, FILESTORE, dir)).catch(() => [] as string[])) if (!referenced.has(name)) unreferencedLeft++;
  }
  const present = new Set((await db.query<{ id: string }>('SELECT id FROM txlog')).map((r) => Number(r.id)));
  const lost = [...committed.ids].filter((id) => !present.has(id)).length;
  return { referenced: referenced.size, missing, corrupt, unreferencedLeft, lost };
}

async function promoteTree(root: string, db: PgServer, time: number, o: DrillOptions): Promise<{ quarantined: number; keptReferenced: number }> {
  const r = await runCli([
    'promote', '--root', root, '--time', String(time), '--references', db.url(), '--skew', String(o.skewMs), '--delete-grace', String(o.deleteGraceMs), '--json', '--log-level', 'error',
  ], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`warmsync promote exited ${r.code}: ${r.stderr.trim()}`);
  const out = JSON.parse(r.stdout) as { removed: string[]; kept: string[] };
  return { quarantined: out.removed.length, keptReferenced: out.kept.length };
}

const failed = (procedure: Procedure, err: unknown): ProcedureResult => ({
  procedure, error: err instanceof Error ? err.message.replace(/\s*\n\s*/g, ' / ') : String(err),
  promotedAt: null, referenced: null, missing: null, corrupt: null, quarantined: null, keptReferenced: null, unreferencedLeft: null, lost: null, lostMs: null, target: null,
});

/** ms of commits lost: the last commit the workload logged, less the promoted DB's last transaction. */
const lostMs = (committed: Committed, promotedAt: number): number | null =>
  committed.commitMs.length === 0 ? null : Math.max(0, Math.max(...committed.commitMs) - promotedAt);

/** The last commit time the promoted DB replayed (ms, rounded down). */
async function promotedAt(db: PgServer): Promise<number | null> {
  const [row] = await db.query<{ ms: string | null }>('SELECT floor(extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::bigint::text AS ms');
  return row?.ms == null ? null : Number(row.ms);
}

export async function runDrill(o: DrillOptions): Promise<DrillResult> {
  const dir = await mkdtemp(join(tmpdir(), 'warmsync-drill-'));
  await chmod(dir, 0o755); // the postgres user must reach its data dirs below
  const servers: PgServer[] = [];
  const rng = new Rng(`drill-${o.seed}`);
  try {
    const { primary, standby } = await createPair(o.pgBin, join(dir, 'pg'), o.applyDelayMs);
    servers.push(primary, standby);
    await primary.query('CREATE TABLE binaries (sha1 text PRIMARY KEY, size bigint NOT NULL)');
    await primary.query('CREATE TABLE txlog (id bigint PRIMARY KEY, kind text NOT NULL)');

    const src = join(dir, 'active');
    const dst = join(dir, 'standby');
    const rsyncDst = join(dir, 'rsync');
    for (const d of [src, dst, rsyncDst]) await mkdir(d);
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'drill-token-0123456789abcdef\n', { mode: 0o600 });
    const excludes = join(dir, 'excludes');
    await writeFile(excludes, EXCLUDES);

    const receiver = await startReceiverProcess([
      '--root', dst, '--listen', '127.0.0.1:0', '--token-file', tokenFile, '--snapshot-source', standby.url(), '--snapshot-interval', '1',
      '--skew', String(o.skewMs), '--delete-grace', String(o.deleteGraceMs), '--log-level', 'warn',
    ]);
    const agent = startAgentProcess([
      '--root', src, '--connect', receiver.url, '--token-file', tokenFile, '--exclude-from', excludes, '--db-primary', primary.url(), '--log-level', 'warn',
    ]);
    interface Status { watermark: number | null; recoveryTarget: number | null; recoveryTargetLsn: string | null; recoveryTargetLsnAt: number | null; skewMs: number; skewSource: string }
    const status = async (): Promise<Status> => JSON.parse((await runCli(['status', '--root', dst, '--json'])).stdout) as Status;
    await until('the agent\'s first watermark', async () => (await status()).watermark !== null, 60_000);

    const rsync = o.procedures.includes('rsync') ? rsyncLoop(src, rsyncDst, excludes, o.rsyncEveryMs) : null;
    const workloadLog = join(dir, 'workload.log');
    const workload = spawn(process.execPath, ['--import', 'tsx', WORKLOAD, primary.url(), src, String(o.seed), workloadLog], { stdio: ['ignore', 'ignore', 'pipe'] });
    let workloadErr = '';
    workload.stderr.on('data', (d: Buffer) => (workloadErr += d.toString()));
    const workloadExit = new Promise<void>((r) => workload.once('close', () => r()));

    // The clock starts at the first commit: under load, starting the workload alone can take seconds.
    await until('the workload\'s first commit', async () => (await readFile(workloadLog, 'utf8').catch(() => '')).length > 0 || workload.exitCode !== null, 120_000);
    const firstCommitAt = Date.now();
    const killAfterMs = o.minRunMs + Math.floor(rng.next() * (o.maxRunMs - o.minRunMs));
    await sleep(killAfterMs);
    const covered = o.minCoveredCommits ?? 0;
    if (covered > 0) {
      await until(`the watermark to pass ${covered} commits of the workload`, async () => {
        const at = (await readWorkloadLog(workloadLog)).commitMs[covered - 1];
        const { watermark } = await status();
        return workload.exitCode !== null || (at !== undefined && watermark !== null && watermark - o.skewMs > at);
      }, 120_000);
    }
    if (workload.exitCode !== null) throw new Error(`the workload died early: ${workloadErr.trim()}`);
    // The crash: application, agent and rsync die; the DB primary stops without a checkpoint.
    const killedAt = Date.now();
    workload.kill('SIGKILL');
    agent.child.kill('SIGKILL');
    await rsync?.stop();
    primary.stop('immediate');
    // The runbook's first step: stop the standby replaying further while the failover is prepared.
    await standby.query('SELECT pg_wal_replay_pause()');
    await Promise.all([workloadExit, agent.exited]);
    const committed = await readWorkloadLog(workloadLog);
    const { watermark, recoveryTarget, recoveryTargetLsn, recoveryTargetLsnAt, skewMs, skewSource } = await status();
    o.say(`  seed ${o.seed}: killed after ${killedAt - firstCommitAt} ms (seeded ${killAfterMs}), ${committed.ids.size} transactions committed (${committed.uploads} uploads, ${committed.gcs} GCs), watermark ${watermark === null ? 'none' : `${killedAt - watermark} ms behind`}, WAL position ${recoveryTargetLsnAt === null ? 'none' : `${recoveryTargetLsn} read ${killedAt - recoveryTargetLsnAt} ms before`}, skew ${skewMs} ms (${skewSource})`);

    // The standby side stops, and each procedure gets its own copy of it.
    await receiver.stop();
    standby.stop('fast');
    const naiveDb = new PgServer(o.pgBin, join(dir, 'pg', 'standby-naive'), standby.port);
    const naiveTree = join(dir, 'standby-naive');
    if (o.procedures.includes('naive') || o.procedures.includes('rsync')) {
      copyTree(standby.dataDir, naiveDb.dataDir);
      copyTree(dst, naiveTree);
    }
    // Each W-bounded procedure on its own copy of the standby's DB and tree (failover changes both).
    const bounded = W_BOUNDED.filter(([p]) => o.procedures.includes(p));
    const copies = new Map(bounded.map(([p]) => [p, { db: new PgServer(o.pgBin, join(dir, 'pg', `standby-${p}`), standby.port), tree: join(dir, `standby-${p}`) }]));
    for (const { db, tree } of copies.values()) {
      copyTree(standby.dataDir, db.dataDir);
      copyTree(dst, tree);
    }

    const results: ProcedureResult[] = [];
    for (const [procedure, args] of bounded) {
      const { db, tree } = copies.get(procedure) as { db: PgServer; tree: string };
      servers.push(db);
      try {
        // Stopped, as the crash left it: failover writes the target and starts it (pg_ctl restart).
        const r = await runCli(['failover', '--root', tree, '--apply', '--pgdata', db.dataDir, '--standby', db.url(), ...args, '--json', '--timeout', '120', '--log-level', 'warn'], { timeoutMs: 200_000 });
        if (r.code !== 0) throw new Error(`warmsync failover exited ${r.code}: ${r.stderr.trim()}`);
        const out = JSON.parse(r.stdout) as { promotedAt: number | null; recoveryTarget: number; recoveryTargetLsn: string | null; skewMs: number; skewSource: string };
        const time = out.promotedAt ?? out.recoveryTarget;
        const target = out.recoveryTargetLsn !== null ? `lsn ${out.recoveryTargetLsn}` : `time (skew ${out.skewMs} ms, ${out.skewSource})`;
        const promoted = await promoteTree(tree, db, time, o);
        results.push({ procedure, error: null, promotedAt: time, ...promoted, ...(await check(tree, db, committed)), lostMs: lostMs(committed, time), target });
      } catch (err) {
        results.push(failed(procedure, err));
      }
      db.stop('fast');
    }
    if (o.procedures.includes('naive') || o.procedures.includes('rsync')) {
      let time: number | null = null;
      let setupError: unknown = null;
      try {
        servers.push(naiveDb);
        // Naive: no target, no delay: replay all the WAL received, then promote.
        await naiveDb.configure(['recovery_min_apply_delay = 0']);
        naiveDb.start();
        let lsn = '';
        let still = Date.now();
        await until('replay of all received WAL', async () => {
          const [row] = await naiveDb.query<{ lsn: string }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
          if (row?.lsn !== lsn) {
            lsn = row?.lsn ?? '';
            still = Date.now();
          }
          return Date.now() - still > 2000;
        }, 120_000);
        await naiveDb.query('SELECT pg_promote(true, 60)');
        time = await promotedAt(naiveDb);
        if (time === null) throw new Error('the promoted DB has no last transaction time');
      } catch (err) {
        setupError = err;
      }
      if (o.procedures.includes('naive')) {
        if (setupError !== null || time === null) results.push(failed('naive', setupError));
        else {
          try {
            const promoted = await promoteTree(naiveTree, naiveDb, time, o);
            results.push({ procedure: 'naive', error: null, promotedAt: time, ...promoted, ...(await check(naiveTree, naiveDb, committed)), lostMs: lostMs(committed, time), target: 'latest WAL' });
          } catch (err) {
            results.push(failed('naive', err));
          }
        }
      }
      if (o.procedures.includes('rsync')) {
        if (setupError !== null) results.push(failed('rsync', setupError));
        else {
          try {
            results.push({ procedure: 'rsync', error: null, promotedAt: time, quarantined: 0, keptReferenced: 0, ...(await check(rsyncDst, naiveDb, committed)), lostMs: lostMs(committed, time as number), target: 'latest WAL' });
          } catch (err) {
            results.push(failed('rsync', err));
          }
        }
      }
    }
    return {
      seed: o.seed, killAfterMs, killedAt, committed: committed.ids.size, uploads: committed.uploads, gcs: committed.gcs, watermark, recoveryTarget,
      recoveryTargetLsn, recoveryTargetLsnAt, skewMs, skewSource, results,
    };
  } finally {
    await stopAll();
    stopServers(servers);
    if (process.env.DRILL_KEEP === '1') o.say(`  kept ${dir} (DRILL_KEEP=1)`);
    else await rm(dir, { recursive: true, force: true });
  }
}
