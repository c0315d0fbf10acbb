import { GateExecutor } from '../gate/executor.js';
import { formatTime } from '../time.js';
import { COMMON_HELP, parseFlags, parseTimeFlag, required } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, TIME_HELP, TIME_OPTIONS, gateTimes, print, withRoot } from './gate-options.js';

export const SNAPSHOT_HELP = `Usage: warmsync snapshot --root DIR --time T [options]

Records the standby database's snapshot time T (the time of the last transaction it has
replayed, on the active's clock) and removes from the standby every file whose deletion the DB
at T can no longer need: deleted at D with D + skew + delete-grace <= T. T never moves
backwards: an older T is reported and ignored. Safe to run while the receiver runs.

T: ISO 8601 with a zone (2026-11-26T15:04:05.123Z), PostgreSQL's form
(2026-11-26 15:04:05.123+00, as printed by SELECT pg_last_xact_replay_timestamp()), or epoch ms.

Options:
  --time T             the DB snapshot time
${TIME_HELP}
${ROOT_HELP}
${COMMON_HELP}`;

export async function snapshotCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('snapshot', argv, { ...ROOT_OPTIONS, ...TIME_OPTIONS, time: { type: 'string' } }, SNAPSHOT_HELP);
  if (flags === null) return 0;
  const time = parseTimeFlag('time', required('snapshot', 'time', flags.time));
  const times = gateTimes(flags);
  return withRoot('snapshot', flags, async ({ root, stateDir, manifest, log }) => {
    const outcome = await new GateExecutor(manifest, root, stateDir, log).applySnapshot(time, times);
    if (!outcome.advanced) {
      log.warn('SNAPSHOT_OLDER', `--time ${formatTime(time)} is older than the recorded snapshot ${formatTime(outcome.previous)}; kept the recorded one`);
    }
    const lines = [
      `snapshot time ${formatTime(outcome.snapshotTime)}${outcome.advanced ? '' : ' (unchanged: the given time was older)'}`,
      ...outcome.removed.map((r) => `removed ${r.path}`),
      ...outcome.held.map((h) => `kept ${h.path}: ${h.why}`),
      `${outcome.removed.length} removed, ${outcome.pending} tombstone(s) still held`,
    ];
    print(flags.json, { ...outcome, removed: outcome.removed.map((r) => r.path) }, lines.join('\n'));
    return 0;
  });
}
