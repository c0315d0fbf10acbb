/**
 * Command dispatch. Every failure becomes one line on stderr, `warmsync: CODE: message`, and an exit
 * code: 2 for bad usage or bad input files, 1 for everything else. Stack traces only with --debug.
 */
import { readFileSync } from 'node:fs';
import { UsageError, WarmsyncError } from '../errors.js';
type Command = (argv: string[]) => Promise<number>;

/** Loaded on demand: a command pays only for its own imports at start-up. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  receiver: async () => (await import('./receiver.js')).receiverCommand,
  agent: async () => (await import('./agent.js')).agentCommand,
  snapshot: async () => (await import('./snapshot.js')).snapshotCommand,
  promote: async () => (await import('./promote.js')).promoteCommand,
  restore: async () => (await import('./restore.js')).restoreCommand,
  status: async () => (await import('./status.js')).statusCommand,
  verify: async () => (await import('./verify.js')).verifyCommand,
  failover: async () => (await import('./failover.js')).failoverCommand,
};

export const MAIN_HELP = `Usage: warmsync COMMAND [options]

Keeps a warm standby copy of a server's data directories, gated by the standby database's
snapshot time so that a promoted standby never references a binary it lacks.

Commands:
  receiver   on the standby: accept an agent, apply changes atomically, keep the manifest
  agent      on the active server: scan, hash and send changes (--once: like a cron'd rsync)
  snapshot   record the standby DB's snapshot time; remove the deletions it allows
  status     is failing over now safe? counts, T, W, recovery target, tombstones
  verify     re-hash the standby against the manifest; exit 1 on any difference
  promote    at failover: quarantine files the promoted DB cannot reference
  restore    undo a promotion's quarantine
  failover   at failover: the PostgreSQL recovery target W - skew (prints or applies it)

Run \`warmsync COMMAND --help\` for a command's options; every command also reads them from
--config FILE (JSON or YAML). Also: warmsync --version.

Exit status: 0 success; 1 failure (or verify found differences); 2 bad usage or input file.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const debug = argv.includes('--debug');
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(MAIN_HELP + '\n');
      return command === undefined ? 2 : 0;
    }
    if (command === '--version' || command === '-V') {
      process.stdout.write(`warmsync ${version()}\n`);
      return 0;
    }
    const load = COMMANDS[command];
    if (load === undefined) throw new UsageError('BAD_COMMAND', `unknown command ${JSON.stringify(command)}; commands: ${Object.keys(COMMANDS).join(', ')}`);
    return await (await load())(rest);
  } catch (err) {
    if (err instanceof WarmsyncError) {
      process.stderr.write(`warmsync: ${err.code}: ${err.message}\n`);
      if (debug && err.stack) process.stderr.write(err.stack + '\n');
      return err instanceof UsageError ? 2 : 1;
    }
    process.stderr.write(`warmsync: INTERNAL: ${err instanceof Error ? err.message : String(err)} (rerun with --debug for details)\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    return 1;
  }
}
