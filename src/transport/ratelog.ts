/**
 * Rate-limited logging of rejected connections: the first REJECT_LOG_LINES of an interval are
 * logged in full, the rest counted by code and source and summed up in one line when the interval
 * ends. A flood of bad peers costs a few lines a minute, not one per attempt.
 */
import type { Logger } from '../log.js';
import { REJECT_LOG_INTERVAL_MS, REJECT_LOG_LINES } from './limits.js';

export class RejectLog {
  private logged = 0;
  private readonly suppressed = new Map<string, number>();
  private readonly sources = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly log: Logger, private readonly intervalMs = REJECT_LOG_INTERVAL_MS, private readonly lines = REJECT_LOG_LINES) {}

  /** One rejected connection from `source` (an address), for `code`, described by `message`. */
  note(code: string, source: string, message: string): void {
    this.timer ??= setTimeout(() => this.flush(), this.intervalMs).unref();
    if (this.logged < this.lines) {
      this.logged++;
      this.log.warn(code, message);
      return;
    }
    this.suppressed.set(code, (this.suppressed.get(code) ?? 0) + 1);
    // Bounded: past a thousand sources only the count of the rest is kept.
    if (this.sources.has(source) || this.sources.size < 1000) this.sources.set(source, (this.sources.get(source) ?? 0) + 1);
  }

  /** Ends the interval: one summary line if anything went unlogged. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.logged = 0;
    if (this.suppressed.size === 0) return;
    const total = [...this.suppressed.values()].reduce((a, b) => a + b, 0);
    const codes = [...this.suppressed].map(([code, n]) => `${code} ${n}`).join(', ');
    const top = [...this.sources].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([s, n]) => `${s} ${n}`).join(', ');
    this.log.warn('REJECTED_CONNECTIONS', `${total} more connection(s) rejected in the last ${Math.round(this.intervalMs / 1000)} s without a line each (${codes}); from ${this.sources.size} source(s), most: ${top}`);
    this.suppressed.clear();
    this.sources.clear();
  }
}
