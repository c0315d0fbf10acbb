/**
 * Invariant 4, the watermark W on the agent's clock: every change the agent observed before W is
 * durable on the standby. Conservative by construction: W never passes the first observation of a
 * change that is waiting, in flight or failed, and stays `settleMs` behind the clock for events
 * still in the watcher's pipe. Before the first full reconciliation there is no W. Pure.
 */

export interface WatermarkInput {
  readonly now: number;
  readonly settleMs: number;
  /** When the last completed full reconciliation began (its scan saw everything before that). */
  readonly reconciledFrom: number | null;
  /** First-observation times of every change not yet durable on the standby. */
  readonly pending: Iterable<number>;
}

export function computeWatermark(input: WatermarkInput): number | null {
  if (input.reconciledFrom === null) return null;
  let w = input.now - input.settleMs;
  for (const t of input.pending) if (t - 1 < w) w = t - 1;
  return w;
}
