/**
 * What both agent modes share: the source tree's exclusion rules, the hash cache, and one full
 * reconciliation pass (fetch the receiver's manifest -> scan, planning and sending creations and
 * updates as it goes -> safety check -> deletions -> flush). The manifest comes first so that the
 * scan hashes only the files whose hash decides what to do: a file with no row of its size on the
 * standby is sent whatever its hash, and the sender hashes it from the bytes it sends. `runOnce`
 * is `agent --once`: passes until the standby matches. live.ts keeps watching.
 */
import { withoutSetuid, type Entry, type ManifestEntry } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { ExcludeMatcher, type FilterRule } from '../config/excludes.js';
import { actionOf, replacesDirectory, TreeMerge, type Change } from '../plan/diff.js';
import { checkSafety, type DeletionGuard, type SafetyHalt, type SafetyOptions } from '../plan/safety.js';
import { countingHasher, type ProgressSink } from '../progress/progress.js';
import { AgentCache, agentCachePath } from '../scan/cache.js';
import { createHasher, sharingHashes, type FileHasher } from '../scan/hash.js';
import { SourceRoot, checkSourceRoot } from '../scan/openfile.js';
import { isCacheable, scanTree, type ScanResult } from '../scan/scanner.js';
import { isTempName } from '../confined/temp.js';
import { isWithin, baseName } from '../relpath.js';
import { sharedOwner } from '../owner/names.js';
import { ensureStateDir, type StateDir } from '../statedir.js';
import type { ClientTls, Session } from '../transport/client.js';
import { standbyLog, type DialedStandbys } from './dial-once.js';
import { compressorFor, type CompressSetting } from './compress.js';
import { Mirror } from './mirror.js';
import { PassSending } from './pass-sending.js';
import { Sender, type HashedWhileSent, type OpFailure, type SendReport } from './sender.js';

export interface AgentOptions {
  readonly root: string;
  /** The standbys' receivers (--connect, one or more): each is synced on its own connection. */
  readonly urls: readonly string[];
  readonly token: string;
  readonly stateDir: StateDir;
  readonly rules: readonly FilterRule[];
  readonly safety: SafetyOptions;
  /** --release-deletions: the first full pass sends every deletion it finds, halts or not (an operator checked the source). */
  readonly releaseDeletions: boolean;
  readonly connectAttempts: number;
  readonly log: Logger;
  /** How to trust a wss:// receiver (default: the system CAs). */
  readonly tls?: ClientTls;
  /** Told how the first reconciliation (the initial scan and sync) is going. */
  readonly progress?: ProgressSink | null;
  /** --no-setuid: regular files are sent, written and recorded without their setuid and setgid bits. */
  readonly noSetuid?: boolean;
  /** --bwlimit: bytes per second of file data, at most, on each standby's connection; null or absent: no limit. */
  readonly bwlimit?: number | null;
  /** --compress: chunks go compressed with this method where the receiver offers it (null, the default: never). */
  readonly compress?: CompressSetting;
}

export interface OnceSummary {
  filesScanned: number;
  filesSent: number;
  bytesSent: number;
  /** bytesSent as it went on the wire: smaller where --compress paid. */
  wireBytesSent: number;
  skippedUnchanged: number;
  metaUpdates: number;
  tombstones: number;
  hashed: number;
  passes: number;
  warnings: number;
  elapsedMs: number;
}

/** Failures that another pass can fix: rescanning gives a fresh hash, or the content is sent again. */
export const RETRYABLE = new Set(['FILE_CHANGED', 'CHECKSUM_MISMATCH', 'NEEDS_CONTENT', 'CONFLICT', 'ABORTED']);
const MAX_PASSES = 3;

export interface PassResult {
  readonly scanStarted: number;
  readonly scan: ScanResult;
  readonly report: SendReport;
  /**
   * The receiver's manifest as fetched before this pass, and with `mirrorFollows` every change it
   * applied since (the live agent plans against it). The caller closes it.
   */
  readonly mirror: Mirror;
  /** Deletions the plan had but a safety halt held back (live mode only; never sent). */
  readonly held: readonly Change[];
  /** Files the sender hashed too soon after their mtime to cache (scan.ts racyMs). */
  readonly sentRacy: readonly HashedWhileSent[];
}

/**
 * How a pass meets a safety halt (invariant 5): `agent --once` throws it once the scan has ended,
 * before any deletion is sent; the live agent trips `guard` and holds the deletions back. Either
 * way the creations and updates, sent as the scan found them, stand. `release` skips the check
 * (--release-deletions, the operator's word that the source is as it should be).
 */
export interface PassSafety { readonly options: SafetyOptions; readonly guard: DeletionGuard | null; readonly release: boolean }

/** What one full pass does besides making the standby match: how it meets a safety halt; whether its mirror follows what the receiver applies. */
export interface PassOptions { readonly safety: PassSafety; readonly mirrorFollows: boolean }

/** The source tree as the agent sees it: exclusion, cache, hasher. */
export class SourceTree {
  /** Is this path excluded from scanning and watching? */
  readonly isExcluded: (path: string, isDir: boolean) => boolean;
  /** Is this standby path hidden by the rules (so never deleted there)? */
  readonly hides: (path: string, isDir: boolean) => boolean;
  /** A source entry as it is to be on the standby (--no-setuid): what is planned from. */
  readonly planned: (entry: Entry) => Entry;
  warnings = 0;
  /** Reports the first reconciliation only: later ones are the quiet routine. */
  private progress: ProgressSink | null;

  private constructor(
    readonly source: SourceRoot, rules: readonly FilterRule[], stateDir: StateDir, readonly cache: AgentCache, readonly hasher: FileHasher,
    readonly log: Logger, progress: ProgressSink | null, noSetuid: boolean,
  ) {
    this.progress = progress;
    this.planned = noSetuid ? withoutSetuid : (entry) => entry;
    const matcher = new ExcludeMatcher(rules);
    const stateRel = stateDir.relToRoot;
    const isState = (path: string): boolean => stateRel !== null && isWithin(path, stateRel);
    // The state dir and any receiver temp files (after a role swap) are never synced.
    this.isExcluded = (path, isDir) => isState(path) || isTempName(baseName(path)) || matcher.excludes(path, isDir);
    this.hides = (path, isDir) => isState(path) || matcher.hides(path, isDir);
  }

  static async open(root: string, rules: readonly FilterRule[], stateDir: StateDir, log: Logger, progress: ProgressSink | null = null, noSetuid = false): Promise<SourceTree> {
    await checkSourceRoot(root);
    await ensureStateDir(stateDir);
    const cache = AgentCache.open(agentCachePath(stateDir.abs));
    if (cache.movedAside !== null) log.warn('CACHE_REBUILT', `the agent cache was unreadable; moved it to ${cache.movedAside} and started a new one`);
    // Every source file is opened beneath the root's descriptor (scan/openfile.ts).
    const source = new SourceRoot(root.endsWith('/') && root.length > 1 ? root.slice(0, -1) : root);
    return new SourceTree(source, rules, stateDir, cache, sharingHashes(await createHasher({ source }), { capacity: RECENT_HASHES, mayKeep: (result, hashedAt) => isCacheable(result.mtimeMs, hashedAt) }), log, progress, noSetuid);
  }

  readonly warn = (code: string, message: string): void => {
    this.warnings++;
    this.log.warn(code, message);
  };

  /**
   * One full reconciliation over `sender`'s connection; a safety halt is met as `safety` says.
   * `log` names the standby when the agent feeds several.
   */
  async reconcile(sender: Sender, options: PassOptions, log: Logger = this.log): Promise<PassResult> {
    const progress = this.progress;
    this.progress = null;
    try {
      return await this.reconcilePass(sender, options, progress, log);
    } finally {
      progress?.done();
    }
  }

  /**
   * The cache's hash for the file as it is now, or null: written by a scan that ended after the
   * asking one began (another standby's pass; a scan beside it shares its reads: sharingHashes).
   */
  private knownHash(path: string, size: number, mtimeMs: number, ino: number): string | null {
    try {
      return this.cache.lookup(path, size, mtimeMs, ino);
    } catch {
      return null; // the scan's own cursor reports a failing cache
    }
  }

  private async reconcilePass(sender: Sender, options: PassOptions, progress: ProgressSink | null, log: Logger): Promise<PassResult> {
    const mirror = Mirror.open();
    try {
      return await this.planAndSend(mirror, sender, options, progress, log);
    } catch (err) {
      mirror.close();
      throw err;
    }
  }

  /**
   * Plans as it scans and sends as it plans (PassSending): creations and updates go out in tree
   * order while the scan goes on, and the scan waits while they are queued. Deletions are known
   * only at the end (a row the source lacks), so they go last, once the safety check has seen them
   * all (invariant 5), and with them any upsert that replaces a directory, which must find the
   * paths below it already tombstoned (replacesDirectory).
   */
  private async planAndSend(mirror: Mirror, sender: Sender, { safety, mirrorFollows }: PassOptions, progress: ProgressSink | null, log: Logger): Promise<PassResult> {
    const scanStarted = Date.now();
    await sender.fetchManifest((entries) => mirror.setAll(entries));
    // Counted before the pass: the live agent's mirror takes each change as the receiver applies it.
    const standbyFiles = mirror.liveFileCount();
    const hashes = new SentHashes(this.cache, this.warn);
    const sending = new PassSending(sender, {
      onHashed: (row) => hashes.add(row),
      onApplied: mirrorFollows ? (change, deletedAt) => applyToMirror(mirror, change, deletedAt) : undefined,
    });
    // What the plan transfers, and what went out while the scan ran: the sending phase's total and start.
    const toSend = { files: 0, bytes: 0 };
    const sent = { startedMs: Date.now(), done: { files: 0, bytes: 0 } };
    sender.onProgress = (files, bytes) => {
      sent.done.files += files;
      sent.done.bytes += bytes;
      progress?.add(files, bytes);
    };
    const replacing: Change[] = [];
    let upserts = 0;
    const upsert = (change: Change): void => {
      upserts++;
      if (actionOf(change) === 'transfer' && change.new !== null) {
        toSend.files++;
        toSend.bytes += change.new.size;
      }
      if (replacesDirectory(change)) replacing.push(change);
      else sending.send(change, 0); // no tombstone: no deletedAt
    };
    try {
      // The scan's phase counts the files read: hashed by the scan, or sent as it went.
      progress?.phase('scanning', null);
      const hasher = progress === null ? this.hasher : countingHasher(this.hasher, (bytes) => progress.add(1, bytes));
      // The scan's entries and the mirror's rows (by their key) both come in tree order: neither is held whole.
      const merge = new TreeMerge(mirror.inTreeOrder(), this.hides, upsert);
      let scan: ScanResult;
      try {
        scan = await scanTree(this.root, {
          isExcluded: this.isExcluded, cache: this.cache, hasher, onWarning: this.warn,
          needsHash: (path, size) => hashDecides(merge.rowAt(path), size),
          knownHash: (path, size, mtimeMs, ino) => this.knownHash(path, size, mtimeMs, ino),
          onEntry: (entry) => merge.add(this.planned(entry)),
          room: () => sending.room(),
        });
      } catch (err) {
        merge.close();
        await sending.abandon();
        throw err;
      }
      const deletions = merge.finish(scan.incomplete);
      const s = scan.stats;
      // A path the scan could not read (unreadable, or changing while hashed) is there, not deleted:
      // a source holding only such paths is not an empty (unmounted) one.
      const found = s.files + s.dirs + s.symlinks + s.specials;
      const halt = safety.release ? null : checkSafety(deletions, found + scan.incomplete.length, standbyFiles, safety.options);
      if (halt !== null && safety.guard === null) {
        // agent --once: what was sent stands (it is on the source); the halt is the run's outcome.
        await sending.finish();
        hashes.flush();
        throw new WarmsyncError(halt.code, halt.message);
      }
      const { send, held } = holdDeletions(deletions, halt, safety);
      progress?.phase('sending', toSend, sent);
      log.info(`scanned ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks (${s.hashed} hashed, ${s.cached} from cache, ${s.unhashed} to hash while sending); ${upserts + send.length} change(s) to send`);
      const deletedAt = Date.now();
      for (const change of send) sending.send(change, deletedAt);
      for (const change of replacing) sending.send(change, deletedAt);
      const report = await sending.finish();
      hashes.flush();
      return { scanStarted, scan, report, mirror, held, sentRacy: hashes.racy };
    } finally {
      sender.onProgress = null;
    }
  }

  /** The source root's path, as the operator gave it. */
  get root(): string {
    return this.source.path;
  }

  close(): void {
    this.cache.close();
    this.source.close();
  }
}

/**
 * The deletions a pass may send, and those a safety halt holds back: with the live agent's guard,
 * a halt (this pass's, or one still in force) holds them all until released; without a guard
 * (`agent --once`, which throws a halt before this), all go.
 */
function holdDeletions(deletions: Change[], halt: SafetyHalt | null, { guard, release }: PassSafety): { send: Change[]; held: Change[] } {
  if (guard === null) return { send: deletions, held: [] };
  if (halt !== null) guard.trip(halt);
  else if (release) guard.release();
  // Nothing left to hold (the source came back): deletions flow again.
  if (guard.halt === null || deletions.length === 0) {
    guard.release();
    return { send: deletions, held: [] };
  }
  return { send: [], held: deletions };
}

/** Hashes the agent's hasher remembers for the passes beside the one that computed them (~6 MB). */
const RECENT_HASHES = 32_768;

/** Hashes cached at once, at most, as the sender's come in. */
const CACHE_GROUP = 4096;

/**
 * Files the sender hashed on the way: cached in groups as their ops are answered (a first sync of
 * a million files would otherwise hold every hash to its end); the racy ones, whose hash may not
 * be cached yet, kept for the live agent to look at again.
 */
class SentHashes {
  readonly racy: HashedWhileSent[] = [];
  #group: HashedWhileSent[] = [];
  #failed = false;

  constructor(private readonly cache: AgentCache, private readonly warn: (code: string, message: string) => void) {}

  add(row: HashedWhileSent): void {
    if (!isCacheable(row.mtimeMs, row.hashedAt)) {
      this.racy.push(row);
      return;
    }
    this.#group.push(row);
    if (this.#group.length >= CACHE_GROUP) this.flush();
  }

  /** Caches the group so far; after a failure, nothing more (warned once). */
  flush(): void {
    const rows = this.#group;
    this.#group = [];
    if (rows.length === 0 || this.#failed) return;
    try {
      this.cache.remember(rows);
    } catch (err) {
      this.#failed = true;
      this.warn('CACHE_FAILED', `${describeError(err)}; the files this pass hashed while sending them will be hashed again next time`);
    }
  }
}

/**
 * Does a file's hash decide what the plan does with it? Only when the standby holds an undamaged
 * file of the same size at its path (live or tombstoned): same hash, no transfer (diff.ts actionOf).
 * Any other file is transferred, so the sender hashes it on the way instead of the scan.
 */
export function hashDecides(row: ManifestEntry | undefined, size: number): boolean {
  return row !== undefined && row.kind === 'file' && !row.damaged && row.size === size;
}

/** Updates the agent's copy of the receiver's manifest after the receiver applied `change`. */
export function applyToMirror(mirror: Mirror, change: Change, deletedAt: number): void {
  const row = rowAfter(change, deletedAt);
  if (row !== null) mirror.set(row);
}

/** The receiver's row at `change.path` once it applied `change`; null when it has none. */
function rowAfter(change: Change, deletedAt: number): ManifestEntry | null {
  const { old, new: next } = change;
  if (next === null) return old === null ? null : manifestRow(old, old.bornMs, deletedAt, old.damaged);
  return manifestRow(next, old?.bornMs ?? next.mtimeMs, null, false);
}

/**
 * One mirror row as a plain literal with its fields always in this order (not a spread of whatever
 * object came in): 100k rows share one hidden class, about half the memory.
 */
function manifestRow(e: Entry, bornMs: number, deletedAt: number | null, damaged: boolean): ManifestEntry {
  return {
    path: e.path, kind: e.kind, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, hash: e.hash, target: e.target,
    bornMs, deletedAt, damaged, owner: sharedOwner(e.owner),
  };
}

/** How `agent --once` went for one standby: its summary, or why it failed. */
export type OnceOutcome =
  | { readonly url: string; readonly ok: true; readonly summary: OnceSummary }
  | { readonly url: string; readonly ok: false; readonly error: unknown };

/**
 * `agent --once`: every standby synced at once, each on its own connection and pass, from one
 * source tree (one hash cache, shared hashes: a file is hashed once). A standby that fails does
 * not stop the others; the outcomes come back in the order of `options.urls`. `dialed`: the connections,
 * begun before this module was loaded (dial-once.ts), one per URL in that order.
 */
export async function runOnce(options: AgentOptions, dialed: DialedStandbys): Promise<OnceOutcome[]> {
  const tree = await SourceTree.open(options.root, options.rules, options.stateDir, options.log, options.progress ?? null, options.noSetuid === true);
  try {
    const settled = await Promise.allSettled(options.urls.map((url, i) => syncStandby(tree, url, dialed.sessions[i] as Promise<Session>, options, standbyLog(options, url))));
    return settled.map((s, i) => {
      const url = options.urls[i] as string;
      return s.status === 'fulfilled' ? { url, ok: true, summary: s.value } : { url, ok: false, error: s.reason };
    });
  } finally {
    tree.close();
  }
}

/** Passes over one connection until the standby at `url` matches the source (or a failure no pass can fix). */
async function syncStandby(tree: SourceTree, url: string, dialing: Promise<Session>, options: AgentOptions, log: Logger): Promise<OnceSummary> {
  const started = Date.now();
  const summary: OnceSummary = {
    filesScanned: 0, filesSent: 0, bytesSent: 0, wireBytesSent: 0, skippedUnchanged: 0, metaUpdates: 0, tombstones: 0,
    hashed: 0, passes: 0, warnings: 0, elapsedMs: 0,
  };
  const session = await dialing;
  const sender = new Sender(session.conn, session, tree.source, tree.hasher, {
    bwlimit: options.bwlimit ?? null, compressor: compressorFor(options.compress ?? null, session, url, log),
  });
  try {
    let failures: readonly OpFailure[] = [];
    const unreadable = new Set<string>();
    for (let pass = 1; pass <= MAX_PASSES; pass++) {
      summary.passes = pass;
      // --release-deletions lets the first pass delete whatever it finds; later passes are checked again.
      const safety = { options: options.safety, guard: null, release: options.releaseDeletions && pass === 1 };
      const { scanStarted, scan, report, mirror } = await tree.reconcile(sender, { safety, mirrorFollows: false }, log);
      mirror.close(); // each pass fetches the manifest anew
      if (pass === 1) {
        summary.filesScanned = scan.stats.files;
        summary.hashed = scan.stats.hashed + report.hashedWhileSent;
        summary.skippedUnchanged = scan.stats.files - report.filesSent - report.metaUpdates;
      }
      summary.filesSent += report.filesSent;
      summary.bytesSent += report.bytesSent;
      summary.wireBytesSent += report.wireBytesSent;
      summary.metaUpdates += report.metaUpdates;
      summary.tombstones += report.tombstones;
      // A new file is first read by the sender (the scan leaves it unhashed): one it cannot read is
      // skipped with a warning, as the scan skips one, and is not a failed sync.
      for (const f of report.failures) {
        if (f.code !== 'UNREADABLE' || unreadable.has(f.path)) continue;
        unreadable.add(f.path);
        tree.warn('UNREADABLE', `${f.path}: ${f.message}; skipped`);
      }
      failures = report.failures.filter((f) => f.code !== 'UNREADABLE');
      if (failures.length === 0) {
        // Everything the scan saw is now durable on the standby: changes before the scan began are covered.
        if (scan.incomplete.length === 0 && unreadable.size === 0) sender.heartbeat(scanStarted);
        break;
      }
      for (const f of failures.slice(0, 20)) log.warn(f.code, `${f.path}: ${f.message}`);
      if (!failures.every((f) => RETRYABLE.has(f.code))) break;
      log.info(`pass ${pass}: ${failures.length} op(s) failed in ways a rescan can fix; running another pass`);
    }
    if (failures.length > 0) {
      const first = failures[0] as OpFailure;
      throw new WarmsyncError('SYNC_INCOMPLETE', `${failures.length} change(s) could not be applied (first: ${first.path}: ${first.code} ${first.message}); the standby keeps its previous state for them`);
    }
  } finally {
    session.conn.close();
    await session.conn.closed;
  }
  summary.warnings = tree.warnings;
  summary.elapsedMs = Date.now() - started;
  return summary;
}
