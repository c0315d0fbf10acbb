import { GateExecutor } from '../gate/executor.js';
import { WarmsyncError } from '../errors.js';
import { COMMON_HELP, parseFlags } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, print, withRoot } from './gate-options.js';

export const RESTORE_HELP = `Usage: warmsync restore --root DIR [--id ID] [--list]

Undoes a promotion's quarantine: moves its files back to their paths and records them in the
manifest again (with their original born times). Paths that are occupied again are skipped
and named. Without --id, restores the latest quarantine.

Also undoes a promotion that was interrupted (killed): what it had moved goes back, and promote
will not resume it. Crash-safe: the paths to move back are journaled first; if restore is
killed, run it again to finish.

Options:
  --id ID              the quarantine (a directory name under STATE_DIR/quarantine/)
  --list               list the quarantines and exit
${ROOT_HELP}
${COMMON_HELP}`;

export async function restoreCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('restore', argv, { ...ROOT_OPTIONS, id: { type: 'string' }, list: { type: 'boolean' } }, RESTORE_HELP);
  if (flags === null) return 0;
  return withRoot('restore', flags, async ({ root, stateDir, manifest, log }) => {
    const executor = new GateExecutor(manifest, root, stateDir, log);
    const ids = await executor.quarantines();
    if (flags.list) {
      print(flags.json, { quarantines: ids }, ids.length === 0 ? 'no quarantines' : ids.join('\n'));
      return 0;
    }
    const id = flags.id ?? ids.at(-1);
    if (id === undefined) throw new WarmsyncError('NO_QUARANTINE', `no quarantine under ${stateDir.abs}/quarantine`);
    if (!ids.includes(id)) throw new WarmsyncError('NO_QUARANTINE', `no quarantine ${JSON.stringify(id)}; have: ${ids.join(', ') || 'none'}`);
    const outcome = await executor.restore(id);
    const lines = [...outcome.restored.map((p) => `restored ${p}`), ...outcome.skipped.map((s) => `skipped ${s.path}: ${s.why}`), `${outcome.restored.length} restored, ${outcome.skipped.length} skipped`];
    print(flags.json, { id, ...outcome }, lines.join('\n'));
    return 0;
  });
}
