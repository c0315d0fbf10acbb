/**
 * The database's own position as a recovery target, and the clock offset between the agent's host
 * and the DB primary (issue 20). Pure: the agent's probe (src/agent/dbprobe.ts) takes the samples,
 * the receiver records what the watermark covers, `status` and `failover` read it.
 *
 * A position (LSN, at): the agent read pg_current_wal_lsn() = LSN from the primary and its own clock
 * said `at` once the answer had arrived. Every WAL record that starts before LSN was inserted before
 * that read, so every transaction committed there committed before `at`, and the application wrote
 * its binaries before it committed. Once the watermark W >= at (invariant 4: every change made
 * before W is durable on the standby), recovering the standby DB up to LSN (exclusive: records
 * starting before it) leaves it referencing only binaries the standby holds. No clocks of two hosts
 * are compared: `at` and W are both the agent's.
 */

/** A WAL position read from the primary at `at` (the agent's clock, epoch ms). */
export interface DbPosition {
  /** pg_lsn text form, e.g. "0/3000148". */
  readonly lsn: string;
  readonly at: number;
}

/** pg_lsn's text form: two hex numbers of up to 8 digits. */
export const LSN_PATTERN = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;

/** A pg_lsn as a 64-bit number, for ordering; null when it is not one. */
export function parseLsn(lsn: string): bigint | null {
  if (!LSN_PATTERN.test(lsn)) return null;
  const [hi, lo] = lsn.split('/') as [string, string];
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

/** Negative, 0 or positive as a is before, at or after b (both must be valid). */
export function compareLsn(a: string, b: string): number {
  const x = parseLsn(a);
  const y = parseLsn(b);
  if (x === null || y === null) throw new Error(`not a pg_lsn: ${x === null ? a : b}`);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The newest position the watermark covers (at <= W), or null: none is covered yet, or no W.
 * "Newest" by `at`: the agent's clock orders them even across a primary rebuilt from scratch,
 * whose LSNs start over.
 */
export function coveredPosition(positions: readonly DbPosition[], watermark: number | null): DbPosition | null {
  if (watermark === null) return null;
  let best: DbPosition | null = null;
  for (const p of positions) if (p.at <= watermark && (best === null || p.at > best.at)) best = p;
  return best;
}

/**
 * Positions the agent still has to send: the newest one `watermark` covers (the receiver may not
 * have it yet) and every newer one, at most `max` (beyond that, every other uncovered one is dropped,
 * oldest first: the target gets coarser while W lags, never wrong). Sorted by `at`.
 */
export function positionsToSend(positions: readonly DbPosition[], watermark: number | null, max: number): DbPosition[] {
  const sorted = [...positions].sort((a, b) => a.at - b.at);
  const covered = coveredPosition(sorted, watermark);
  const head = covered === null ? [] : [covered];
  let newer = covered === null ? sorted : sorted.filter((p) => p.at > covered.at);
  const room = Math.max(1, max - head.length);
  // Halve the uncovered ones (every other, the newest always kept) until they fit.
  while (newer.length > room) newer = newer.filter((_, i, all) => (all.length - 1 - i) % 2 === 0);
  return [...head, ...newer];
}

// ---- clock offset ---------------------------------------------------------------------------------

/**
 * One round trip to the primary: the agent's clock before sending (`sentAt`) and after the answer
 * arrived (`receivedAt`), both Date.now() (whole ms, truncated), and the primary's
 * clock_timestamp() in between (`serverMs`, epoch ms with fractions).
 */
export interface ClockSample {
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly serverMs: number;
}

/** What the samples say of primary clock - agent clock. */
export interface ClockOffset {
  /** The middle of the interval the offset lies in (ms). */
  readonly offsetMs: number;
  /** The largest |offset| the interval allows, rounded up: the skew to use (ms). */
  readonly boundMs: number;
  /** When the newest sample used was taken (the agent's clock). */
  readonly at: number;
  /** How many samples the estimate rests on. */
  readonly samples: number;
}

/**
 * The offset interval of one sample: the primary read its clock at some moment the agent's clock
 * showed between sentAt and receivedAt + 1 (Date.now() truncates), so
 * serverMs - (receivedAt + 1) <= offset <= serverMs - sentAt.
 */
function interval(s: ClockSample): [number, number] {
  return [s.serverMs - (s.receivedAt + 1), s.serverMs - s.sentAt];
}

/**
 * The offset between the clocks, NTP-style but with hard bounds: each round trip bounds the offset
 * to an interval as wide as the round trip; while the offset holds still every interval contains it,
 * so their intersection does, and the bound is the largest |offset| it allows. If the intervals do
 * not all meet (a clock was stepped, or slewed fast), only the newest sample counts. Null without
 * samples.
 */
export function estimateOffset(samples: readonly ClockSample[]): ClockOffset | null {
  const valid = samples.filter((s) => s.receivedAt >= s.sentAt && Number.isFinite(s.serverMs));
  if (valid.length === 0) return null;
  const newest = valid.reduce((a, b) => (b.receivedAt >= a.receivedAt ? b : a));
  let lo = -Infinity;
  let hi = Infinity;
  for (const s of valid) {
    const [l, h] = interval(s);
    lo = Math.max(lo, l);
    hi = Math.min(hi, h);
  }
  let used = valid.length;
  if (lo > hi) {
    [lo, hi] = interval(newest);
    used = 1;
  }
  return { offsetMs: Math.round(((lo + hi) / 2) * 1000) / 1000, boundMs: Math.ceil(Math.max(Math.abs(lo), Math.abs(hi))), at: newest.receivedAt, samples: used };
}

// ---- which skew, which target ----------------------------------------------------------------------

/** A measured bound is used only for a watermark this close to the measurement (drift, steps). */
export const MEASURED_SKEW_VALID_MS = 60_000;

export type SkewSource = 'flag' | 'measured' | 'configured' | 'default';

export interface SkewInForce { readonly skewMs: number; readonly source: SkewSource }

/**
 * The skew the time target uses: --skew when given; else the offset bound the agent measured, when
 * it measured within MEASURED_SKEW_VALID_MS of W; else the receiver's --skew as recorded; else the
 * default.
 */
export function skewInForce(input: {
  readonly flagMs?: number | null;
  readonly measured: { readonly boundMs: number; readonly at: number } | null;
  readonly watermark: number | null;
  readonly configuredMs: number | null;
  readonly defaultMs: number;
}): SkewInForce {
  if (input.flagMs !== undefined && input.flagMs !== null) return { skewMs: input.flagMs, source: 'flag' };
  const m = input.measured;
  if (m !== null && input.watermark !== null && Math.abs(input.watermark - m.at) <= MEASURED_SKEW_VALID_MS) return { skewMs: m.boundMs, source: 'measured' };
  if (input.configuredMs !== null) return { skewMs: input.configuredMs, source: 'configured' };
  return { skewMs: input.defaultMs, source: 'default' };
}

/** Describes a skew and where it came from, for `status` and `failover`. */
export function describeSkew(s: SkewInForce): string {
  const from = { flag: 'from --skew', measured: 'measured: the agent\'s clock against the DB primary\'s', configured: 'the receiver\'s --skew', default: 'the default' }[s.source];
  return `${s.skewMs} ms (${from})`;
}
