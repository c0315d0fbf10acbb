/**
 * `warmsync agent` without --once: the daemon. Watches the tree (events are hints: every dirty
 * path is re-stat'ed and re-hashed before anything is sent), streams changes as soon as a path has
 * been quiet for a few ms, sends the watermark W with heartbeats, and survives everything an
 * operator does: a lost connection means reconnect (capped, jittered backoff) and a full
 * reconciliation; watcher trouble means periodic rescans instead. A safety halt (a mass deletion,
 * an emptied source) holds the deletions back while everything else keeps flowing. Only a wrong
 * token or a protocol mismatch stop it, since retrying cannot fix those.
 */
import type { Stats } from 'node:fs';
import { readlink } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import { wholeMs, type Entry, type FeedGap, type ManifestEntry } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import { anchorMarks } from '../plan/anchor.js';
import { SubtreeScans } from '../plan/subtree-scans.js';
import { diffTrees, type Change } from '../plan/diff.js';
import { DeletionGuard, isDeletion, type SafetyHalt } from '../plan/safety.js';
import { standbyLogger, type Logger } from '../log.js';
import { isTooDeep } from '../relpath.js';
import { RACY_MS, isCacheable, scanTree, type ScanResult } from '../scan/scanner.js';
import { pathTooLongMessage, specialNode } from '../scan/walk.js';
import { ownerOf } from '../owner/names.js';
import { dial } from '../transport/client.js';
import { lstatOrNull } from '../lstat.js';
import { Coalescer, type DirtyPath } from '../watch/coalesce.js';
import { watchTree, type IncompleteReason, type TreeWatcher } from '../watch/watcher.js';
import { Mirror } from './mirror.js';
import { RETRYABLE, SourceTree, applyToMirror, hashDecides, type AgentOptions, type PassResult } from './agent.js';
import { BusyPaths } from './busypaths.js';
import type { DbReport } from './dbprobe.js';
import { serveAgentHttp, statusLine, type AgentHttp, type StandbyReport } from './metrics.js';
import { compressorFor } from './compress.js';
import type { ServiceNotifier } from '../notify.js';
import { Sender, type HashedWhileSent, type OpFailure } from './sender.js';
import { FeedState } from './feedstate.js';
import { computeWatermark } from './watermark.js';

export interface LiveOptions extends AgentOptions {
  /** Full reconciliation every this many ms, the safety net for missed events. */
  readonly rescanIntervalMs: number;
  /** A dirty path is looked at once it has had no event for this long. */
  readonly quietMs: number;
  /** W stays this far behind the clock, for events still in the watcher's pipe. */
  readonly settleMs: number;
  readonly heartbeatMs: number;
  /** --db-primary: the DB primary's WAL positions and clock offset, sent with each heartbeat. */
  readonly db?: DbReport | null;
  /** --metrics-listen: serve /healthz and /metrics there (agent/metrics.ts). */
  readonly metricsListen?: { readonly host: string; readonly port: number } | null;
  /** systemd (Type=notify): the status line, and READY=1 once caught up with every standby it reaches. */
  readonly notify?: ServiceNotifier | null;
}

/** File deletions are counted against --max-delete over this window (see DeletionGuard). */
const DELETE_WINDOW_MS = 5 * 60_000;
const MAX_BATCH = 2000;
/** Files at least this large are read outside the batch loop (see processBatch). */
const LARGE_FILE_BYTES = 4 << 20;
/** Full-rescan period while the watcher is out of inotify watches. */
const DEGRADED_RESCAN_MS = 30_000;
/** How often the live agent logs what it replicated (only when it did something). */
const ACTIVITY_LOG_MS = 60_000;
/** The longest the loop pauses between two looks at the dirty paths (see run). */
const MAX_PACE_MS = 200;
/** Hashes computed by the sender are cached in batches of this many (see LiveSession.saveHashes). */
const SAVE_HASHES_EVERY = 1000;
/** Retries of one path in a row after which the agent says so (once) instead of retrying silently. */
const RETRIES_BEFORE_WARNING = 20;
/**
 * Changed paths waiting for one standby, at most (a few hundred bytes each): past this the standby
 * is reconciled in full instead (StandbyLink.fallBehind), so memory stays bounded whatever its lag.
 * WARMSYNC_MAX_BACKLOG (environment, not a flag; docs/reliability.md) lowers it: the tests fill it
 * with a few hundred files instead of 200,000.
 */
const MAX_BACKLOG_PATHS = positiveIntegerFromEnv('WARMSYNC_MAX_BACKLOG') ?? 200_000;

function positiveIntegerFromEnv(name: string): number | null {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value >= 1 ? value : null;
}

/**
 * One full garbage collection, after a full pass. The pass allocates a few hundred bytes per file
 * that die with it (walk, cache snapshot, manifest pages, plan), and V8 keeps the heap it grew for
 * them: at 100,000 files the idle agent held ~135 MB of heap for ~27 MB of live objects, and no GC
 * ran in the next 25 s to give it back. A daemon that then idles for hours should not keep that.
 * Node offers no API for a GC; this is the documented V8 flag, exposed in a throwaway context.
 */
function releaseGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Errors a reconnect cannot fix, for the whole agent: the source root itself is gone or wrong. */
const FINAL_FOR_AGENT = new Set(['SOURCE_MISSING', 'SOURCE_NOT_DIR']);
/** Errors a reconnect cannot fix, for one standby: its token, its protocol version or its URL. */
const FINAL_FOR_STANDBY = new Set(['AUTH_FAILED', 'VERSION_MISMATCH', 'BAD_URL']);

export async function runLive(options: LiveOptions, signal: AbortSignal): Promise<void> {
  const { log } = options;
  const tree = await SourceTree.open(options.root, options.rules, options.stateDir, log, options.progress ?? null, options.noSetuid === true);
  // One stop for every standby: the operator's (SIGTERM), or an error no standby can go on after.
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener('abort', onAbort);
  if (signal.aborted) stop.abort();
  const links = options.urls.map((url) => new StandbyLink(url, options, options.urls.length > 1 ? standbyLogger(log, url) : log, stop.signal));
  // Out of inotify watches: events may be missing for part of the tree, so rescan often instead.
  let rescanEveryMs = options.rescanIntervalMs;
  let limitLogged = false;
  const watcher = watchTree(options.root, {
    isExcluded: tree.isExcluded,
    onDirty: (path, subtree, at) => {
      // firstSeen is when the event was read (for a new subtree: the event that revealed it).
      const now = Date.now();
      for (const link of links) link.mark(path, now, subtree, at);
    },
    onIncomplete: (reason, since, _at, detail) => {
      // W holds on every standby (FeedState), the log says why, and a full rescan looks at everything again.
      const now = Date.now();
      for (const link of links) link.feedLost(reason, since, now);
      if (reason === 'watch-limit') {
        if (limitLogged) {
          log.debug(`watch limit: ${detail}`);
        } else {
          limitLogged = true;
          rescanEveryMs = Math.min(options.rescanIntervalMs, DEGRADED_RESCAN_MS);
          log.error('WATCH_LIMIT', `the watcher ran out of inotify watches or file handles (${detail.split(' ')[0] ?? ''}); the watermark stays at the start of the last full rescan; raise fs.inotify.max_user_watches (sysctl -w fs.inotify.max_user_watches=1048576) or ulimit -n, then restart the agent. Until then: a full rescan every ${Math.round(rescanEveryMs / 1000)} s`);
        }
      } else if (reason === 'overflow') {
        log.warn('WATCH_OVERFLOW', `${detail}; the watermark holds there until a full rescan has covered it. If this recurs, raise fs.inotify.max_queued_events (sysctl -w fs.inotify.max_queued_events=1048576)`);
      } else {
        log.warn('WATCH_LOST', `${detail}; the watermark holds until a full rescan has covered it`);
      }
    },
    onError: (err) => {
      log.warn('WATCH_ERROR', `watcher error: ${describeError(err)}; running a full rescan`);
      for (const link of links) link.requestRescan();
    },
  });
  stop.signal.addEventListener('abort', () => {
    for (const link of links) link.poke();
  });
  let http: AgentHttp | null = null;
  try {
    const listen = options.metricsListen ?? null;
    if (listen !== null) {
      http = await serveAgentHttp(listen.host, listen.port, options.token, () => links.map((link) => link.report()));
      log.info(`serving /healthz and /metrics on ${http.url}`);
    }
    await watcher.ready;
    log.info(`watching ${options.root}`);
    const status = (): string => statusLine(links.map((link) => link.report()), Date.now());
    options.notify?.followStatus(status);
    // Ready (for systemd) once live with every standby: each one's first full pass done, or it
    // could not be reached (a DR site that is down must not keep the agent from starting: it
    // catches up by itself later).
    void Promise.all(links.map((link) => link.startupDone)).then(() => {
      if (stop.signal.aborted) return;
      log.info(`caught up: ${status()}`);
      options.notify?.ready();
    });
    const shared: SharedFeed = { tree, watcher, rescanEveryMs: () => rescanEveryMs };
    // Each standby runs on its own: a slow or unreachable one holds back nobody else.
    const ends = await Promise.allSettled(links.map(async (link) => {
      try {
        await link.run(shared);
      } catch (err) {
        link.finishStartup();
        if (err instanceof WarmsyncError && FINAL_FOR_AGENT.has(err.code)) stop.abort();
        else if (links.length > 1) link.log.error(err instanceof WarmsyncError ? err.code : 'FAILED', `${describeError(err)}; this standby gets nothing more until the agent is restarted, the others go on`);
        throw err;
      }
    }));
    const failed = ends.find((e): e is PromiseRejectedResult => e.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  } finally {
    signal.removeEventListener('abort', onAbort);
    await http?.close();
    await watcher.close();
    tree.close();
  }
}

/** What every standby's link shares: the source tree (scanner, hash cache), the change feed, the rescan period. */
interface SharedFeed {
  readonly tree: SourceTree;
  readonly watcher: Pick<TreeWatcher, 'pendingSince' | 'drain'>;
  /** The full-rescan period now in force (shorter once the watcher is known to miss events). */
  rescanEveryMs(): number;
}

/**
 * Everything the agent keeps for one standby across its connections: the dirty paths it has still
 * to look at, what it knows of the feed's completeness, its held deletions, and the reconnect loop
 * around one LiveSession per connection. The watcher feeds every link the same marks.
 */
class StandbyLink {
  private readonly dirty = new Coalescer();
  private readonly feed = new FeedState();
  private readonly held: HeldDeletions;
  private rescanRequested = false;
  private wake: (() => void) | null = null;
  /** The connection's session while there is one (its ops in flight, its sender's totals). */
  private session: { readonly live: LiveSession; readonly sender: Sender } | null = null;
  /** Files and bytes sent over connections that have ended. */
  private sentBefore = { files: 0, bytes: 0, wireBytes: 0 };
  private connections = 0;
  private lastHeartbeat: { readonly watermark: number | null; readonly feedIncomplete: FeedGap | null } = { watermark: null, feedIncomplete: null };
  /** Settles once its first full pass completed, or once it could not be reached or synced (it is retried). */
  readonly startupDone: Promise<void>;
  readonly finishStartup: () => void;

  constructor(
    readonly url: string,
    private readonly options: LiveOptions,
    readonly log: Logger,
    private readonly signal: AbortSignal,
  ) {
    this.held = new HeldDeletions(new DeletionGuard(options.safety, DELETE_WINDOW_MS), options.releaseDeletions, log);
    let settle = (): void => undefined;
    this.startupDone = new Promise((resolve) => {
      settle = resolve;
    });
    this.finishStartup = settle;
  }

  poke(): void {
    this.wake?.();
  }

  mark(path: string, now: number, subtree: boolean, firstSeen: number): void {
    this.dirty.mark(path, now, { subtree, firstSeen });
    if (this.dirty.size > MAX_BACKLOG_PATHS) this.fallBehind(now);
    this.poke();
  }

  feedLost(reason: IncompleteReason, since: number, noticed: number): void {
    this.feed.lost(reason, since, noticed);
    this.requestRescan();
  }

  requestRescan(): void {
    this.rescanRequested = true;
    this.poke();
  }

  /**
   * Too many paths wait for this standby (it is unreachable, or slower than the source changes):
   * rather than a queue that grows with its lag, forget them and reconcile it in full, as after a
   * feed overflow. W holds from the oldest path forgotten until that pass has completed.
   */
  private fallBehind(now: number): void {
    const since = this.dirty.oldestFirstSeen() ?? now;
    this.dirty.clear();
    if (this.feed.fellBehind(since, now)) {
      this.log.warn('STANDBY_BEHIND', `more than ${MAX_BACKLOG_PATHS} changed paths waited for this standby; a full reconciliation replaces them (its watermark holds until that completes)`);
    }
    this.requestRescan();
  }

  /** How this standby is doing, for /healthz and /metrics. */
  report(): StandbyReport {
    const sent = this.session?.sender.sent ?? { files: 0, bytes: 0, wireBytes: 0 };
    return {
      url: this.url, connected: this.session !== null, ...this.lastHeartbeat,
      filesSent: this.sentBefore.files + sent.files, bytesSent: this.sentBefore.bytes + sent.bytes,
      wireBytesSent: this.sentBefore.wireBytes + sent.wireBytes,
      queuedPaths: this.dirty.size, opsInFlight: this.session?.live.opsInFlight ?? 0, connections: this.connections,
    };
  }

  /** Connects, replicates, reconnects (capped, jittered backoff) until the stop; throws only what a retry cannot fix. */
  async run(shared: SharedFeed): Promise<void> {
    const { log, signal, options } = this;
    let failedAttempts = 0;
    /** One line per attempt, then a sleep (cut short by a stop). */
    const backOff = async (code: string, why: string): Promise<void> => {
      this.finishStartup();
      failedAttempts++;
      const delay = Math.min(30_000, 250 * 2 ** Math.min(failedAttempts, 7)) * (0.5 + Math.random() / 2);
      log.warn(code, `${why}; retrying in ${Math.round(delay)} ms`);
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    };
    const hooks: Hooks = {
      standby: this.url,
      feed: this.feed,
      watcher: shared.watcher,
      setWake: (fn) => {
        this.wake = fn;
      },
      rescanEveryMs: shared.rescanEveryMs,
      sentHeartbeat: (watermark, feedIncomplete) => {
        this.lastHeartbeat = { watermark, feedIncomplete };
      },
      passCompleted: () => this.finishStartup(),
      takeRescanRequest: () => {
        const r = this.rescanRequested;
        this.rescanRequested = false;
        return r;
      },
    };
    const sessionOptions: LiveOptions = { ...options, log };
    while (!signal.aborted) {
      let session;
      try {
        session = await dial({ url: this.url, token: options.token, attempts: 1, baseDelayMs: 0, maxDelayMs: 0, handshakeTimeoutMs: 10_000, log, tls: options.tls });
      } catch (err) {
        if (err instanceof WarmsyncError && (FINAL_FOR_STANDBY.has(err.code) || FINAL_FOR_AGENT.has(err.code))) throw err;
        // A TLS failure keeps its own code (it needs the operator, not patience), but is retried:
        // the receiver's certificate may be renewed or fixed while the agent waits.
        const code = err instanceof WarmsyncError && err.code.startsWith('TLS_') ? err.code : 'RECONNECT';
        await backOff(code, `cannot reach ${this.url} (${describeError(err)})`);
        continue;
      }
      log.info(`connected to ${this.url}`);
      let busy = false;
      const sender = new Sender(session.conn, session, shared.tree.source, shared.tree.hasher, {
        bwlimit: options.bwlimit ?? null, compressor: compressorFor(options.compress ?? null, session, this.url, log),
      });
      const live = new LiveSession(sessionOptions, shared.tree, this.dirty, this.held, sender, signal, hooks);
      this.session = { live, sender };
      this.connections++;
      try {
        await live.run();
        failedAttempts = 0;
      } catch (err) {
        if (err instanceof WarmsyncError && (FINAL_FOR_STANDBY.has(err.code) || FINAL_FOR_AGENT.has(err.code))) throw err;
        busy = err instanceof WarmsyncError && err.code === 'BUSY';
        if (!busy) {
          failedAttempts = 0;
          if (!signal.aborted) log.warn('CONNECTION_LOST', `${describeError(err)}; reconnecting`);
          this.finishStartup();
        }
      } finally {
        this.session = null;
        const { files, bytes, wireBytes } = sender.sent;
        this.sentBefore = { files: this.sentBefore.files + files, bytes: this.sentBefore.bytes + bytes, wireBytes: this.sentBefore.wireBytes + wireBytes };
        session.conn.close();
        await session.conn.closed;
      }
      // Usually this agent's own previous connection, which the receiver holds until its keepalive
      // gives up on it (up to 20 s after a half-open link): retrying at once would hammer it.
      if (busy) await backOff('BUSY', 'the receiver is still serving another agent session (this agent\'s previous connection, until the receiver notices it is gone; or another agent with the same token)');
    }
  }
}

/**
 * Deletions held back after a safety halt (invariant 5), kept across connections: the guard, the
 * paths it holds, and one log line when it trips and one when deletions flow again.
 */
class HeldDeletions {
  readonly paths = new Set<string>();
  /** Live files on the standby (the mirror's): what a mass deletion's share is counted against. */
  private standbyFiles = 0;
  private logged: SafetyHalt | null = null;

  constructor(private readonly guard: DeletionGuard, private release: boolean, private readonly log: Logger) {}

  /** How the next full pass meets a halt; --release-deletions counts for the first pass only. */
  passSafety(options: LiveOptions): { options: LiveOptions['safety']; guard: DeletionGuard; release: boolean } {
    const release = this.release;
    this.release = false;
    return { options: options.safety, guard: this.guard, release };
  }

  /** A full pass ended: what it held, and the standby as it left it (`mirror`). */
  afterPass(pass: PassResult, mirror: Mirror): void {
    this.paths.clear();
    for (const c of pass.held) this.paths.add(c.path);
    this.standbyFiles = mirror.liveFileCount();
    this.report();
  }

  /** The receiver applied `change`: the standby's live file count moves with it. */
  applied(change: Change): void {
    const wasFile = change.old?.kind === 'file' && change.old.deletedAt === null;
    this.standbyFiles += (change.new?.kind === 'file' ? 1 : 0) - (wasFile ? 1 : 0);
  }

  /** May `change` be sent now? A deletion the guard refuses is held; a path that is back is no longer held. */
  admit(change: Change, now: number): boolean {
    if (!isDeletion(change)) {
      if (this.paths.delete(change.path) && this.paths.size === 0) this.guard.release();
      this.report();
      return true;
    }
    if (this.guard.admit(change.old?.kind === 'file' ? 1 : 0, now, this.standbyFiles)) return true;
    this.paths.add(change.path);
    this.report();
    return false;
  }

  private report(): void {
    const halt = this.guard.halt;
    if (halt === this.logged) return;
    this.logged = halt;
    if (halt !== null) {
      this.log.error(halt.code, `${halt.finding}; deletions are held, not sent, while everything else keeps replicating. Check the source (is its disk mounted?), then restart the agent once with --release-deletions`);
    } else {
      this.log.info('deletions flow again: nothing is held back any more');
    }
  }
}

interface Hooks {
  /** The standby's URL: whose watermark the DB positions are trimmed for. */
  readonly standby: string;
  readonly feed: FeedState;
  readonly watcher: Pick<TreeWatcher, 'pendingSince' | 'drain'>;
  setWake(fn: () => void): void;
  takeRescanRequest(): boolean;
  /** The full-rescan period now in force (shorter once the watcher is known to miss events). */
  rescanEveryMs(): number;
  /** A heartbeat went out with this W and feed state (for /healthz and /metrics). */
  sentHeartbeat(watermark: number | null, feedIncomplete: FeedGap | null): void;
  /** A full pass completed: the standby matched the source as scanned. */
  passCompleted(): void;
}

/** One connection's worth of live replication. Returns when the connection closes or on abort. */
class LiveSession {
  /** The standby's manifest as this session knows it: fetched by each full pass, kept up to date by each op's result. */
  private mirror = Mirror.open();
  /** Paths with an op in flight -> when the change was first observed. */
  private readonly inFlight = new BusyPaths();
  /** Paths whose change failed in a way only a later rescan can fix -> first observed. */
  private readonly stuck = new Map<string, number>();
  /** Large files being hashed in the background -> first observed. */
  private readonly readingLarge = new Map<string, number>();
  /**
   * Batches taken from the coalescer and not yet all submitted -> their oldest firstSeen. Between
   * the two, a path is neither waiting nor in flight: without this, a heartbeat in that window
   * (describing a batch awaits hashes and subtree scans) let W pass changes nobody had sent yet.
   */
  private readonly replicating = new Map<symbol, number>();
  private reconciledFrom: number | null = null;
  private lastFull = 0;
  /**
   * Files hashed while racy (mtime younger than RACY_MS), so not cached -> when to look again.
   * Looking again once they are old enough hashes and caches them, so that an agent restart does
   * not re-read every file replicated live since the last full scan.
   */
  private readonly racy = new Map<string, number>();
  /**
   * Files the sender hashed on the way (new files and files whose size changed: their hash decides
   * nothing, so describe leaves it to the sender, and each is read once instead of twice), until
   * their op's result puts the hash in the mirror and the cache.
   */
  private readonly sentHashes = new Map<string, HashedWhileSent>();
  /** Completed scans of whole subtrees, which answer the subtree marks made before they began. */
  private readonly subtreeScans = new SubtreeScans();
  /** Of those, the ones to cache, written in batches (at most SAVE_HASHES_EVERY, at least every heartbeat). */
  private readonly unsavedHashes: HashedWhileSent[] = [];
  /** Paths retried without success since their last success -> how many times in a row. */
  private readonly retries = new Map<string, number>();
  /** The mirror proved stale (a CONFLICT): only a fresh manifest, i.e. a full pass, can fix that. */
  private resync = false;
  private closed = false;
  private activity = { since: Date.now(), applied: 0, deletions: 0, failed: 0 };

  constructor(
    private readonly options: LiveOptions,
    private readonly tree: SourceTree,
    private readonly dirty: Coalescer,
    private readonly held: HeldDeletions,
    private readonly sender: Sender,
    private readonly signal: AbortSignal,
    private readonly hooks: Hooks,
  ) {}

  /**
   * W and what stands behind it. The watcher is drained first: an event the kernel already holds
   * (the loop may not have polled since) is marked dirty before W vouches for its moment.
   */
  private heartbeat(): void {
    // The clock is read before the drain: every change made before `now` is then marked (stamped
    // no later than it happened, see watch/watcher.ts), so W needs no margin for the feed's latency.
    const now = Date.now();
    this.hooks.watcher.drain();
    const w = this.watermark(now);
    const db = this.options.db?.report(w, this.hooks.standby);
    const feedIncomplete = this.hooks.feed.incomplete(this.reconciledFrom);
    this.sender.heartbeat(w, { feedIncomplete, deletionsHeld: this.held.paths.size, ...(db === undefined ? {} : { db }) });
    this.hooks.sentHeartbeat(w, feedIncomplete);
    this.saveHashes();
  }

  private watermark(now = Date.now()): number | null {
    const pending = [...this.inFlight.values(), ...this.stuck.values(), ...this.readingLarge.values(), ...this.replicating.values()];
    for (const t of [this.dirty.oldestFirstSeen(), this.hooks.watcher.pendingSince()]) if (t !== null) pending.push(t);
    const incompleteSince = this.hooks.feed.incomplete(this.reconciledFrom)?.since ?? null;
    return computeWatermark({ now, settleMs: this.options.settleMs, reconciledFrom: this.reconciledFrom, pending, incompleteSince });
  }

  async run(): Promise<void> {
    const conn = this.sender.connection;
    conn.keepAlive(5_000, 20_000);
    void conn.closed.then(() => {
      this.closed = true;
      this.wakeUp();
    });
    const heartbeat = setInterval(() => {
      this.heartbeat();
      this.reportActivity(Date.now());
    }, this.options.heartbeatMs);
    try {
      await this.fullPass();
      while (!this.closed && !this.signal.aborted) {
        if (this.hooks.takeRescanRequest() || this.resync || Date.now() - this.lastFull >= this.hooks.rescanEveryMs()) await this.fullPass();
        this.markRacyDue(Date.now());
        const lookStarted = performance.now();
        const batch = this.dirty.takeQuiet(Date.now(), this.options.quietMs, MAX_BATCH, (p) => this.isBusy(p));
        if (batch.length > 0) {
          await this.processBatch(batch);
          continue;
        }
        // Paths waiting behind an op in flight are not due: a settled op wakes this loop.
        const dueIn = this.dirty.nextDueIn(Date.now(), this.options.quietMs, (p) => this.isBusy(p));
        // A look that found nothing to take costs time in proportion to the paths waiting (a burst
        // leaves thousands behind ops in flight, and every settled op wakes this loop): the next
        // look comes no sooner than ten times that, so looking takes at most ~10% of the agent's
        // time instead of nearly all of it. Negligible when few paths wait.
        const nextLookAt = performance.now() + Math.min(MAX_PACE_MS, (performance.now() - lookStarted) * 10);
        await this.waitFor(Math.min(dueIn === null ? Infinity : Math.max(dueIn, 1), this.lastFull + this.hooks.rescanEveryMs() - Date.now(), 1000));
        const early = nextLookAt - performance.now();
        if (early >= 1) await sleep(early);
      }
      if (this.signal.aborted) await this.drain();
    } finally {
      clearInterval(heartbeat);
      this.mirror.close();
    }
    if (this.closed && !this.signal.aborted) throw this.sender.failureOr(new WarmsyncError('CONNECTION_LOST', 'the connection to the receiver closed'));
  }

  private wakeUp: () => void = () => undefined;

  /** Ops sent and not yet answered. */
  get opsInFlight(): number {
    return this.inFlight.size;
  }

  private waitFor(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(1, ms));
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
      this.hooks.setWake(done);
    });
  }

  /** On shutdown: let in-flight ops finish (bounded), then send a last heartbeat. */
  private async drain(): Promise<void> {
    const deadline = Date.now() + 10_000;
    while ((this.inFlight.size > 0 || this.readingLarge.size > 0) && !this.closed && Date.now() < deadline) await sleep(20);
    this.heartbeat();
  }

  private isBusy(path: string): boolean {
    return this.readingLarge.has(path) || this.inFlight.overlaps(path);
  }

  private async fullPass(): Promise<void> {
    await this.reconcileInFull();
    // Here, not inside it: while its frame lived, the pass's scan (an entry a file) was still held.
    releaseGarbage();
  }

  private async reconcileInFull(): Promise<void> {
    // Ops in flight would race the full plan's preconditions: let them land first.
    while ((this.inFlight.size > 0 || this.readingLarge.size > 0) && !this.closed) await sleep(5);
    const pass = await this.tree.reconcile(this.sender, { safety: this.held.passSafety(this.options), mirrorFollows: true }, this.options.log);
    const stale = this.mirror;
    this.mirror = pass.mirror;
    stale.close();
    this.held.afterPass(pass, this.mirror);
    this.stuck.clear();
    this.retries.clear();
    pass.report.failures.forEach((f) => this.onFailure(f, pass.scanStarted));
    this.resync = false; // the mirror was just fetched: a conflict in this pass is retried against it
    for (const path of pass.scan.incomplete) this.stuck.set(path, pass.scanStarted);
    // Files hashed too soon after their mtime for the hash to be cached (RACY_MS), by the scan or by
    // the sender: looked at again once they are old enough, as after a live change. The racy paths
    // of a session that ended (its receiver restarted) went with it, and a file written just before
    // the reconnect's pass stayed uncached until the next rescan. Judged at each file's own hash
    // time: at the pass's end, a long pass's early files looked old enough, and were never cached.
    for (const f of [...pass.scan.racy, ...pass.sentRacy]) this.racy.set(f.path, f.mtimeMs + RACY_MS + 1);
    this.reconciledFrom = pass.scanStarted;
    if (pass.scan.incomplete.length === 0) this.subtreeScans.record('', pass.scanStarted);
    this.hooks.feed.passCompleted(pass.scanStarted);
    this.lastFull = Date.now();
    this.heartbeat();
    this.hooks.passCompleted();
  }

  /** Info-level: one line a minute when something was replicated, never a line per file. */
  private reportActivity(now: number): void {
    if (now - this.activity.since < ACTIVITY_LOG_MS) return;
    const a = this.activity;
    if (a.applied + a.failed > 0) {
      const w = this.watermark();
      this.options.log.info(`last ${Math.round((now - a.since) / 1000)} s: ${a.applied} change(s) replicated (${a.deletions} deletion(s) held as tombstones), ${a.failed} failed; watermark ${w === null ? 'none' : `${now - w} ms behind`}`);
    }
    this.activity = { since: now, applied: 0, deletions: 0, failed: 0 };
  }

  private markRacyDue(now: number): void {
    for (const [path, due] of this.racy) {
      if (due > now) continue;
      this.racy.delete(path);
      this.dirty.mark(path, now);
    }
  }

  private onFailure(f: OpFailure, firstSeen: number): void {
    if (RETRYABLE.has(f.code)) this.countRetry(f.path, `${f.code} ${f.message}`);
    if (f.code === 'CONFLICT') {
      // The standby holds something else than the mirror says: sending the same precondition again
      // would conflict again, forever. Re-read the manifest (a full pass) before the next try.
      this.dirty.mark(f.path, Date.now(), { firstSeen });
      this.resync = true;
    } else if (RETRYABLE.has(f.code)) {
      this.dirty.mark(f.path, Date.now(), { firstSeen });
    } else {
      this.stuck.set(f.path, firstSeen);
      this.options.log.warn(f.code, `${f.path}: ${f.message} (retried at the next full rescan; the watermark waits for it)`);
    }
  }

  /**
   * A retry is routine (a file still being written), so it is logged at debug level; a path that
   * keeps failing gets one warning, since something other than a busy writer may be at work.
   */
  private countRetry(path: string, why: string): void {
    const n = (this.retries.get(path) ?? 0) + 1;
    this.retries.set(path, n);
    this.options.log.debug(`${path}: ${why} (retry ${n})`);
    if (n === RETRIES_BEFORE_WARNING) {
      this.options.log.warn('RETRYING', `${path} failed ${n} times in a row (last: ${why}); still retrying, and the watermark waits for it`);
    }
  }

  /**
   * Large files are read in the background, so the small files behind them are not held up by a
   * long hash (or by the retries while such a file is still being written).
   */
  private async processBatch(batch: readonly DirtyPath[]): Promise<void> {
    const now: DirtyPath[] = [];
    // Taken after the path left the coalescer, so describe may use it: a change after it marks the path again.
    const looked = new Map<string, Stats | null>();
    for (const d of batch) {
      let st: Stats | null;
      try {
        st = lstatOrNull(this.tree.source.abs(d.path));
      } catch {
        now.push(d); // describe looks again, and says why it cannot (a name too long)
        continue;
      }
      if (st !== null && st.isFile() && st.size >= LARGE_FILE_BYTES) this.replicateInBackground(d);
      else {
        now.push(d);
        looked.set(d.path, st);
      }
    }
    await this.replicate(now, looked);
  }

  private replicateInBackground(d: DirtyPath): void {
    this.readingLarge.set(d.path, d.firstSeen);
    void this.replicate([d])
      .catch((err: unknown) => {
        // The connection went while it was being sent: submit() marked it dirty, the reconnect's full pass covers it.
        if (this.closed || this.sender.failed) return;
        this.stuck.set(d.path, d.firstSeen);
        const code = err instanceof WarmsyncError ? err.code : ((err as NodeJS.ErrnoException).code ?? 'READ_FAILED');
        this.options.log.warn(code, `${d.path}: ${describeError(err)} (retried at the next full rescan; the watermark waits for it)`);
      })
      .finally(() => {
        this.readingLarge.delete(d.path);
        this.wakeUp();
      });
  }

  /** Looks at dirty paths again, plans against the mirror and submits the changes. */
  private async replicate(batch: readonly DirtyPath[], looked?: ReadonlyMap<string, Stats | null>): Promise<void> {
    if (batch.length === 0) return;
    const token = Symbol('batch');
    this.replicating.set(token, Math.min(...batch.map((d) => d.firstSeen)));
    try {
      await this.replicateBatch(batch, looked);
    } finally {
      this.replicating.delete(token);
    }
  }

  /** `looked`: lstats taken of the batch's paths once they were taken from the coalescer (processBatch). */
  private async replicateBatch(batch: readonly DirtyPath[], looked?: ReadonlyMap<string, Stats | null>): Promise<void> {
    // By path: a new directory's subtree and a file inside it can both be in one batch, and two
    // changes for one path would race each other's precondition (the second one a CONFLICT).
    const entries = new Map<string, Entry>();
    const rows = new Map<string, ManifestEntry>();
    const firstSeen = new Map<string, number>();
    const isDir = (path: string): boolean => {
      const row = this.mirror.get(path);
      return row !== undefined && row.kind === 'dir' && row.deletedAt === null;
    };
    const seen = (path: string, at: number): void => {
      firstSeen.set(path, Math.min(firstSeen.get(path) ?? Infinity, at));
    };
    /** Paths whose rows at and below them the plan needs -> their mark's firstSeen. */
    const below = new Map<string, number>();
    const own = new Set(batch.map((d) => d.path));
    /** Subtrees scanned whole for this batch -> when each scan began: recorded once their changes are submitted. */
    const scanned = new Map<string, number>();
    for (const d of anchorMarks(batch, (path) => this.mirror.has(path), isDir)) {
      if (d.path === '') {
        // The root is never an entry: the manifest has no row for it, and a mkdir of '' is refused
        // (the receiver closed the session, the reconnect's pass left the mark, and so on forever).
        // A subtree mark on it (its watch was lost and put back, as when its disk is unmounted)
        // says anything may have changed: that is a full pass, with the pass's checks (an emptied
        // root holds every deletion: SOURCE_EMPTY); W waits for it.
        if (d.subtree) {
          this.stuck.set('', d.firstSeen);
          this.resync = true;
        }
        continue;
      }
      // Looked at from a directory the standby lacks, which something below is still on its way into: after that.
      // (Only such a mark: the batch's own paths were taken as not busy, and a large file read in
      // the background is busy as itself, by design, while it is read here.)
      if (!own.has(d.path) && this.isBusy(d.path)) {
        this.dirty.mark(d.path, Date.now(), { firstSeen: d.firstSeen, subtree: d.subtree });
        continue;
      }
      // A scan of it (or above it) that began after its subtree mark saw all of it: only it is to look at.
      const answered = d.subtree && d.subtreeMarkedAt !== undefined && this.subtreeScans.covers(d.path, d.subtreeMarkedAt);
      const found = await this.describe(answered ? { path: d.path, firstSeen: d.firstSeen, subtree: false } : d, looked?.get(d.path));
      if (found === 'unstable') {
        this.countRetry(d.path, 'changing while it was read');
        this.dirty.mark(d.path, Date.now(), { firstSeen: d.firstSeen, subtree: d.subtree });
        continue;
      }
      for (const e of found.entries) entries.set(e.path, e);
      for (const r of found.rows) rows.set(r.path, r);
      for (const x of [...found.entries, ...found.rows]) seen(x.path, d.firstSeen);
      if (found.rowsBelow) below.set(d.path, d.firstSeen);
      if (found.scannedFrom !== undefined) scanned.set(d.path, found.scannedFrom);
    }
    for (const [path, found] of this.mirror.rowsAtOrBelow(below.keys())) {
      for (const r of found) {
        rows.set(r.path, r);
        seen(r.path, below.get(path) as number);
      }
    }
    const changes = diffTrees([...entries.values()].map(this.tree.planned), rows.values(), { hides: this.tree.hides });
    for (const change of changes) await this.submit(change, firstSeen.get(change.path) ?? Date.now());
    for (const [dir, startedAt] of scanned) this.subtreeScans.record(dir, startedAt);
  }

  private async submit(change: Change, seen: number): Promise<void> {
    // Held: the standby keeps the file, which a failover can only be glad of; W need not wait for it.
    if (!this.held.admit(change, Date.now())) return;
    // Only an op that creates, removes or replaces a directory holds up what lies below it; new
    // metadata for a directory the standby has does not (see BusyPaths).
    const dirUpdate = change.new?.kind === 'dir' && change.old?.kind === 'dir' && change.old.deletedAt === null;
    this.inFlight.add(change.path, seen, !dirUpdate && (change.new?.kind === 'dir' || change.old?.kind === 'dir'));
    const deletedAt = Date.now();
    let result: Promise<OpFailure | null>;
    try {
      ({ result } = await this.sender.submit(change, deletedAt));
    } catch (err) {
      this.inFlight.delete(change.path);
      this.dirty.mark(change.path, Date.now(), { firstSeen: seen });
      throw err;
    }
    void result.then((failure) => {
      this.inFlight.delete(change.path);
      const sent = this.takeSentHash(change.path);
      if (failure === null) {
        this.retries.delete(change.path);
        // After the session ended (a stop's drain timed out), its mirror went with it: the next one fetches the manifest.
        if (this.mirror.isOpen) applyToMirror(this.mirror, withSentHash(change, sent), deletedAt);
        this.held.applied(change);
        this.activity.applied++;
        if (change.new === null) this.activity.deletions++;
      } else {
        this.activity.failed++;
        // The connection is gone: every op still waiting fails with it, and the reconnect's full pass covers them.
        if (this.closed || this.sender.failed) this.dirty.mark(change.path, Date.now(), { firstSeen: seen });
        else this.onFailure(failure, seen);
      }
      this.wakeUp();
    });
  }

  /**
   * The hash the sender computed for `path` on the way, if it did: cached (or looked at again once
   * no longer racy, as describe does), and returned for the mirror.
   */
  private takeSentHash(path: string): HashedWhileSent | undefined {
    for (const h of this.sender.drainHashed()) this.sentHashes.set(h.path, h);
    const sent = this.sentHashes.get(path);
    if (sent === undefined) return undefined;
    this.sentHashes.delete(path);
    if (isCacheable(sent.mtimeMs, sent.hashedAt)) {
      this.unsavedHashes.push(sent);
      if (this.unsavedHashes.length >= SAVE_HASHES_EVERY) this.saveHashes();
    } else {
      this.racy.set(path, sent.mtimeMs + RACY_MS + 1);
    }
    return sent;
  }

  /** Writes the hashes taken from the sender to the cache, in one transaction (one per file cost 90 us each). */
  private saveHashes(): void {
    if (this.unsavedHashes.length === 0) return;
    const rows = this.unsavedHashes.splice(0);
    try {
      this.tree.cache.remember(rows);
    } catch (err) {
      // As a full pass does (agent.ts): the cache only saves work; replication goes on without it.
      this.tree.warn('CACHE_FAILED', `${describeError(err)}; ${rows.length} hash(es) will be computed again next time`);
    }
  }

  /**
   * A new directory's files were hashed by a subtree scan, which has no cache (its paths are
   * relative to the subtree): remember what it hashed, and look again at racy files later, as
   * for a file described alone; else an agent restart would hash them all again.
   */
  private rememberHashes(dir: string, scan: Pick<ScanResult, 'cacheable' | 'racy'>): void {
    this.tree.cache.remember(scan.cacheable.map((r) => ({ ...r, path: `${dir}/${r.path}` })));
    // A file left unhashed (the sender hashes it) is remembered when its op's result comes (takeSentHash).
    for (const f of scan.racy) this.racy.set(`${dir}/${f.path}`, f.mtimeMs + RACY_MS + 1);
  }

  /** What the source and the mirror hold at a dirty path (and below it, for a new or vanished directory). */
  private async describe(d: DirtyPath, lookedAt?: Stats | null): Promise<Described | 'unstable'> {
    const abs = this.tree.source.abs(d.path);
    if (isTooDeep(d.path)) {
      this.tree.warn('PATH_TOO_LONG', pathTooLongMessage(d.path, null));
      return { entries: [], rows: [] };
    }
    // Synchronous, as lstatOrNull says why: through the pool, the lstat of each file of a `cp -a`
    // burst, one after another, cost more in waiting than in work (60,000 files: all on the
    // standby 7.8-8.5 s after the copy against 6.2-6.3 s; docs/benchmarks.md, session 15).
    let st: Stats | null | 'too long';
    try {
      st = lookedAt !== undefined ? lookedAt : lstatOrNull(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENAMETOOLONG') throw err;
      st = 'too long';
    }
    if (st === 'too long') {
      // As the walk does: skipped, with one warning, and nothing planned for it.
      this.tree.warn('PATH_TOO_LONG', pathTooLongMessage(d.path, abs));
      return { entries: [], rows: [] };
    }
    const row = this.mirror.get(d.path);
    if (st === null) return row?.kind === 'dir' ? { entries: [], rows: [], rowsBelow: true } : { entries: [], rows: row ? [row] : [] };
    if (this.tree.isExcluded(d.path, st.isDirectory())) return { entries: [], rows: [] };
    const base = { path: d.path, mtimeMs: wholeMs(st.mtimeMs), mode: st.mode & 0o7777, owner: ownerOf(st.uid, st.gid) };
    if (st.isSymbolicLink()) {
      const target = await readlink(abs);
      return { entries: [{ ...base, kind: 'symlink', size: Buffer.byteLength(target), hash: null, target }], rows: row ? [row] : [] };
    }
    if (st.isDirectory()) {
      const self: Entry = { ...base, kind: 'dir', size: 0, hash: null, target: null };
      // What lies below a directory that appeared (or replaced something) is looked at when the
      // watcher hands it out as a subtree, once its watches are in place (W waits for that mark); a
      // plain mark (its listing changed) is about the directory alone. Scanning a new directory at
      // every plain mark read each file of a `cp -a` burst once per mark of its directory.
      if (!d.subtree) return { entries: [self], rows: row ? [row] : [] };
      // Everything below it, as a scan would see it.
      // A file still being written below it is not waited for (a large one being copied in held
      // every other change up for a second or more, retried and hashed again as it grew): it is
      // looked at again on its own, where a large file is read in the background.
      const unstable: string[] = [];
      const scanStarted = Date.now();
      // The hashes the sender took on the way, cached first: a directory scanned again after its
      // files went out finds them there instead of reading each file again.
      this.saveHashes();
      let sub;
      try {
        sub = await scanTree(abs, {
          isExcluded: (p, isDir) => this.tree.isExcluded(`${d.path}/${p}`, isDir),
          cache: null, hasher: this.tree.hasher, hashRetries: 0, levelsAbove: d.path.split('/').length,
          needsHash: (p, size) => hashDecides(this.mirror.get(`${d.path}/${p}`), size),
          knownHash: (p, size, mtimeMs, ino) => this.tree.cache.lookup(`${d.path}/${p}`, size, mtimeMs, ino),
          onWarning: (code, message, path) => {
            if (code === 'FILE_UNSTABLE' && path !== undefined) unstable.push(path);
            // The subtree's walk names paths relative to it: name them from the root, as a full scan does.
            else this.tree.warn(code, path !== undefined && message.startsWith(path) ? `${d.path}/${message}` : message);
          },
        });
      } catch (err) {
        // Replaced or removed while it was scanned: look again once it settles (for the whole
        // source root these codes are final; for a directory inside it they are just a race).
        if (err instanceof WarmsyncError && (err.code === 'SOURCE_MISSING' || err.code === 'SOURCE_NOT_DIR')) return 'unstable';
        throw err;
      }
      const entries = [self, ...sub.entries.map((e) => ({ ...e, path: `${d.path}/${e.path}` }))];
      this.rememberHashes(d.path, sub);
      for (const path of unstable) this.dirty.mark(`${d.path}/${path}`, Date.now(), { firstSeen: d.firstSeen });
      // No row for the directory, none below it (the manifest records every parent): no pass over the mirror.
      // A scan that could not read part of the subtree answers no mark: a later one may.
      return { entries, rows: [], rowsBelow: row !== undefined, ...(sub.incomplete.length === 0 ? { scannedFrom: scanStarted } : {}) };
    }
    if (!st.isFile()) {
      // A FIFO, socket or device: re-created on the standby, never opened (rsync -a's -D).
      return { entries: [{ ...base, kind: 'special', size: 0, hash: null, target: specialNode(st) }], rows: row ? [row] : [] };
    }
    const cached = this.tree.cache.lookup(d.path, st.size, wholeMs(st.mtimeMs), st.ino);
    let hash = cached;
    if (hash === null && hashDecides(row, st.size)) {
      try {
        const result = await this.tree.hasher.hashFile(abs, { size: st.size, mtimeMs: wholeMs(st.mtimeMs), ino: st.ino, dev: st.dev });
        hash = result.hash;
        if (isCacheable(result.mtimeMs, Date.now())) this.tree.cache.remember([{ path: d.path, size: result.size, mtimeMs: result.mtimeMs, ino: result.ino, hash }]);
        else this.racy.set(d.path, result.mtimeMs + RACY_MS + 1);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err instanceof WarmsyncError ? err.code : '');
        if (code === 'FILE_CHANGED') return 'unstable';
        if (code === 'ENOENT' || code === 'ENOTDIR') return { entries: [], rows: row ? [row] : [] };
        throw err;
      }
    }
    return { entries: [{ ...base, kind: 'file', size: st.size, hash, target: null }], rows: row ? [row] : [] };
  }
}

/** What the source and the mirror hold at a dirty path. */
interface Described {
  readonly entries: Entry[];
  readonly rows: ManifestEntry[];
  /** The mirror's rows at and below the path belong to the plan too (one range of the mirror's key each: agent/mirror.ts). */
  readonly rowsBelow?: boolean;
  /** The path's whole subtree was scanned, from this time (Date.now()) on, and read completely. */
  readonly scannedFrom?: number;
}

/** `change` with the hash the sender computed on the way, when the plan left it null. */
function withSentHash(change: Change, sent: HashedWhileSent | undefined): Change {
  const next = change.new;
  if (sent === undefined || next === null || next.kind !== 'file' || next.hash !== null) return change;
  return { ...change, new: { ...next, hash: sent.hash } };
}
