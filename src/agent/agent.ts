/**
 * What both agent modes share: the source tree's exclusion rules, the hash cache, and one full
 * reconciliation pass (fetch the receiver's manifest -> scan -> plan -> safety check -> send ->
 * flush). The manifest comes first so that the scan hashes only the files whose hash decides
 * what to do: a file with no row of its size on the standby is sent whatever its hash, and the
 * sender hashes it from the bytes it sends. `runOnce` is `agent --once`: passes until the standby
 * matches. live.ts keeps watching.
 */
import { withoutSetuid, type Entry, type ManifestEntry } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { ExcludeMatcher, type FilterRule } from '../config/excludes.js';
import { actionOf, TreeMerge, type Change } from '../plan/diff.js';
import { checkSafety, isDeletion, type DeletionGuard, type SafetyHalt, type SafetyOptions } from '../plan/safety.js';
import { countingHasher, type ProgressSink } from '../progress/progress.js';
import { AgentCache, agentCachePath } from '../scan/cache.js';
import { createHasher, sharingConcurrentHashes, type FileHasher } from '../scan/hash.js';
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
import { Sender, type OpFailure, type SendReport } from './sender.js';

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
  readonly changes: readonly Change[];
  readonly report: SendReport;
  /** The receiver's manifest as fetched before this pass; `mirrorAfter` brings it up to date. The caller closes it. */
  readonly mirror: Mirror;
  /** When the changes were sent: the deletedAt of the tombstones among them. */
  readonly deletedAt: number;
  /** Deletions the plan had but a safety halt held back (live mode only; never sent). */
  readonly held: readonly Change[];
}

/**
 * How a pass meets a safety halt (invariant 5): `agent --once` throws it before sending anything;
 * the live agent trips `guard` and sends everything but the deletions. `release` skips the check
 * (--release-deletions, the operator's word that the source is as it should be).
 */
export interface PassSafety { readonly options: SafetyOptions; readonly guard: DeletionGuard | null; readonly release: boolean }

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
  /** Settles when the last scan begun has ended (oneScanAtATime). */
  private scanning: Promise<void> = Promise.resolve();

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
    return new SourceTree(source, rules, stateDir, cache, sharingConcurrentHashes(await createHasher({ source })), log, progress, noSetuid);
  }

  readonly warn = (code: string, message: string): void => {
    this.warnings++;
    this.log.warn(code, message);
  };

  /**
   * One full reconciliation over `sender`'s connection; a safety halt is met as `safety` says.
   * `log` names the standby when the agent feeds several.
   */
  async reconcile(sender: Sender, safety: PassSafety, log: Logger = this.log): Promise<PassResult> {
    const progress = this.progress;
    this.progress = null;
    try {
      return await this.reconcilePass(sender, safety, progress, log);
    } finally {
      progress?.done();
    }
  }

  /**
   * Runs `scan` after every scan begun before it has ended. Standbys reconciled at once (an agent
   * feeding several, all connecting at start) then each read the cache the previous scan wrote,
   * so a file is hashed once whatever the number of standbys, and one tree walk is held in memory
   * at a time. Scans are local work: a slow standby's transfers are not behind this.
   */
  private oneScanAtATime<T>(scan: () => Promise<T>): Promise<T> {
    const mine = this.scanning.then(scan);
    this.scanning = mine.then(() => undefined, () => undefined);
    return mine;
  }

  private async reconcilePass(sender: Sender, safety: PassSafety, progress: ProgressSink | null, log: Logger): Promise<PassResult> {
    const mirror = Mirror.open();
    try {
      return await this.planAndSend(mirror, sender, safety, progress, log);
    } catch (err) {
      mirror.close();
      throw err;
    }
  }

  private async planAndSend(mirror: Mirror, sender: Sender, safety: PassSafety, progress: ProgressSink | null, log: Logger): Promise<PassResult> {
    const scanStarted = Date.now();
    await sender.fetchManifest((entries) => mirror.setAll(entries));
    progress?.phase('hashing', null);
    const hasher = progress === null ? this.hasher : countingHasher(this.hasher, (bytes) => progress.add(1, bytes));
    // Planned as it is scanned: the scan's entries and the mirror's rows (by their key) both come
    // in tree order, so neither is held whole.
    const merge = new TreeMerge(mirror.inTreeOrder(), this.hides);
    let scan: ScanResult;
    try {
      scan = await this.oneScanAtATime(() => scanTree(this.root, {
        isExcluded: this.isExcluded, cache: this.cache, hasher, onWarning: this.warn,
        needsHash: (path, size) => hashDecides(merge.rowAt(path), size),
        onEntry: (entry) => merge.add(this.planned(entry)),
      }));
    } catch (err) {
      merge.close();
      throw err;
    }
    const planned = merge.finish(scan.incomplete);
    const standbyFiles = mirror.liveFileCount();
    const s = scan.stats;
    // A path the scan could not read (unreadable, or changing while hashed) is there, not deleted:
    // a source holding only such paths is not an empty (unmounted) one.
    const found = s.files + s.dirs + s.symlinks + s.specials;
    const halt = safety.release ? null : checkSafety(planned, found + scan.incomplete.length, standbyFiles, safety.options);
    const { changes, held } = this.holdDeletions(planned, halt, safety);
    if (progress !== null) {
      const transfers = changes.flatMap((c) => (actionOf(c) === 'transfer' && c.new !== null ? [c.new.size] : []));
      progress.phase('sending', { files: transfers.length, bytes: transfers.reduce((a, b) => a + b, 0) });
      sender.onProgress = (files, bytes) => progress.add(files, bytes);
    }
    log.info(`scanned ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks (${s.hashed} hashed, ${s.cached} from cache, ${s.unhashed} to hash while sending); ${changes.length} change(s) to send`);
    const deletedAt = Date.now();
    const report = await sender.send(changes, deletedAt).finally(() => {
      sender.onProgress = null;
    });
    this.rememberSentHashes(report);
    return { scanStarted, scan, changes, report, mirror, deletedAt, held };
  }

  /** The changes a pass may send, and the deletions a safety halt holds back (see PassSafety). */
  private holdDeletions(planned: Change[], halt: SafetyHalt | null, safety: PassSafety): { changes: Change[]; held: Change[] } {
    const { guard } = safety;
    if (guard === null) {
      if (halt !== null) throw new WarmsyncError(halt.code, halt.message);
      return { changes: planned, held: [] };
    }
    if (halt !== null) guard.trip(halt);
    else if (safety.release) guard.release();
    const held = guard.halt === null ? [] : planned.filter(isDeletion);
    // Nothing left to hold (the source came back): deletions flow again.
    if (held.length === 0) {
      guard.release();
      return { changes: planned, held };
    }
    return { changes: planned.filter((c) => !isDeletion(c)), held };
  }

  /** Caches the hashes the sender computed, so the next scan does not read those files again. */
  private rememberSentHashes(report: SendReport): void {
    const rows = report.hashedWhileSent.filter((h) => isCacheable(h.mtimeMs, h.hashedAt));
    if (rows.length === 0) return;
    try {
      this.cache.remember(rows);
    } catch (err) {
      this.warn('CACHE_FAILED', `${describeError(err)}; ${rows.length} hash(es) will be computed again next time`);
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
 * Does a file's hash decide what the plan does with it? Only when the standby holds an undamaged
 * file of the same size at its path (live or tombstoned): same hash, no transfer (diff.ts actionOf).
 * Any other file is transferred, so the sender hashes it on the way instead of the scan.
 */
export function hashDecides(row: ManifestEntry | undefined, size: number): boolean {
  return row !== undefined && row.kind === 'file' && !row.damaged && row.size === size;
}

/**
 * The pass's mirror updated by every change the receiver applied: the live agent plans against it.
 * `agent --once` never asks for it, so a first sync of 100k files does not write 100k rows at its end.
 */
export function mirrorAfter(pass: PassResult): Mirror {
  const sentHashes = new Map(pass.report.hashedWhileSent.map((h) => [h.path, h.hash]));
  pass.mirror.setAll(pass.changes.flatMap((change, i) => {
    if (pass.report.outcomes[i] !== null) return [];
    const next = change.new;
    // A file the scan left unhashed: the receiver recorded the hash the sender computed.
    const sent = next?.kind === 'file' && next.hash === null ? { ...change, new: { ...next, hash: sentHashes.get(change.path) ?? null } } : change;
    const row = rowAfter(sent, pass.deletedAt);
    return row === null ? [] : [row];
  }));
  return pass.mirror;
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
 * `agent --once`: every standby synced at once, each on its own connection, from one source tree
 * (one hash cache, one scan at a time: a file is hashed once). A standby that fails does not stop
 * the others; the outcomes come back in the order of `options.urls`. `dialed`: the connections,
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
      const { scanStarted, scan, report, mirror } = await tree.reconcile(sender, { options: options.safety, guard: null, release: options.releaseDeletions && pass === 1 }, log);
      mirror.close(); // each pass fetches the manifest anew
      if (pass === 1) {
        summary.filesScanned = scan.stats.files;
        summary.hashed = scan.stats.hashed + report.hashedWhileSent.length;
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
