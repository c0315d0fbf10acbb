/** The live agent's view of its change feed's completeness, one per standby. Pure: times are passed in. */
import type { FeedGap } from '../entry.js';
import type { IncompleteReason } from '../watch/watcher.js';

/**
 * What the agent knows of its change feed's completeness (invariant 4). An overflow or a lost watch
 * opens a gap, from the moment the first missed change may have happened, that the next full pass
 * begun after the gap was noticed closes. Out of watches, part of the tree is seen only by full
 * passes, for good: the gap then always starts where the last completed full pass began. Each
 * standby has its own: a gap closes for one when a full pass *for it* completes.
 */
export class FeedState {
  private gap: { since: number; noticed: number; reasons: Set<string> } | null = null;
  private limited = false;

  lost(reason: IncompleteReason, since: number, noticed: number): void {
    if (reason === 'watch-limit') {
      this.limited = true;
      return;
    }
    this.open(reason === 'overflow' ? 'the inotify queue overflowed (raise fs.inotify.max_queued_events)' : 'an inotify watch was lost', since, noticed);
  }

  /**
   * The standby's backlog of changed paths was dropped (StandbyLink.fallBehind): as if the feed had
   * overflowed for it alone. False when such a gap was already open (nothing new to report).
   */
  fellBehind(since: number, noticed: number): boolean {
    const why = 'this standby fell too far behind: a full reconciliation is catching it up';
    const known = this.gap?.reasons.has(why) === true;
    this.open(why, since, noticed);
    return !known;
  }

  private open(why: string, since: number, noticed: number): void {
    const gap = this.gap;
    if (gap === null) {
      this.gap = { since, noticed, reasons: new Set([why]) };
      return;
    }
    gap.since = Math.min(gap.since, since);
    gap.noticed = Math.max(gap.noticed, noticed);
    gap.reasons.add(why);
  }

  /** A full pass that began at `scanStarted` completed: it saw every change made before then. */
  passCompleted(scanStarted: number): void {
    if (this.gap !== null && scanStarted >= this.gap.noticed) this.gap = null;
  }

  /** Since when changes may be missing, given where the last completed full pass began; null when none may be. */
  incomplete(reconciledFrom: number | null): FeedGap | null {
    const limit = this.limited && reconciledFrom !== null
      ? { since: reconciledFrom, reason: 'out of inotify watches (raise fs.inotify.max_user_watches): part of the tree is seen only by full rescans' }
      : null;
    const gap = this.gap === null ? null : { since: this.gap.since, reason: [...this.gap.reasons].join('; ') };
    if (gap === null || (limit !== null && limit.since < gap.since)) return limit;
    return gap;
  }
}

