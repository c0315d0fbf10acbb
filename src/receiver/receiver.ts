/**
 * The receiver process: owns the standby root and its manifest, listens for one agent at a time.
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { WarmsyncError, describeError } from '../errors.js';
import { GateExecutor } from '../gate/executor.js';
import { failoverVerdict, type FailoverVerdict, type GateTimes } from '../gate/policy.js';
import { lostStandbyRoot, mountedBelow, recordedRoot, rootIdentity, standbyLack } from '../gate/standby-root.js';
import { skewInForce } from '../gate/dbposition.js';
import { verdictLine } from '../gate/status.js';
import { openSnapshotSource, startSnapshotPoller, type SnapshotPoller, type SnapshotSourceSpec } from '../gate/poller.js';
import type { Owner } from '../entry.js';
import type { Logger } from '../log.js';
import { Manifest } from '../manifest/manifest.js';
import { localNames } from '../owner/names.js';
import { CAP_MKNOD, hasCapability, ownerPolicy, policyToText, targetIds, type OwnerPolicy, type TargetIds } from '../owner/policy.js';
import { createHasher } from '../scan/hash.js';
import { ensureStateDir, type StateDir } from '../statedir.js';
import { startServer, type ServerTls } from '../transport/server.js';
import { ConfinedRoot } from '../confined/root.js';
import { TreeWriter } from './apply.js';
import { createHttpHandler, createMetrics } from './http.js';
import { acquireReceiverLock } from './lock.js';
import { PartialStore } from './partials.js';
import { refuseEmptiedManifest, removeLeftoverTemps } from './recover.js';
import { ReceiverSession, type SessionLimits } from './session.js';

export interface ReceiverOptions {
  readonly root: string;
  readonly stateDir: StateDir;
  readonly host: string;
  readonly port: number;
  readonly token: string;
  readonly log: Logger;
  readonly times: GateTimes;
  /** Serve wss:// (and https://) with this certificate and key. */
  readonly tls?: ServerTls | null;
  /** --snapshot-cmd or --snapshot-source and the interval; null when the snapshot time comes from `warmsync snapshot`. */
  readonly snapshotSource: { readonly spec: SnapshotSourceSpec; readonly intervalMs: number } | null;
  /**
   * Whose files are written (src/owner/policy.ts): --numeric-ids, --chown, and whether this process
   * may chown. @default owners kept by name if this process may chown (ownerPolicy())
   */
  readonly owners?: OwnerPolicy;
}

export interface RunningReceiver {
  readonly url: string;
  /** The state in one line (systemd's STATUS=): the verdict as `warmsync status` gives it, and the agent's presence. */
  statusLine(): string;
  stop(): Promise<void>;
}

/**
 * File data the agent may have sent and not had credited. 8 MiB covers a link of 100 MB/s at 80 ms
 * round trip; 32 MiB gave no faster single 512 MiB file here and, with chunks waiting for their
 * file's create, left the receiver at 208-212 MB peak RSS on a 20k-file first sync (157 MB at 8).
 */
const WINDOW_BYTES = 8 << 20;
/**
 * The most an agent may grow its window to when its measured round trip and rate call for more
 * (agent/pacing.ts): 64 MiB fills 1 Gbit/s at 250 ms. Only a long fat link gets there, and the
 * memory it can cost here (chunks waiting for their write) stays bounded by it.
 */
const WINDOW_MAX_BYTES = 64 << 20;
const LIMITS: SessionLimits = { maxInFlight: 64, commitOps: 512, commitBytes: 64 << 20, commitDelayMs: 2 };

export async function startReceiver(options: ReceiverOptions): Promise<RunningReceiver> {
  const { root, stateDir, log } = options;
  const rootStat = await stat(root).catch(() => null);
  if (rootStat === null) throw new WarmsyncError('ROOT_MISSING', `receiver root ${root} does not exist; create it first`);
  if (!rootStat.isDirectory()) throw new WarmsyncError('ROOT_NOT_DIR', `receiver root ${root} is not a directory`);
  await ensureStateDir(stateDir);

  const lock = await acquireReceiverLock(root, stateDir.abs);
  let manifest: Manifest;
  // The root and the state dir, each open once: every write below them is resolved beneath these.
  let tree: ConfinedRoot | null = null;
  let state: ConfinedRoot | null = null;
  try {
    tree = ConfinedRoot.open(root, stateDir.relToRoot);
    state = ConfinedRoot.open(stateDir.abs);
    if (lock.crashed) {
      const removed = removeLeftoverTemps(tree);
      log.warn('RECOVERED', `the previous receiver did not stop cleanly; removed ${removed} temporary file(s)`);
    }
    await refuseEmptiedManifest(root, stateDir.abs);
    manifest = Manifest.open(stateDir.abs, { check: true });
  } catch (err) {
    tree?.close();
    state?.close();
    lock.release();
    throw err;
  }
  const confinedRoot = tree;
  const confinedState = state;
  manifest.setState('agentConnected', 0);
  manifest.setState('receiverPid', process.pid);
  // status and promote judge safety with the skew the receiver runs with.
  manifest.setState('skewMs', options.times.skewMs);
  manifest.setState('deleteGraceMs', options.times.deleteGraceMs);
  // What status reports too: the skew last recorded (by this receiver, or a later `snapshot --skew`).
  const skewMs = (): number => manifest.getNumber('skewMs') ?? options.times.skewMs;
  // What every verdict checks the root's path against (gate/standby-root.ts). The file systems
  // mounted below it add up over the starts: one that did not mount this time is still expected
  // (only `verify`, having checked every file, records the layout afresh).
  manifest.setState('rootIdentity', rootIdentity(confinedRoot.stat()));
  manifest.setState('rootMounts', JSON.stringify([...new Set([...recordedRoot(manifest).mounts, ...mountedBelow(root)])].sort()));
  const lostAtStart = lostStandbyRoot(root, recordedRoot(manifest));
  if (lostAtStart !== null) log.error('STANDBY_ROOT_LOST', `the standby root ${lostAtStart}: status says UNSAFE until it is mounted again (or \`warmsync verify\`, run with the receiver stopped, has checked every file)`);
  // The verdict `warmsync status` gives, for /healthz, /metrics and systemd's status line alike: the
  // skew the agent measured against the DB primary when recent, and the root still where it was.
  const verdictNow = (): FailoverVerdict => {
    const watermark = manifest.getNumber('watermark');
    const skew = skewInForce({ measured: manifest.dbClock(), watermark, configuredMs: skewMs(), defaultMs: skewMs() });
    return failoverVerdict(manifest.getNumber('snapshotTime'), watermark, skew.skewMs, manifest.feedGap(), standbyLack(root, manifest, true));
  };
  const metrics = createMetrics(manifest, verdictNow);

  // verify checks owners with the same mapping.
  const owners = options.owners ?? ownerPolicy();
  manifest.setState('ownerPolicy', policyToText(owners));
  logOwnerPolicy(owners, log);
  const names = localNames();
  const ownerIds = (owner: Owner | null | undefined): TargetIds | null => targetIds(owners, owner, names);

  const hasher = await createHasher();
  const writer = new TreeWriter(confinedRoot, confinedState, 'displaced', (path, reason) => log.info(`removed ${path}: ${reason}`));
  const sessions = new Set<Promise<void>>();
  const partials = new PartialStore(confinedState, 'partial');
  partials.ensure();
  const pruned = partials.prune(Date.now());
  if (pruned > 0) log.info(`removed ${pruned} unfinished transfer(s) older than a week`);

  let server;
  try {
    server = await startServer({
      host: options.host,
      port: options.port,
      token: options.token,
      receiverId: randomBytes(8).toString('hex'),
      window: WINDOW_BYTES,
      windowMax: WINDOW_MAX_BYTES,
      maxInFlight: LIMITS.maxInFlight,
      handshakeTimeoutMs: 10_000,
      log,
      tls: options.tls ?? null,
      onHttp: createHttpHandler(manifest, metrics, options.token, verdictNow),
      onSession: async (conn, remote) => {
        log.info(`agent connected from ${remote}`);
        manifest.setState('agentConnected', 1);
        manifest.setState('lastContact', Date.now());
        const session = new ReceiverSession({ conn, manifest, root: confinedRoot, writer, hasher, log, limits: LIMITS, now: Date.now, observer: metrics, partials, ownerIds });
        const done = session.run();
        sessions.add(done);
        try {
          await done;
        } finally {
          sessions.delete(done);
          manifest.setState('agentConnected', 0);
          manifest.setState('lastContact', Date.now());
          const c = session.counters;
          log.info(`agent ${remote} disconnected: ${c.files} files (${c.bytes} bytes) written, ${c.ops} ops applied, ${c.failed} failed`);
        }
      },
    });
  } catch (err) {
    manifest.close();
    confinedRoot.close();
    confinedState.close();
    lock.release();
    throw err;
  }

  let poller: SnapshotPoller | null = null;
  if (options.snapshotSource !== null) {
    const { spec, intervalMs } = options.snapshotSource;
    poller = startSnapshotPoller({
      source: openSnapshotSource(spec, Math.min(intervalMs, 30_000), log),
      intervalMs,
      executor: new GateExecutor(manifest, root, stateDir, log),
      times: options.times,
      log,
    });
  }

  return {
    url: server.url,
    statusLine: () => `${verdictLine(verdictNow())}; agent ${manifest.getNumber('agentConnected') === 1 ? 'connected' : 'not connected'}`,
    stop: async () => {
      await poller?.stop();
      await server.close();
      await Promise.all(sessions).catch((err: unknown) => log.error('SESSION_FAILED', describeError(err)));
      manifest.setState('agentConnected', 0);
      manifest.close();
      confinedRoot.close();
      confinedState.close();
      lock.release();
    },
  };
}

/** Says once, at start-up, what happens to owners, and when they are not kept, why. */
function logOwnerPolicy(policy: OwnerPolicy, log: Logger): void {
  const uid = process.geteuid?.() ?? -1;
  const gid = process.getegid?.() ?? -1;
  if (!policy.canChown) {
    log.warn('OWNERS_NOT_KEPT', `running as uid ${uid} without CAP_CHOWN: everything written keeps this user and group (${uid}:${gid}); `
      + 'owners and groups are not replicated (run the receiver as root to keep them, as rsync -a does)');
  } else if (policy.forceUid !== null || policy.forceGid !== null) {
    log.info(`owners: everything written is given ${policy.forceUid ?? "the source's user"}:${policy.forceGid ?? "the source's group"} (--chown)`);
  } else {
    log.info(`owners: kept from the source, ${policy.numericIds ? 'by number (--numeric-ids)' : 'by name, by number where this host lacks the name'}`);
  }
  if (!hasCapability(CAP_MKNOD)) log.info('device nodes cannot be created without CAP_MKNOD: they fail with EPERM (FIFOs and sockets are created)');
}
