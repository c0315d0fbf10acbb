/**
 * The agent's one-shot run (`agent --once`): scan -> fetch the receiver's manifest -> plan -> safety
 * check -> send -> flush. A pass whose failures can heal by themselves (a file changed while it was
 * read, content the standby lost) is followed by another, up to MAX_PASSES.
 */
import { mkdir, stat } from 'node:fs/promises';
import type { ManifestEntry } from '../entry.js';
import { WarmsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { ExcludeMatcher, type FilterRule } from '../config/excludes.js';
import { diffTrees, type Change } from '../plan/diff.js';
import { checkSafety, type SafetyOptions } from '../plan/safety.js';
import { fromWireEntry } from '../protocol/messages.js';
import { AgentCache, agentCachePath } from '../scan/cache.js';
import { createHasher } from '../scan/hash.js';
import { scanTree, type ScanStats } from '../scan/scanner.js';
import { isTempName } from '../receiver/staging.js';
import { isWithin, baseName } from '../relpath.js';
import type { StateDir } from '../statedir.js';
import { dial } from '../transport/client.js';
import { Sender, type OpFailure } from './sender.js';

export interface AgentOptions {
  readonly root: string;
  readonly url: string;
  readonly token: string;
  readonly stateDir: StateDir;
  readonly rules: readonly FilterRule[];
  readonly safety: SafetyOptions;
  readonly connectAttempts: number;
  readonly log: Logger;
}

export interface OnceSummary {
  filesScanned: number;
  filesSent: number;
  bytesSent: number;
  skippedUnchanged: number;
  metaUpdates: number;
  tombstones: number;
  hashed: number;
  passes: number;
  warnings: number;
  elapsedMs: number;
}

const MAX_PASSES = 3;
/** Failures that another pass can fix: rescanning gives a fresh hash, or the content is sent again. */
const RETRYABLE = new Set(['FILE_CHANGED', 'CHECKSUM_MISMATCH', 'NEEDS_CONTENT', 'CONFLICT', 'ABORTED']);

export async function runOnce(options: AgentOptions): Promise<OnceSummary> {
  const started = Date.now();
  const { root, log } = options;
  const rootStat = await stat(root).catch(() => null);
  if (rootStat === null) throw new WarmsyncError('SOURCE_MISSING', `source root ${root} does not exist (is its disk mounted?); nothing was sent`);
  if (!rootStat.isDirectory()) throw new WarmsyncError('SOURCE_NOT_DIR', `source root ${root} is not a directory`);

  const matcher = new ExcludeMatcher(options.rules);
  const stateRel = options.stateDir.relToRoot;
  // The state dir and any receiver temp files (after a role swap) are never synced.
  const isExcluded = (path: string, isDir: boolean): boolean =>
    (stateRel !== null && isWithin(path, stateRel)) || isTempName(baseName(path)) || matcher.excludes(path, isDir);
  const hides = (path: string, isDir: boolean): boolean =>
    (stateRel !== null && isWithin(path, stateRel)) || matcher.hides(path, isDir);

  await mkdir(options.stateDir.abs, { recursive: true, mode: 0o700 });
  const cache = AgentCache.open(agentCachePath(options.stateDir.abs));
  if (cache.movedAside !== null) log.warn('CACHE_REBUILT', `the agent cache was unreadable; moved it to ${cache.movedAside} and started a new one`);
  const hasher = await createHasher();
  const session = await dial({
    url: options.url, token: options.token, attempts: options.connectAttempts,
    baseDelayMs: 250, maxDelayMs: 5000, handshakeTimeoutMs: 10_000, log,
  });
  const sender = new Sender(session.conn, session, root);
  const summary: OnceSummary = {
    filesScanned: 0, filesSent: 0, bytesSent: 0, skippedUnchanged: 0, metaUpdates: 0, tombstones: 0,
    hashed: 0, passes: 0, warnings: 0, elapsedMs: 0,
  };
  try {
    let failures: readonly OpFailure[] = [];
    for (let pass = 1; pass <= MAX_PASSES; pass++) {
      summary.passes = pass;
      const scanStarted = Date.now();
      const scan = await scanTree(root, {
        isExcluded, cache, hasher,
        onWarning: (code, message) => {
          summary.warnings++;
          log.warn(code, message);
        },
      });
      if (pass === 1) {
        summary.filesScanned = scan.stats.files;
        summary.hashed = scan.stats.hashed;
      }
      const manifest: ManifestEntry[] = [];
      await sender.fetchManifest((entries) => {
        for (const e of entries) manifest.push({ ...fromWireEntry(e), bornMs: 0 });
      });
      const changes = diffTrees(scan.entries, manifest, { hides, unknown: scan.incomplete });
      const standbyFiles = manifest.filter((m) => m.kind === 'file' && m.deletedAt === null).length;
      const halt = checkSafety(changes, scan.entries.length, standbyFiles, options.safety);
      if (halt !== null) throw new WarmsyncError(halt.code, halt.message);
      logPlan(log, pass, changes, scan.stats);

      const report = await sender.send(changes, Date.now());
      summary.filesSent += report.filesSent;
      summary.bytesSent += report.bytesSent;
      summary.metaUpdates += report.metaUpdates;
      summary.tombstones += report.tombstones;
      if (pass === 1) summary.skippedUnchanged = scan.stats.files - report.filesSent - report.metaUpdates;
      failures = report.failures;
      if (failures.length === 0) {
        // Everything the scan saw is now durable on the standby: changes before the scan began are covered.
        if (scan.incomplete.length === 0) sender.heartbeat(scanStarted);
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
    cache.close();
  }
  summary.elapsedMs = Date.now() - started;
  return summary;
}

function logPlan(log: Logger, pass: number, changes: readonly Change[], stats: ScanStats): void {
  log.info(`pass ${pass}: scanned ${stats.files} files, ${stats.dirs} dirs, ${stats.symlinks} symlinks (${stats.hashed} hashed, ${stats.cached} from cache); ${changes.length} change(s) to send`);
}
