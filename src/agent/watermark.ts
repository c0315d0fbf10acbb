/**
 * Invariant 4, the watermark W on the agent's clock: every change the agent observed before W is
 * durable on the standby. Conservative by construction: W never passes the first observation of a
 * change that is waiting, in flight or failed, stays `settleMs` behind the clock for events
 * still in the watcher's pipe, and stays below the moment from which the change feed may have
 * missed something (an overflow, a lost or missing watch) until a rescan has covered it. Before
 * the first full reconciliation there is no W. Pure.
 */

export interface WatermarkInput {
  readonly now: number;
  readonly settleMs: number;
  /** When the last completed full reconciliation began (its scan saw everything before that). */
  readonly reconciledFrom: number | null;
  /** First-observation times of every change not yet durable on the standby. */
  readonly pending: Iterable<number>;
  /**
   * The change feed may have missed changes made from this time on, and no rescan has covered them
   * yet (null or absent: the feed is complete).
   */
  readonly incompleteSince?: number | null;
}

export function computeWatermark(input: WatermarkInput): number | null {
  if (input.reconciledFrom === null) return null;
  let w = input.now - input.settleMs;
  for (const t of input.pending) if (t - 1 < w) w = t - 1;
  const gap = input.incompleteSince ?? null;
  if (gap !== null && gap - 1 < w) w = gap - 1;
  return w;
}
