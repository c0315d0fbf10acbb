import { GateExecutor } from '../gate/executor.js';
import { failoverVerdict } from '../gate/policy.js';
import { WarmsyncError } from '../errors.js';
import { runningReceiver } from '../receiver/lock.js';
import { formatTime } from '../time.js';
import { COMMON_HELP, parseFlags, parseTimeFlag, required } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, TIME_HELP, TIME_OPTIONS, gateTimes, print, withRoot } from './gate-options.js';

export const PROMOTE_HELP = `Usage: warmsync promote --root DIR --time T [--dry-run] [--purge] [options]

The failover step, run after the standby DB has been promoted and before the application
starts. T is the promoted DB's last transaction time. Moves out of the tree every file the DB
at T cannot reference:
  - files born (first written on the active) after T + skew, and
  - files deleted on the source at D with D + skew + delete-grace <= T.
They go to STATE_DIR/quarantine/ID/ under their relative paths, with a report.json; undo with
\`warmsync restore --root DIR --id ID\`. --purge deletes them instead.

Refuses while an agent is connected to a running receiver on this root (stop the agent side
first). Warns loudly when the watermark W is behind T + skew: the filestore may lack binaries
the DB references (the DB should have been recovered only up to the recovery target).

Options:
  --time T             the promoted DB's snapshot time (formats as for snapshot)
  --dry-run            list what would move; change nothing
  --purge              delete instead of quarantining
${TIME_HELP}
${ROOT_HELP}
${COMMON_HELP}`;

export async function promoteCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('promote', argv, {
    ...ROOT_OPTIONS, ...TIME_OPTIONS, time: { type: 'string' }, 'dry-run': { type: 'boolean' }, purge: { type: 'boolean' },
  }, PROMOTE_HELP);
  if (flags === null) return 0;
  const time = parseTimeFlag('time', required('promote', 'time', flags.time));
  const times = gateTimes(flags);
  return withRoot('promote', flags, async ({ root, stateDir, manifest, log }) => {
    const pid = runningReceiver(stateDir.abs);
    if (pid !== null && manifest.getNumber('agentConnected') === 1) {
      throw new WarmsyncError('AGENT_CONNECTED', `an agent is connected to the receiver (pid ${pid}) on this root; stop the agent (or the receiver) before promoting`);
    }
    const verdict = failoverVerdict(time, manifest.getNumber('watermark'), times.skewMs);
    if (!verdict.safe) {
      log.warn('FILESTORE_BEHIND', `UNSAFE: ${verdict.reason}. The promoted DB may reference binaries this standby does not have; recovery target was ${formatTime(verdict.recoveryTarget)}`);
    }
    const executor = new GateExecutor(manifest, root, stateDir, log);
    if (flags['dry-run']) {
      const plan = executor.planPromotion(time, times);
      const lines = [...plan.map((p) => `would ${flags.purge ? 'delete' : 'quarantine'} ${p.path}: ${p.reason}`), `${plan.length} path(s); nothing changed (dry run)`];
      print(flags.json, { dryRun: true, safe: verdict.safe, snapshotTime: time, paths: plan.map((p) => ({ path: p.path, reason: p.reason })) }, lines.join('\n'));
      return 0;
    }
    const outcome = await executor.promote(time, times, flags.purge ?? false);
    const lines = [
      ...outcome.removed.map((r) => `${flags.purge ? 'deleted' : 'quarantined'} ${r.path}`),
      ...outcome.failed.map((f) => `FAILED ${f.path}: ${f.why}`),
      `${outcome.removed.length} path(s) ${flags.purge ? 'deleted' : `moved to ${stateDir.abs}/quarantine/${outcome.id ?? ''} (undo: warmsync restore --root ${root} --id ${outcome.id ?? ''})`}`,
    ];
    print(flags.json, { dryRun: false, safe: verdict.safe, snapshotTime: time, quarantine: outcome.id, removed: outcome.removed.map((r) => r.path), failed: outcome.failed }, lines.join('\n'));
    return outcome.failed.length > 0 ? 1 : 0;
  });
}
