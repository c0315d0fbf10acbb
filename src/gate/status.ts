/**
 * `warmsync status`: one glance for a human, stable JSON for monitoring. Pure: built from numbers
 * the manifest holds; docs/operations.md documents every JSON field.
 */
import type { FeedGap } from '../entry.js';
import { formatTime } from '../time.js';
import { coveredPosition, describeSkew, skewInForce, type SkewSource } from './dbposition.js';
import type { VerifyDamage } from '../manifest/manifest.js';
import { failoverVerdict, type StandbyLack } from './policy.js';

export interface StatusInput {
  readonly root: string;
  readonly now: number;
  readonly files: number;
  readonly bytes: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly tombstones: number;
  readonly oldestTombstone: number | null;
  readonly snapshotTime: number | null;
  readonly watermark: number | null;
  readonly skewMs: number;
  readonly lastContact: number | null;
  readonly agentConnected: boolean;
  readonly receiverPid: number | null;
  readonly quarantined: number;
  readonly feedGap: FeedGap | null;
  readonly deletionsHeld: number;
  /** skewMs is the default, not a value the receiver recorded. */
  readonly skewIsDefault?: boolean;
  /** The newest DB primary position the watermark covered (agent --db-primary), and its cluster. */
  readonly dbPosition?: { readonly lsn: string; readonly at: number; readonly system: string } | null;
  /** The clock offset the agent measured against the DB primary. */
  readonly dbClock?: { readonly offsetMs: number; readonly boundMs: number; readonly at: number } | null;
  /** What became of the standby root since the receiver started on it (gate/standby-root.ts), or null. */
  readonly rootLost?: string | null;
  /** What `verify` found missing or corrupt and no full pass has sent again yet, or null. */
  readonly verifyDamage?: VerifyDamage | null;
}

export interface StatusReport {
  root: string;
  safe: boolean;
  reason: string;
  snapshotTime: number | null;
  watermark: number | null;
  recoveryTarget: number | null;
  /** The WAL position `warmsync failover` recovers to (it takes precedence over the time), or null. */
  recoveryTargetLsn: string | null;
  /** When the agent read that position from the DB primary (its clock; <= watermark). */
  recoveryTargetLsnAt: number | null;
  /** The skew in force for the verdict and the time target, and where it came from. */
  skewMs: number;
  skewSource: SkewSource;
  /** DB primary clock - agent clock as last measured (ms), or null. */
  clockOffsetMs: number | null;
  tombstonesPending: number;
  oldestTombstone: number | null;
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  lastContact: number | null;
  /** ms since the last agent contact, or null. */
  lastContactAgeMs: number | null;
  agentConnected: boolean;
  receiverRunning: boolean;
  receiverPid: number | null;
  quarantined: number;
  /** Since when the agent's change feed may have missed events, and why; null while it is complete. */
  feedIncomplete: FeedGap | null;
  /** Deletions the agent holds back after a safety halt (MASS_DELETE, SOURCE_EMPTY). */
  deletionsHeld: number;
  /** What became of the standby root since the receiver started on it (missing, replaced), or null. */
  rootLost: string | null;
  /** Files `verify` found missing or corrupt, and when, until a full pass has sent them again; or null. */
  verifyDamage: VerifyDamage | null;
}

export function buildStatus(input: StatusInput): StatusReport {
  const clock = input.dbClock ?? null;
  const skew = skewInForce({
    measured: clock, watermark: input.watermark, configuredMs: input.skewIsDefault === true ? null : input.skewMs, defaultMs: input.skewMs,
  });
  const lack: StandbyLack | null = input.rootLost != null ? { kind: 'root', detail: input.rootLost }
    : input.verifyDamage != null ? { kind: 'verify', ...input.verifyDamage } : null;
  const verdict = failoverVerdict(input.snapshotTime, input.watermark, skew.skewMs, input.feedGap, lack);
  // Recorded only once W covered it; checked again, should W ever have been recorded lower since.
  const position = input.dbPosition != null && coveredPosition([input.dbPosition], input.watermark) !== null ? input.dbPosition : null;
  return {
    root: input.root,
    safe: verdict.safe,
    reason: verdict.reason,
    snapshotTime: input.snapshotTime,
    watermark: input.watermark,
    recoveryTarget: verdict.recoveryTarget,
    recoveryTargetLsn: position?.lsn ?? null,
    recoveryTargetLsnAt: position?.at ?? null,
    skewMs: skew.skewMs,
    skewSource: skew.source,
    clockOffsetMs: clock?.offsetMs ?? null,
    tombstonesPending: input.tombstones,
    oldestTombstone: input.oldestTombstone,
    files: input.files,
    bytes: input.bytes,
    dirs: input.dirs,
    symlinks: input.symlinks,
    lastContact: input.lastContact,
    lastContactAgeMs: input.lastContact === null ? null : Math.max(0, input.now - input.lastContact),
    agentConnected: input.agentConnected,
    receiverRunning: input.receiverPid !== null,
    receiverPid: input.receiverPid,
    quarantined: input.quarantined,
    feedIncomplete: input.feedGap,
    deletionsHeld: input.deletionsHeld,
    rootLost: input.rootLost ?? null,
    verifyDamage: input.verifyDamage ?? null,
  };
}

/** The verdict in one line, as the first line of `warmsync status`: `SAFE: ...` or `UNSAFE: ...`. */
export function verdictLine(v: { readonly safe: boolean; readonly reason: string }): string {
  return `${v.safe ? 'SAFE' : 'UNSAFE'}: ${v.reason}`;
}

export function formatStatus(s: StatusReport): string {
  const ago = s.lastContactAgeMs === null ? '' : ` (${Math.round(s.lastContactAgeMs / 1000)} s ago)`;
  const rows: Array<[string, string]> = [
    ['root', s.root],
    ['files', `${s.files} (${s.bytes} bytes), ${s.dirs} dirs, ${s.symlinks} symlinks`],
    ['tombstones', `${s.tombstonesPending} pending${s.oldestTombstone === null ? '' : `, oldest deleted ${formatTime(s.oldestTombstone)}`}`],
    ['DB snapshot (T)', formatTime(s.snapshotTime)],
    ['watermark (W)', formatTime(s.watermark)],
    ...(s.recoveryTargetLsn === null ? [] : [['recovery target', `WAL position ${s.recoveryTargetLsn}, read from the DB primary at ${formatTime(s.recoveryTargetLsnAt)} (W covers it; warmsync failover recovers to it)`] as [string, string]]),
    [s.recoveryTargetLsn === null ? 'recovery target' : 'time target', s.recoveryTarget === null ? 'none yet' : `${formatTime(s.recoveryTarget)} (W - skew: recover the standby DB to at most this time${s.recoveryTargetLsn === null ? '' : ' without the WAL position'})`],
    ['skew', `${describeSkew({ skewMs: s.skewMs, source: s.skewSource })}${s.clockOffsetMs === null ? '' : `; DB primary clock - agent clock ${s.clockOffsetMs} ms`}`],
    ['last agent contact', `${formatTime(s.lastContact)}${ago}`],
    ['receiver', s.receiverRunning ? `running (pid ${s.receiverPid}), agent ${s.agentConnected ? 'connected' : 'not connected'}` : 'not running'],
    ['quarantined', `${s.quarantined} file(s)`],
  ];
  if (s.feedIncomplete !== null) {
    rows.push(['change feed', `incomplete since ${formatTime(s.feedIncomplete.since)}: ${s.feedIncomplete.reason}`]);
  }
  if (s.deletionsHeld > 0) {
    rows.push(['deletions held', `${s.deletionsHeld} by the agent after a mass deletion or an emptied source; check the source, then restart the agent once with --release-deletions`]);
  }
  return [verdictLine(s), ...rows.map(([label, value]) => `  ${label.padEnd(19)} ${value}`)].join('\n');
}
