/**
 * `warmsync status`: one glance for a human, stable JSON for monitoring. Pure: built from numbers
 * the manifest holds; docs/operations.md documents every JSON field.
 */
import type { FeedGap } from '../entry.js';
import { formatTime } from '../time.js';
import { failoverVerdict } from './policy.js';

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
}

export interface StatusReport {
  root: string;
  safe: boolean;
  reason: string;
  snapshotTime: number | null;
  watermark: number | null;
  recoveryTarget: number | null;
  skewMs: number;
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
}

export function buildStatus(input: StatusInput): StatusReport {
  const verdict = failoverVerdict(input.snapshotTime, input.watermark, input.skewMs, input.feedGap);
  return {
    root: input.root,
    safe: verdict.safe,
    reason: verdict.reason,
    snapshotTime: input.snapshotTime,
    watermark: input.watermark,
    recoveryTarget: verdict.recoveryTarget,
    skewMs: input.skewMs,
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
  };
}

export function formatStatus(s: StatusReport): string {
  const ago = s.lastContactAgeMs === null ? '' : ` (${Math.round(s.lastContactAgeMs / 1000)} s ago)`;
  const rows: Array<[string, string]> = [
    ['root', s.root],
    ['files', `${s.files} (${s.bytes} bytes), ${s.dirs} dirs, ${s.symlinks} symlinks`],
    ['tombstones', `${s.tombstonesPending} pending${s.oldestTombstone === null ? '' : `, oldest deleted ${formatTime(s.oldestTombstone)}`}`],
    ['DB snapshot (T)', formatTime(s.snapshotTime)],
    ['watermark (W)', formatTime(s.watermark)],
    ['recovery target', s.recoveryTarget === null ? 'none yet' : `${formatTime(s.recoveryTarget)} (recover the standby DB to at most this time; skew ${s.skewMs} ms)`],
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
  return [`${s.safe ? 'SAFE' : 'UNSAFE'}: ${s.reason}`, ...rows.map(([label, value]) => `  ${label.padEnd(19)} ${value}`)].join('\n');
}
