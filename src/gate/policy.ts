/**
 * The gate: which tombstones may leave the disk, which files a promoted standby does not need, and
 * whether failing over now is safe. Pure functions over manifest rows and times (shared/DESIGN.md,
 * "The problem the gate solves", invariants 1 and 4). All times are epoch ms on the active's clock.
 *
 * When in doubt, keep the file: keeping garbage costs disk, losing a referenced binary is the disaster.
 */
import type { EntryKind, FeedGap } from '../entry.js';
import { formatTime } from '../time.js';

export interface GateTimes {
  /** Margin for clock differences between the DB primary and the agent host. */
  readonly skewMs: number;
  /** How much longer a deletion waits, for the transaction that made it to commit. */
  readonly deleteGraceMs: number;
}

export const DEFAULT_SKEW_MS = 2000;
export const DEFAULT_DELETE_GRACE_MS = 600_000;

export interface TombstoneRow { readonly path: string; readonly deletedAt: number }
export interface BornRow { readonly path: string; readonly kind: EntryKind; readonly bornMs: number }

/**
 * Invariant 1: a deletion observed at D is applied only once the DB snapshot T satisfies
 * D + skew + grace <= T, i.e. the deleting transaction has surely committed by T, so the DB at T
 * no longer references the file.
 */
export function mayApplyTombstone(deletedAt: number, snapshotTime: number, times: GateTimes): boolean {
  return deletedAt + times.skewMs + times.deleteGraceMs <= snapshotTime;
}

/** The tombstones T allows, children before parents (so directories empty before they go). */
export function tombstonesAllowed<R extends TombstoneRow>(tombstones: readonly R[], snapshotTime: number | null, times: GateTimes): R[] {
  if (snapshotTime === null) return [];
  return tombstones
    .filter((t) => mayApplyTombstone(t.deletedAt, snapshotTime, times))
    .sort((a, b) => (a.path < b.path ? 1 : a.path > b.path ? -1 : 0));
}

/**
 * Files and symlinks a DB promoted at T cannot reference: written (on the active's clock) after
 * T + skew, since the application writes a binary before it commits the row naming it.
 * Directories are left alone: an empty directory references nothing and costs nothing.
 */
export function bornAfter<R extends BornRow>(rows: readonly R[], snapshotTime: number, skewMs: number): R[] {
  return rows.filter((r) => r.kind !== 'dir' && r.bornMs > snapshotTime + skewMs);
}

export interface FailoverVerdict {
  readonly safe: boolean;
  /** One sentence an operator can act on. */
  readonly reason: string;
  /**
   * The latest DB recovery target the filestore covers: W - skew. A standby DB recovered to at most
   * this time references only binaries the standby holds (invariant 4). Null without a watermark.
   */
  readonly recoveryTarget: number | null;
}

/**
 * Why the standby lacks files W vouches for, whatever W says: its root (or a file system mounted
 * below it) is not where the receiver wrote (gate/standby-root.ts says what became of it), or
 * `verify` found files missing or corrupt that no full pass has sent again yet.
 */
export type StandbyLack =
  | { readonly kind: 'root'; readonly detail: string }
  | { readonly kind: 'verify'; readonly files: number; readonly at: number };

/**
 * Failing over with the standby DB at T is safe when the watermark W (every change the agent
 * observed before W is durable here) satisfies W >= T + skew. While the agent's change feed is
 * incomplete (`feedGap`), W is held at the gap's start, so the verdict names the gap when it is
 * what stands between W and T. W vouches for what reached the standby: with files known to be
 * lacking there (`lack`), nothing is safe.
 */
export function failoverVerdict(
  snapshotTime: number | null, watermark: number | null, skewMs: number, feedGap: FeedGap | null = null, lack: StandbyLack | null = null,
): FailoverVerdict {
  const recoveryTarget = watermark === null ? null : watermark - skewMs;
  if (lack !== null) return { safe: false, reason: lackReason(lack), recoveryTarget };
  if (watermark === null) {
    return { safe: false, reason: 'no watermark yet: no agent has completed a sync to this standby', recoveryTarget };
  }
  if (snapshotTime === null) {
    return { safe: false, reason: 'no DB snapshot time recorded (run warmsync snapshot, or the receiver\'s --snapshot-cmd)', recoveryTarget };
  }
  const lead = watermark - (snapshotTime + skewMs);
  if (lead >= 0) {
    return { safe: true, reason: `the filestore is ${lead} ms ahead of the DB snapshot plus skew`, recoveryTarget };
  }
  if (feedGap !== null) {
    return {
      safe: false,
      reason: `change feed incomplete since ${formatTime(feedGap.since)} (${feedGap.reason}): the watermark is held there until a rescan has covered it; recover the DB only up to the recovery target`,
      recoveryTarget,
    };
  }
  return {
    safe: false,
    reason: `the filestore is ${-lead} ms behind the DB snapshot plus skew: recover the DB only up to the recovery target, or wait for the agent`,
    recoveryTarget,
  };
}

function lackReason(lack: StandbyLack): string {
  if (lack.kind === 'root') return `the standby root ${lack.detail}: a failover would not find its files there`;
  return `verify found ${lack.files} file(s) missing or corrupt here at ${formatTime(lack.at)}: the agent sends them again at its next full pass (restarting it starts one)`;
}

/**
 * A snapshot time T the standby cannot have yet: later than the standby's clock plus skew. Such a T
 * (a typo, a clock gone wrong) would apply every tombstone at once and, T never moving backwards,
 * shadow every later true T, so the gate would be off for good. Returns by how many ms T is ahead
 * of `now + skew`, or null when T is acceptable.
 */
export function snapshotAheadBy(snapshotTime: number, now: number, skewMs: number): number | null {
  const lead = snapshotTime - (now + skewMs);
  return lead > 0 ? lead : null;
}

/** The one line an operator reads when a future T is refused. */
export function futureSnapshotProblem(snapshotTime: number, now: number, aheadMs: number): string {
  return `T ${formatTime(snapshotTime)} is ${aheadMs} ms past this host's clock (${formatTime(now)}) plus skew: a DB cannot have replayed a transaction from the future (a typo, or a clock is wrong)`;
}
