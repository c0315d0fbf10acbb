import { UsageError } from '../errors.js';
import { GateExecutor } from '../gate/executor.js';
import { futureSnapshotProblem, snapshotAheadBy } from '../gate/policy.js';
import { formatTime } from '../time.js';
import { COMMON_HELP, parseFlags, parseTimeFlag, required } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, TIME_HELP, TIME_OPTIONS, gateTimes, print, withRoot } from './gate-options.js';

export const SNAPSHOT_HELP = `Usage: warmsync snapshot --root DIR --time T [options]

Records the standby database's snapshot time T (the time of the last transaction it has
replayed, on the active's clock) and removes from the standby every file whose deletion the DB
at T can no longer need: deleted at D with D + skew + delete-grace <= T. T never moves
backwards: an older T is reported and ignored. Safe to run while the receiver runs.

A T later than this host's clock plus skew is refused (SNAPSHOT_FUTURE, exit 2): it would apply
every tombstone at once and hide every later true T. --force records it anyway.

--correct records T even when it is older than the recorded one, to repair a wrong T: from then
on deletions are held against the corrected T again. It cannot bring back files the gate already
removed under the wrong T (they are listed, from the manifest's removals log, as "gone for
good"); it changes nothing else.

T: ISO 8601 with a zone (2026-11-26T15:04:05.123Z), PostgreSQL's form
(2026-11-26 15:04:05.123+00, as printed by SELECT pg_last_xact_replay_timestamp()), or epoch ms.

Options:
  --time T             the DB snapshot time
  --correct            record T even if older than the recorded T (undo a wrong T; files
                       already removed under it stay removed)
  --force              accept a T later than this host's clock plus skew
${TIME_HELP}
${ROOT_HELP}
${COMMON_HELP}`;

export async function snapshotCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('snapshot', argv, {
    ...ROOT_OPTIONS, ...TIME_OPTIONS, time: { type: 'string' }, correct: { type: 'boolean' }, force: { type: 'boolean' },
  }, SNAPSHOT_HELP);
  if (flags === null) return 0;
  const time = parseTimeFlag('time', required('snapshot', 'time', flags.time));
  const times = gateTimes(flags);
  const now = Date.now();
  const ahead = snapshotAheadBy(time, now, times.skewMs);
  if (ahead !== null && flags.force !== true) {
    throw new UsageError('SNAPSHOT_FUTURE', `--time: ${futureSnapshotProblem(time, now, ahead)}; nothing changed (--force records it anyway)`);
  }
  const correct = flags.correct ?? false;
  return withRoot('snapshot', flags, async ({ root, stateDir, manifest, log }) => {
    if (ahead !== null) log.warn('SNAPSHOT_FUTURE', `--force: recording ${futureSnapshotProblem(time, now, ahead)}`);
    const outcome = await new GateExecutor(manifest, root, stateDir, log).applySnapshot(time, times, { correct });
    if (correct) {
      const gone = outcome.unrecoverable ?? [];
      const lines = [
        `snapshot time ${formatTime(outcome.snapshotTime)} (corrected; was ${formatTime(outcome.previous)})`,
        ...outcome.removed.map((r) => `removed ${r.path}`),
        ...outcome.held.map((h) => `kept ${h.path}: ${h.why}`),
        ...gone.map((g) => `gone for good ${g.path}: removed at ${formatTime(g.removedAt)} under snapshot ${formatTime(g.snapshotTime)}`),
        `${outcome.removed.length} removed, ${outcome.pending} tombstone(s) still held; ${gone.length} file(s) removed under a later T cannot be brought back by warmsync`,
      ];
      print(flags.json, { ...outcome, corrected: true, removed: outcome.removed.map((r) => r.path), unrecoverable: gone }, lines.join('\n'));
      return 0;
    }
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
