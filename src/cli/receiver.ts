import { resolve } from 'node:path';
import { resolveStateDir } from '../statedir.js';
import { UsageError } from '../errors.js';
import { COMMON_HELP, commandLogger, parseFlags, parseInteger, parseListen, readToken, required, STOP_SIGNALS } from './args.js';
import { TIME_HELP, TIME_OPTIONS, gateTimes } from './gate-options.js';
import { checkPostgresUrl } from '../gate/pg.js';
import { SERVER_TLS_OPTIONS, serverTls } from './tls.js';
import { localNames } from '../owner/names.js';
import { ownerPolicy, parseChown } from '../owner/policy.js';
import { systemdNotifier } from '../notify.js';

export const RECEIVER_HELP = `Usage: warmsync receiver --root DIR --listen HOST:PORT [options]

Runs on the standby. Accepts one authenticated agent at a time, writes every file atomically
(temporary name, checksum verified, fsynced, renamed) and records it in the manifest
(STATE_DIR/manifest.sqlite). Deletions are recorded as tombstones and stay on disk until
\`warmsync snapshot\` allows them.

Options:
  --root DIR           the standby tree (must exist)
  --listen HOST:PORT   where to accept agents; port 0 picks a free one. Prints
                       "listening on ws://HOST:PORT" on stdout once ready
  --tls-cert FILE      serve wss:// (and the HTTP endpoints over https) with this PEM
  --tls-key FILE       certificate (chain) and its private key; agents then need a
                       wss:// URL and --ca or --tls-fingerprint (or a publicly trusted cert)
  --token-file F       file holding the shared secret (default: $WARMSYNC_TOKEN)
  --state-dir DIR      manifest and recovery data (default: ROOT/.warmsync, never synced)
  --numeric-ids        keep owners and groups by number, as rsync --numeric-ids (default:
                       by name, mapped to this host's ids; by number where a name is missing)
  --chown USER:GROUP   give everything written this user and/or group (USER, USER: or
                       :GROUP; names or numbers), as rsync --chown. Owners need the receiver
                       to run as root (or with CAP_CHOWN); otherwise everything keeps the
                       receiver's own user, and it says so once at start-up
  --snapshot-cmd CMD   run CMD (with /bin/sh) every --snapshot-interval seconds; its stdout
                       is the standby DB's snapshot time, applied like \`warmsync snapshot\`.
                       PostgreSQL: psql -XAtc "SELECT pg_last_xact_replay_timestamp()"
  --snapshot-source URL   instead of --snapshot-cmd, for a PostgreSQL standby: reads
                       pg_last_xact_replay_timestamp() at postgres://USER@HOST:PORT/DB every
                       --snapshot-interval seconds (password: in the URL or ~/.pgpass). An
                       idle primary keeps T still (safe; add a heartbeat: docs/failover.md)
  --snapshot-interval SEC   default 60; a run is killed (or a query abandoned) after
                       min(SEC, 30) seconds
${TIME_HELP}
${COMMON_HELP}

HTTP on the same port: GET /healthz (liveness, safe/unsafe) and GET /metrics (Prometheus text;
send the token as "Authorization: Bearer TOKEN").

Stops cleanly on SIGTERM, SIGINT or SIGHUP (exit 0).`;

export async function receiverCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('receiver', argv, {
    root: { type: 'string' }, listen: { type: 'string' }, 'token-file': { type: 'string' }, 'state-dir': { type: 'string' },
    'snapshot-cmd': { type: 'string' }, 'snapshot-source': { type: 'string' }, 'snapshot-interval': { type: 'string' }, ...TIME_OPTIONS, ...SERVER_TLS_OPTIONS,
    'numeric-ids': { type: 'boolean' }, chown: { type: 'string' },
  }, RECEIVER_HELP);
  if (flags === null) return 0;
  const log = commandLogger(flags);
  const root = resolve(required('receiver', 'root', flags.root));
  const { host, port } = parseListen(required('receiver', 'listen', flags.listen));
  const stateDir = resolveStateDir(root, flags['state-dir']);
  const times = gateTimes(flags);
  const command = flags['snapshot-cmd'];
  const postgresUrl = flags['snapshot-source'];
  if (command !== undefined && postgresUrl !== undefined) {
    throw new UsageError('BAD_FLAG', 'receiver: give --snapshot-cmd or --snapshot-source, not both');
  }
  if (flags['snapshot-interval'] !== undefined && command === undefined && postgresUrl === undefined) {
    throw new UsageError('BAD_FLAG', 'receiver: --snapshot-interval needs --snapshot-cmd or --snapshot-source');
  }
  if (postgresUrl !== undefined) checkPostgresUrl('snapshot-source', postgresUrl);
  const intervalSec = parseInteger('snapshot-interval', flags['snapshot-interval'], 60, 1, 86_400);
  const spec = command !== undefined ? { command } : postgresUrl !== undefined ? { postgresUrl } : null;
  const snapshotSource = spec === null ? null : { spec, intervalMs: intervalSec * 1000 };
  const token = readToken('receiver', flags['token-file'], log);
  const tls = serverTls(flags);
  const forced = flags.chown === undefined ? { uid: null, gid: null } : parseChown(flags.chown, localNames());
  const owners = ownerPolicy({ numericIds: flags['numeric-ids'] === true, forceUid: forced.uid, forceGid: forced.gid });

  // Loaded here, not at the top: --help and bad flags do not pay for the server and prom-client.
  const { startReceiver } = await import('../receiver/receiver.js');
  // Before anything starts a child: it takes $NOTIFY_SOCKET out of the environment.
  const notify = systemdNotifier(log);
  const receiver = await startReceiver({ root, stateDir, host, port, token, log, times, snapshotSource, tls, owners });
  // Caught from before anyone hears "listening" or READY=1: a SIGTERM right after them (a script,
  // `systemctl stop`; or a SIGHUP) must stop the receiver cleanly, not kill it mid-way by the default action.
  const stopSignal = new Promise<NodeJS.Signals>((resolveSignal) => {
    for (const signal of STOP_SIGNALS) process.once(signal, () => resolveSignal(signal));
  });
  process.stdout.write(`listening on ${receiver.url}\n`);
  log.info(`receiver on ${root}, state in ${stateDir.abs}`);
  notify.followStatus(() => receiver.statusLine());
  notify.ready();
  const signal = await stopSignal;
  log.info(`${signal}: stopping`);
  notify.stopping();
  await receiver.stop();
  return 0;
}
