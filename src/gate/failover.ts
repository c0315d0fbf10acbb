/**
 * The W-bounded failover of a PostgreSQL standby (shared/DESIGN.md, invariant 4), as settings: the
 * standby DB recovers exactly up to the recovery target W - skew, skips its apply delay, and
 * promotes. Pure: the CLI (src/cli/failover.ts) prints them or writes them into the standby's
 * postgresql.auto.conf and restarts it.
 */
import { formatTime } from '../time.js';
import { failoverVerdict } from './policy.js';

export type Setting = readonly [name: string, value: string];

export interface FailoverPlan {
  readonly watermark: number;
  readonly skewMs: number;
  /** W - skew: the latest commit time the standby filestore covers. */
  readonly recoveryTarget: number;
  readonly settings: readonly Setting[];
}

/** The recovery settings for watermark W and skew; null without a watermark (nothing is covered yet). */
export function failoverPlan(watermark: number | null, skewMs: number): FailoverPlan | null {
  const { recoveryTarget } = failoverVerdict(null, watermark, skewMs);
  if (watermark === null || recoveryTarget === null) return null;
  return {
    watermark, skewMs, recoveryTarget,
    settings: [
      ['recovery_target_time', pgTimestamp(recoveryTarget)],
      // off: stop before a commit stamped exactly at the target, so every replayed commit is < target.
      ['recovery_target_inclusive', 'off'],
      ['recovery_target_action', 'promote'],
      // The delay kept the DB behind W; at failover, replay up to the target at once.
      ['recovery_min_apply_delay', '0'],
    ],
  };
}

/**
 * A timestamptz as PostgreSQL prints it, with an explicit +00 zone (whatever the server's TimeZone).
 * Not ISO 8601's Z: recovery_target_time refuses zone abbreviations.
 */
export function pgTimestamp(ms: number): string {
  return formatTime(ms).replace('T', ' ').replace('Z', '+00');
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
  const names = new Set(settings.map(([name]) => name.toLowerCase()));
  const kept = existing.split('\n').filter((line) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?/.exec(line);
    return m === null || !names.has((m[1] as string).toLowerCase());
  });
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  return [...kept, '# warmsync failover: recover up to the watermark W - skew, then promote', ...settings.map(settingLine)].join('\n') + '\n';
}
