import { resolve } from 'node:path';
import { UsageError, WarmsyncError, describeError } from '../errors.js';
import { checkPostgresUrl } from '../gate/pg.js';
import type { OnceOutcome, OnceSummary } from '../agent/agent.js';
import type { CompressSetting } from '../agent/compress.js';
import { COMPRESSION_METHODS } from '../protocol/compression.js';
import { loadFilterSources } from '../config/excludes.js';
import { DEFAULT_SAFETY } from '../plan/safety.js';
import { createProgress, progressMode } from '../progress/progress.js';
import { systemdNotifier } from '../notify.js';
import { ensureStateDir, resolveStateDir } from '../statedir.js';
import { refuseStandbySource } from './standby-guard.js';
import { CLIENT_TLS_OPTIONS, clientTls } from './tls.js';
import { commandLogger, commonHelp, parseByteRate, parseConnectUrl, parseFlags, parseInteger, parseListen, readToken, repeatedInOrder, required, STOP_SIGNALS } from './args.js';

/**
 * W's margin behind the clock for events still in the watcher's pipe: none is needed. Marks carry a
 * time no later than their change (watch/watcher.ts) and the heartbeat reads the clock before it
 * drains the queue, so every change made before W is marked by the time W is computed.
 */
const SETTLE_MS = 0;
/** How often W (and the DB positions) go to the receiver: what a crash can leave W behind by. */
const HEARTBEAT_MS = 200;
/**
 * Standbys one agent feeds, at most. Each holds a connection, a copy of its standby's manifest
 * (~300 bytes a file) and a backlog of up to 200,000 paths: a local standby plus a DR site or two
 * is the use; past a handful, a relay (a standby's own agent) scales better.
 */
export const MAX_STANDBYS = 8;
/**
 * Under systemd (Type=notify), until the first full pass is done with every standby: the start
 * timeout is pushed this far ahead every third of it. A first sync of a large tree takes hours
 * and is not a failed start; an agent whose event loop is stuck for this long is.
 */
const START_EXTEND_USEC = 90_000_000;

export const AGENT_HELP = `Usage: warmsync agent --root DIR --connect ws://HOST:PORT [--connect URL]... [--once] [options]

Runs on the active server. Scans DIR (skipping what the excludes name), hashes what changed since
its last run (xxh64; a cache in STATE_DIR avoids re-reading unchanged files), and makes the
standby match: like \`rsync -a --delete --exclude-from=F\`, except that deletions become
tombstones the standby keeps until its database has caught up (see \`warmsync snapshot\`).

Without --once it then keeps watching (the daemon to run under systemd): every change is sent
within milliseconds of its writer pausing, the watermark W goes to the receiver every second,
a lost connection is retried forever with backoff and followed by a full reconciliation, and a
full rescan runs every --rescan-interval as a safety net. SIGTERM, SIGINT or SIGHUP stops it cleanly (exit 0).

Several --connect (a local standby and a DR site): one scan, one watch and one hash per file
feed them all; each standby has its own connection, flow control, reconciliation and W, so a
slow or unreachable one holds back no other and catches up by itself when it returns. Log lines
name the standby they concern. --once syncs them all at once and exits 0 only if all matched.

Options:
  --root DIR            the source tree
  --connect URL         the receiver, ws://HOST:PORT or wss://HOST:PORT (TLS); repeatable:
                        one per standby, at most ${MAX_STANDBYS}, each once (in --config: a list)
  --ca FILE             wss://: trust the receiver certificate signed by this CA (PEM; or the
                        self-signed certificate itself). Default: the system CAs. With
                        several --connect, --ca and --tls-fingerprint apply to every wss:// one
  --tls-fingerprint FP  wss://: trust exactly the certificate with this SHA-256 fingerprint
                        (as openssl x509 -noout -fingerprint -sha256 prints it)
  --once                sync once and exit 0 when the standby matches
  --rescan-interval SEC full reconciliation this often while watching (default 600)
  --token-file F        file holding the shared secret (default: $WARMSYNC_TOKEN)
  --exclude-from F      rsync --exclude-from file, used unchanged (repeatable)
  --exclude PATTERN     one rsync exclude pattern (repeatable; "+ PATTERN" includes; "!"
                        clears every rule before it, from files and flags alike, as in rsync)
  --state-dir DIR       the agent's hash cache (default: ROOT/.warmsync, never synced).
                        A source that is, or holds, a receiver's root or state dir is
                        refused (SOURCE_IS_STANDBY) unless the excludes hide it
  --no-setuid           send regular files without their setuid and setgid bits (the
                        standby and its manifest then have them cleared; directories keep
                        theirs). Default: kept, as rsync -a does as root
  --max-delete PCT      halt, changing nothing, when a run would delete more than PCT %
                        of the standby's files (default ${DEFAULT_SAFETY.maxDeleteShare * 100}; runs deleting at most
                        ${DEFAULT_SAFETY.minDeletesToHalt} files are never halted). Watching, the same share
                        within 5 minutes holds every deletion back (MASS_DELETE, shown by
                        \`warmsync status\` on the standby) while all else keeps flowing
  --release-deletions   after checking the source: the first full pass sends every
                        deletion it finds, past --max-delete or from an emptied source
  --db-primary URL      watching: the DB primary beside this agent (postgres://USER@HOST:PORT/DB;
                        any role may read it). Every 100 ms the agent reads its WAL position
                        (pg_current_wal_lsn()) and clock, and sends them with the heartbeats: the
                        standby's \`warmsync failover\` then recovers the DB up to a position the
                        watermark covers (recovery_target_lsn: no clocks compared), and the time
                        target uses the measured clock offset instead of an assumed skew. An
                        unreachable primary is logged and retried; it never stops the agent
  --metrics-listen HOST:PORT
                        watching: serve GET /healthz (JSON: per standby, connected, W, lag,
                        queue) and GET /metrics (Prometheus; the token as a bearer header, as
                        on the receiver) there. Port 0 picks a free one (logged). Default: off
  --bwlimit RATE        at most RATE bytes per second of file data to each standby (per
                        connection, as rsync's --bwlimit is per transfer): a number with an
                        optional K, M or G suffix (binary: 12M = 12 MiB/s), at least 1K.
                        For a DR site's initial sync beside a busy application. Default: none
  --compress zstd|none  compress file data on the wire with zstd (level 3) where the receiver
                        supports it (protocol 4; an older receiver gets it uncompressed, with
                        one warning). Each file's first chunk decides: data that does not
                        shrink below 90 % (archives, images, most filestore binaries) goes
                        raw. For WAN links with text-heavy trees; on a LAN it costs CPU for
                        nothing. Default none
  --connect-attempts N  tries before giving up on an unreachable receiver (default 5)
  --json                print the summary as JSON on stdout (and no progress)
  --quiet               no progress (on a terminal a bar; otherwise a line every 5 s)
${commonHelp(24)}

Exit status: 0 the standby matches; 1 failure (nothing half-written is ever left at a final
path); 2 bad usage or a bad input file (excludes, --config, token, TLS files).`;

const AGENT_OPTIONS = {
  root: { type: 'string' }, connect: { type: 'string', multiple: true }, once: { type: 'boolean' }, 'token-file': { type: 'string' },
  'exclude-from': { type: 'string', multiple: true }, exclude: { type: 'string', multiple: true },
  'state-dir': { type: 'string' }, 'max-delete': { type: 'string' }, 'release-deletions': { type: 'boolean' }, 'connect-attempts': { type: 'string' }, 'db-primary': { type: 'string' }, json: { type: 'boolean' },
  'rescan-interval': { type: 'string' }, 'metrics-listen': { type: 'string' }, bwlimit: { type: 'string' }, quiet: { type: 'boolean' }, 'no-setuid': { type: 'boolean' },
  compress: { type: 'string' }, ...CLIENT_TLS_OPTIONS,
} as const;

export async function agentCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('agent', argv, AGENT_OPTIONS, AGENT_HELP);
  if (flags === null) return 0;
  const log = commandLogger(flags);
  const root = resolve(required('agent', 'root', flags.root));
  const urls = parseConnectUrls(flags.connect ?? []);
  const dbPrimary = flags['db-primary'];
  if (dbPrimary !== undefined) {
    checkPostgresUrl('db-primary', dbPrimary);
    if (flags.once) throw new UsageError('BAD_FLAG', 'agent: --db-primary is for the watching agent (without --once): its positions ride on the live heartbeats');
  }
  const metricsFlag = flags['metrics-listen'];
  const metricsListen = metricsFlag === undefined ? null : parseListen(metricsFlag, 'metrics-listen');
  if (metricsListen !== null && flags.once) throw new UsageError('BAD_FLAG', 'agent: --metrics-listen is for the watching agent (without --once)');
  const maxDelete = parseInteger('max-delete', flags['max-delete'], DEFAULT_SAFETY.maxDeleteShare * 100, 0, 100);
  const connectAttempts = parseInteger('connect-attempts', flags['connect-attempts'], 5, 1, 1000);
  const bwlimit = flags.bwlimit === undefined ? null : parseByteRate('bwlimit', flags.bwlimit, 1024);
  const compress = parseCompress(flags.compress);
  // In command-line order, like rsync: the first matching rule wins.
  // A "!" clears every rule before it, from any file or flag; every bad line is reported at once.
  const rules = await loadFilterSources(repeatedInOrder(flags, ['exclude', 'exclude-from'])
    .map(({ name, value }) => ({ kind: name === 'exclude' ? 'exclude' : 'exclude-from', value })));
  const stateDir = resolveStateDir(root, flags['state-dir']);
  const token = readToken('agent', flags['token-file'], log);
  await refuseStandbySource(root, stateDir, rules);

  const rescanSec = parseInteger('rescan-interval', flags['rescan-interval'], 600, 1, 7 * 86_400);
  const tls = clientTls(urls, flags);
  const progress = createProgress(progressMode(flags), log);
  const options = {
    root, urls, token, stateDir, rules, log, connectAttempts, tls, progress, safety: { ...DEFAULT_SAFETY, maxDeleteShare: maxDelete / 100 },
    releaseDeletions: flags['release-deletions'] === true, noSetuid: flags['no-setuid'] === true, bwlimit, compress,
  };
  if (!flags.once) {
    const notify = systemdNotifier(log);
    notify.extendStartup(START_EXTEND_USEC);
    const stop = new AbortController();
    const onSignal = (signal: NodeJS.Signals): void => {
      log.info(`${signal}: finishing what is in flight, then stopping`);
      notify.stopping();
      stop.abort();
    };
    for (const signal of STOP_SIGNALS) process.once(signal, onSignal);
    // Loaded here, not at the top: --help and bad flags stay fast, and --once never loads the watcher.
    const { runLive } = await import('../agent/live.js');
    const db = dbPrimary === undefined ? null : new (await import('../agent/dbprobe.js')).DbProbe(dbPrimary, log);
    try {
      await runLive({ ...options, rescanIntervalMs: rescanSec * 1000, quietMs: 2, settleMs: SETTLE_MS, heartbeatMs: HEARTBEAT_MS, db, metricsListen, notify }, stop.signal);
    } finally {
      await db?.close();
    }
    return 0;
  }
  // A missing source or an unusable state dir is the error to report, not an unreachable receiver's retries.
  await (await import('../scan/openfile.js')).checkSourceRoot(root);
  await ensureStateDir(stateDir);
  // Dialled before the sync engine is loaded: the handshake's round trips overlap the loading (dial-once.ts).
  const { dialStandbys } = await import('../agent/dial-once.js');
  const dialed = dialStandbys(options);
  let outcomes;
  try {
    const { runOnce } = await import('../agent/agent.js');
    outcomes = await runOnce(options, dialed);
  } finally {
    dialed.done();
  }
  const [only] = outcomes;
  if (outcomes.length === 1 && only !== undefined) {
    // One standby: the summary (or the error) exactly as before there could be several.
    if (!only.ok) throw only.error;
    process.stdout.write(flags.json ? JSON.stringify(only.summary) + '\n' : formatSummary(only.summary) + '\n');
    return 0;
  }
  process.stdout.write(flags.json ? JSON.stringify({ standbys: outcomes.map(outcomeJson) }) + '\n' : outcomes.map(formatOutcome).join('\n') + '\n');
  const failed = outcomes.filter((o) => !o.ok);
  if (failed.length > 0) {
    throw new WarmsyncError('STANDBY_FAILED', `${failed.length} of ${outcomes.length} standbys did not sync: ${failed.map((o) => o.url).join(', ')} (see above); the others did`);
  }
  return 0;
}

/**
 * The --connect URLs: at least one, each a ws:// or wss:// URL with a port, none given twice
 * (two links to one receiver would fight over its single agent session), at most MAX_STANDBYS.
 */
export function parseConnectUrls(values: readonly string[]): string[] {
  if (values.length === 0) throw new UsageError('MISSING_FLAG', 'agent: --connect is required (see warmsync agent --help)');
  if (values.length > MAX_STANDBYS) throw new UsageError('BAD_FLAG', `agent: --connect given ${values.length} times; one agent feeds at most ${MAX_STANDBYS} standbys`);
  const seen = new Map<string, string>();
  for (const value of values) {
    parseConnectUrl(value);
    // One receiver however it is spelled: ws://H:7373 and ws://H:7373/ are the same.
    const same = new URL(value).href;
    const earlier = seen.get(same);
    if (earlier !== undefined) throw new UsageError('BAD_URL', `agent: --connect ${value} names the same receiver as ${earlier}; give each standby once`);
    seen.set(same, value);
  }
  return [...values];
}

/** --compress: "zstd", or "none" (the default) as null. */
export function parseCompress(value: string | undefined): CompressSetting {
  if (value === undefined || value === 'none') return null;
  const method = COMPRESSION_METHODS.find((m) => m === value);
  if (method === undefined) throw new UsageError('BAD_FLAG', `agent: --compress ${JSON.stringify(value)}: expected ${COMPRESSION_METHODS.join(', ')} or none`);
  return method;
}

function outcomeJson(o: OnceOutcome): object {
  if (o.ok) return { url: o.url, ok: true, ...o.summary };
  const code = o.error instanceof WarmsyncError ? o.error.code : 'FAILED';
  return { url: o.url, ok: false, code, message: describeError(o.error) };
}

function formatOutcome(o: OnceOutcome): string {
  if (o.ok) return `${o.url}: ${formatSummary(o.summary)}`;
  return `${o.url}: failed: ${o.error instanceof WarmsyncError ? `${o.error.code}: ` : ''}${describeError(o.error)}`;
}

function formatSummary(s: OnceSummary): string {
  const wire = s.wireBytesSent === s.bytesSent ? '' : `, ${s.wireBytesSent} on the wire`;
  return `synced: ${s.filesScanned} files scanned (${s.hashed} hashed), ${s.filesSent} sent (${s.bytesSent} bytes${wire}), `
    + `${s.skippedUnchanged} unchanged, ${s.metaUpdates} metadata-only, ${s.tombstones} deletions held as tombstones, `
    + `${s.elapsedMs} ms`;
}
