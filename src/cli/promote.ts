import { GateExecutor } from '../gate/executor.js';
import { checkPostgresUrl, classifyPgError, redactUrl, withPg } from '../gate/pg.js';
import { splitByReferences } from '../gate/references.js';
import { failoverVerdict } from '../gate/policy.js';
import { standbyLack } from '../gate/standby-root.js';
import { UsageError, WarmsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { runningReceiver } from '../receiver/lock.js';
import { formatTime } from '../time.js';
import { COMMON_HELP, parseFlags, parseTimeFlag, required } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, TIME_HELP, TIME_OPTIONS, gateTimes, print, withRoot } from './gate-options.js';

const DEFAULT_QUERY = 'SELECT sha1 FROM binaries';

export const PROMOTE_HELP = `Usage: warmsync promote --root DIR --time T [--references URL] [--dry-run] [--purge] [options]

The failover step, run after the standby DB has been promoted and before the application
starts. T is the promoted DB's last transaction time. Moves out of the tree every file the DB
at T cannot reference:
  - files born (first written on the active) after T + skew, and
  - files deleted on the source at D with D + skew + delete-grace <= T.
They go to STATE_DIR/quarantine/ID/ under their relative paths, with a report.json; undo with
\`warmsync restore --root DIR --id ID\`. --purge deletes them instead.

Crash-safe: the whole plan is written to report.json before anything moves. If promote is
killed, run the same command again: it finishes that promotion (same ID) from its journal (a
different --time is refused with PROMOTE_PENDING), or undo it with \`warmsync restore\`.

With --references, the promoted DB is asked which binaries it references, and a path whose file
name is one of them stays whatever the times say: only unreferenced files move (the reversible,
before-start equivalent of Artifactory's "Prune Unreferenced Data" for what the gate picked).

Refuses while an agent is connected to a running receiver on this root (stop the agent side
first). Warns loudly when the watermark W is behind T + skew: the filestore may lack binaries
the DB references (the DB should have been recovered only up to the recovery target).

Options:
  --time T             the promoted DB's snapshot time (formats as for snapshot)
  --dry-run            list what would move; change nothing
  --purge              delete instead of quarantining
  --references URL     the promoted DB (postgres://USER@HOST:PORT/DB); nothing moves if it
                       cannot be read
  --query SQL          what --references runs; its first column holds file names
                       (default: ${DEFAULT_QUERY})
${TIME_HELP}
${ROOT_HELP}
${COMMON_HELP}`;

/** The first column of `query`'s rows on the promoted DB, as a set of file names. */
async function readReferences(url: string, query: string, log: Logger): Promise<Set<string>> {
  try {
    const rows = await withPg(url, 60_000, async (client) => (await client.query<unknown[]>({ text: query, rowMode: 'array' })).rows);
    const names = new Set(rows.map((r) => String(r[0])));
    log.info(`the promoted DB at ${redactUrl(url)} references ${names.size} file name(s)`);
    if (names.size === 0) log.warn('NO_REFERENCES', `${JSON.stringify(query)} returned no rows: is --references the promoted application DB?`);
    return names;
  } catch (err) {
    const { code, problem } = classifyPgError(err, `--references ${redactUrl(url)}`);
    throw new WarmsyncError(code, `${problem}; nothing changed`);
  }
}

export async function promoteCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('promote', argv, {
    ...ROOT_OPTIONS, ...TIME_OPTIONS, time: { type: 'string' }, 'dry-run': { type: 'boolean' }, purge: { type: 'boolean' },
    references: { type: 'string' }, query: { type: 'string' },
  }, PROMOTE_HELP);
  if (flags === null) return 0;
  if (flags.query !== undefined && flags.references === undefined) throw new UsageError('BAD_FLAG', 'promote: --query needs --references');
  if (flags.references !== undefined) checkPostgresUrl('references', flags.references);
  const time = parseTimeFlag('time', required('promote', 'time', flags.time));
  const times = gateTimes(flags);
  return withRoot('promote', flags, async ({ root, stateDir, manifest, log }) => {
    const pid = runningReceiver(stateDir.abs);
    if (pid !== null && manifest.getNumber('agentConnected') === 1) {
      throw new WarmsyncError('AGENT_CONNECTED', `an agent is connected to the receiver (pid ${pid}) on this root; stop the agent (or the receiver) before promoting`);
    }
    const verdict = failoverVerdict(time, manifest.getNumber('watermark'), times.skewMs, null, standbyLack(root, manifest, pid !== null));
    if (!verdict.safe) {
      log.warn('FILESTORE_BEHIND', `UNSAFE: ${verdict.reason}. The promoted DB may reference binaries this standby does not have; recovery target was ${formatTime(verdict.recoveryTarget)}`);
    }
    const executor = new GateExecutor(manifest, root, stateDir, log);
    const referenced = flags.references === undefined ? null : await readReferences(flags.references, flags.query ?? DEFAULT_QUERY, log);
    if (flags['dry-run']) {
      const pending = await executor.unfinishedPromotion();
      if (pending !== null) {
        log.warn('PROMOTE_PENDING', `the promotion ${pending.id} at T ${formatTime(pending.snapshotTime)} was interrupted: promote with that T finishes it (this plan is not what it would do), restore --id ${pending.id} undoes it`);
      }
      const { move: plan, keep } = splitByReferences(executor.planPromotion(time, times), referenced);
      const lines = [
        ...plan.map((p) => `would ${flags.purge ? 'delete' : 'quarantine'} ${p.path}: ${p.reason}`),
        ...keep.map((p) => `would keep ${p.path}: the promoted DB references it`),
        `${plan.length} path(s); nothing changed (dry run)`,
      ];
      print(flags.json, { dryRun: true, safe: verdict.safe, snapshotTime: time, paths: plan.map((p) => ({ path: p.path, reason: p.reason })), kept: keep.map((p) => p.path) }, lines.join('\n'));
      return 0;
    }
    const outcome = await executor.promote(time, times, flags.purge ?? false, referenced);
    const lines = [
      ...(outcome.resumed ? [`finishing the interrupted promotion ${outcome.id ?? ''} from its journal`] : []),
      ...outcome.removed.map((r) => `${flags.purge ? 'deleted' : 'quarantined'} ${r.path}`),
      ...outcome.kept.map((path) => `kept ${path}: the promoted DB references it`),
      ...outcome.failed.map((f) => `FAILED ${f.path}: ${f.why}`),
      `${outcome.removed.length} path(s) ${flags.purge ? 'deleted' : `moved to ${stateDir.abs}/quarantine/${outcome.id ?? ''} (undo: warmsync restore --root ${root} --id ${outcome.id ?? ''})`}`,
    ];
    print(flags.json, { dryRun: false, safe: verdict.safe, snapshotTime: time, quarantine: outcome.id, resumed: outcome.resumed, removed: outcome.removed.map((r) => r.path), kept: outcome.kept, failed: outcome.failed }, lines.join('\n'));
    return outcome.failed.length > 0 ? 1 : 0;
  });
}
