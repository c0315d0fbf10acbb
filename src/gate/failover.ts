/**
 * The W-bounded failover of a PostgreSQL standby (shared/DESIGN.md, invariant 4), as settings: the
 * standby DB recovers exactly up to a target the standby's filestore covers, skips its apply delay,
 * and promotes. The target is a WAL position the agent read from the primary at a moment W covers
 * (gate/dbposition.ts: no clocks compared) when there is one, else the time W - skew. Pure: the CLI
 * (src/cli/failover.ts) prints them or writes them into the standby's postgresql.auto.conf and
 * restarts it.
 */
import { formatTime } from '../time.js';
import type { DbPosition } from './dbposition.js';
import { failoverVerdict } from './policy.js';

export type Setting = readonly [name: string, value: string];

export type TargetKind = 'lsn' | 'time';

export interface FailoverPlan {
  /** Which recovery target the settings name. */
  readonly target: TargetKind;
  readonly watermark: number;
  readonly skewMs: number;
  /** W - skew: the latest commit time the standby filestore covers (the time target). */
  readonly recoveryTarget: number;
  /** The LSN target (records before it are replayed), or null for the time target. */
  readonly recoveryTargetLsn: string | null;
  /** When the agent read that LSN (its clock; <= W), or null. */
  readonly positionAt: number | null;
  readonly settings: readonly Setting[];
}

/**
 * The recovery settings for watermark W: up to `position`'s LSN when given (it must be one W
 * covers: position.at <= W), else up to W - skew. Null without a watermark (nothing is covered yet).
 */
export function failoverPlan(watermark: number | null, skewMs: number, position: DbPosition | null = null): FailoverPlan | null {
  const { recoveryTarget } = failoverVerdict(null, watermark, skewMs);
  if (watermark === null || recoveryTarget === null) return null;
  const lsn = position !== null && position.at <= watermark ? position : null;
  const target: Setting = lsn === null ? ['recovery_target_time', pgTimestamp(recoveryTarget)] : ['recovery_target_lsn', lsn.lsn];
  return {
    target: lsn === null ? 'time' : 'lsn', watermark, skewMs, recoveryTarget, recoveryTargetLsn: lsn?.lsn ?? null, positionAt: lsn?.at ?? null,
    settings: [
      target,
      // off: stop before a record (a commit) starting at the target. For the time target every
      // replayed commit is then < target; for the LSN target every replayed record started before
      // the position the agent read, so it was written before W covered that moment (a record
      // starting exactly there may have been written after it).
      ['recovery_target_inclusive', 'off'],
      ['recovery_target_action', 'promote'],
      // The delay kept the DB behind W; at failover, replay up to the target at once.
      ['recovery_min_apply_delay', '0'],
    ],
  };
}

export type TargetChoice = 'auto' | TargetKind;

/**
 * Which target a failover uses: `choice` auto takes the LSN when one is recorded (and, when the
 * standby's system identifier is known, it is the same cluster's), else the time. Returns the plan,
 * or why the chosen kind is not possible.
 */
export function chooseTarget(input: {
  readonly choice: TargetChoice;
  readonly watermark: number | null;
  readonly skewMs: number;
  readonly position: (DbPosition & { readonly system: string }) | null;
  /** The standby's system identifier, when it was read. */
  readonly standbySystem?: string | null;
}): { plan: FailoverPlan | null; note: string | null } {
  const { position, standbySystem } = input;
  let usable: DbPosition | null = input.choice === 'time' ? null : position;
  let note: string | null = null;
  if (usable !== null && position !== null && standbySystem != null && position.system !== '0' && position.system !== standbySystem) {
    note = `the recorded WAL position is from DB system ${position.system}, the standby is system ${standbySystem}: not the same cluster, so the position means nothing to it`;
    usable = null;
  } else if (usable === null && input.choice !== 'time') {
    note = 'no WAL position recorded (the agent has no --db-primary, or the watermark has not covered one yet)';
  }
  if (input.choice === 'lsn' && usable === null) return { plan: null, note };
  return { plan: failoverPlan(input.watermark, input.skewMs, usable), note: input.choice === 'time' ? null : note };
}

/**
 * A timestamptz as PostgreSQL prints it, with an explicit +00 zone (whatever the server's TimeZone).
 * Not ISO 8601's Z: recovery_target_time refuses zone abbreviations.
 */
export function pgTimestamp(ms: number): string {
  return formatTime(ms).replace('T', ' ').replace('Z', '+00');
}

/** The recovery targets, of which PostgreSQL (>= 12) accepts at most one. */
const RECOVERY_TARGETS = ['recovery_target', 'recovery_target_lsn', 'recovery_target_name', 'recovery_target_time', 'recovery_target_xid'];

/** One line for a plan: what it recovers to, and why that is covered. */
export function describePlan(plan: FailoverPlan): string {
  return plan.target === 'lsn'
    ? `watermark W ${formatTime(plan.watermark)} covers the WAL position ${plan.recoveryTargetLsn ?? ''} the agent read from the primary at ${formatTime(plan.positionAt)}: recover the standby DB up to it (records before it), then promote`
    : `watermark W ${formatTime(plan.watermark)}, skew ${plan.skewMs} ms: recover the standby DB up to ${formatTime(plan.recoveryTarget)}, then promote`;
}

/** A configuration line, value quoted as postgresql.conf wants it. */
export function settingLine([name, value]: Setting): string {
  return `${name} = '${value.replace(/'/g, "''")}'`;
}

/**
 * postgresql.auto.conf with `settings` in force: earlier lines naming the same parameters are
 * dropped (PostgreSQL would take the last one anyway; dropping keeps the file honest), the rest
 * is kept as it was (primary_conninfo and the like), and the settings are appended.
 */
export function renderAutoConf(existing: string, settings: readonly Setting[]): string {
  // PostgreSQL refuses more than one recovery target: an earlier failover's target of another kind goes too.
  const names = new Set([...settings.map(([name]) => name.toLowerCase()), ...RECOVERY_TARGETS]);
  const kept = existing.split('\n').filter((line) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?/.exec(line);
    return m === null || !names.has((m[1] as string).toLowerCase());
  });
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  const names2 = settings.map(([name]) => name);
  const what = names2.includes('recovery_target_lsn') ? 'recover up to a WAL position the watermark W covers, then promote'
    : names2.includes('recovery_target_time') ? 'recover up to the watermark W - skew, then promote'
      : 'replay stood at the end of its WAL, short of the target: no target, no WAL source, promote there';
  return [...kept, `# warmsync failover: ${what}`, ...settings.map(settingLine)].join('\n') + '\n';
}
