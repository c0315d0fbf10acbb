import { resolve } from 'node:path';
import { createLogger } from '../log.js';
import { startReceiver } from '../receiver/receiver.js';
import { resolveStateDir } from '../statedir.js';
import { parseFlags, parseListen, parseLogLevel, readToken, required } from './args.js';

export const RECEIVER_HELP = `Usage: warmsync receiver --root DIR --listen HOST:PORT [options]

Runs on the standby. Accepts one authenticated agent at a time, writes every file atomically
(temporary name, checksum verified, fsynced, renamed) and records it in the manifest
(STATE_DIR/manifest.sqlite). Deletions are recorded as tombstones and stay on disk until
\`warmsync snapshot\` allows them.

Options:
  --root DIR           the standby tree (must exist)
  --listen HOST:PORT   where to accept agents; port 0 picks a free one. Prints
                       "listening on ws://HOST:PORT" on stdout once ready
  --token-file F       file holding the shared secret (default: $WARMSYNC_TOKEN)
  --state-dir DIR      manifest and recovery data (default: ROOT/.warmsync, never synced)
  --log-level LEVEL    debug, info (default), warn, error, silent
  --debug              print stack traces for unexpected errors
  -h, --help           this text

Stops cleanly on SIGTERM or SIGINT (exit 0).`;

export async function receiverCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('receiver', argv, {
    root: { type: 'string' }, listen: { type: 'string' }, 'token-file': { type: 'string' }, 'state-dir': { type: 'string' },
  });
  if (flags.help) {
    process.stdout.write(RECEIVER_HELP + '\n');
    return 0;
  }
  const log = createLogger(parseLogLevel(flags['log-level']));
  const root = resolve(required('receiver', 'root', flags.root));
  const { host, port } = parseListen(required('receiver', 'listen', flags.listen));
  const stateDir = resolveStateDir(root, flags['state-dir']);
  const token = readToken('receiver', flags['token-file'], log);

  const receiver = await startReceiver({ root, stateDir, host, port, token, log });
  process.stdout.write(`listening on ${receiver.url}\n`);
  log.info(`receiver on ${root}, state in ${stateDir.abs}`);
  const signal = await new Promise<NodeJS.Signals>((resolveSignal) => {
    process.once('SIGTERM', () => resolveSignal('SIGTERM'));
    process.once('SIGINT', () => resolveSignal('SIGINT'));
  });
  log.info(`${signal}: stopping`);
  await receiver.stop();
  return 0;
}
