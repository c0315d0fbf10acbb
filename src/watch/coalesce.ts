/**
 * Watch events are hints, never content (Syncthing's rule): they only say "look at this path again".
 * The coalescer collects dirty paths and hands them out once they have been quiet for a short window,
 * so a file written in many small appends is looked at once, after its writer paused. Pure: the
 * clock is passed in.
 */

export interface DirtyPath {
  readonly path: string;
  /** When the first event for this path (since it was last handed out) arrived: the watermark waits for it. */
  readonly firstSeen: number;
  /** A directory that appeared: its whole subtree must be looked at (events inside may predate the watch). */
  readonly subtree: boolean;
  /**
   * A subtree mark's time: when the latest of its subtree marks was made (the watcher makes one once
   * the watches below are in place). A scan that began after it answers it (plan/subtree-scans.ts);
   * absent, the subtree is looked at whatever was scanned.
   */
  readonly subtreeMarkedAt?: number;
}

interface Mark { firstSeen: number; lastSeen: number; subtree: boolean; subtreeMarkedAt: number | null }

export class Coalescer {
  private readonly marks = new Map<string, Mark>();

  get size(): number {
    return this.marks.size;
  }

  /** Records an event for `path` at `now` (or puts back a path handed out earlier, keeping its firstSeen). */
  mark(path: string, now: number, options: { subtree?: boolean; firstSeen?: number } = {}): void {
    const existing = this.marks.get(path);
    const firstSeen = Math.min(existing?.firstSeen ?? Infinity, options.firstSeen ?? now);
    const subtree = options.subtree === true;
    this.marks.set(path, {
      firstSeen, lastSeen: now, subtree: (existing?.subtree ?? false) || subtree,
      subtreeMarkedAt: subtree ? now : (existing?.subtreeMarkedAt ?? null),
    });
  }

  /**
   * Removes and returns up to `max` paths with no event for at least `quietMs`, skipping `busy` ones
   * (an op on them is still in flight: their turn comes after it settles). Oldest first.
   */
  takeQuiet(now: number, quietMs: number, max: number, busy: (path: string) => boolean = () => false): DirtyPath[] {
    const out: DirtyPath[] = [];
    for (const [path, m] of this.marks) {
      if (out.length >= max) break;
      if (now - m.lastSeen < quietMs || busy(path)) continue;
      out.push(m.subtreeMarkedAt === null ? { path, firstSeen: m.firstSeen, subtree: m.subtree } : { path, firstSeen: m.firstSeen, subtree: true, subtreeMarkedAt: m.subtreeMarkedAt });
    }
    for (const d of out) this.marks.delete(d.path);
    return out;
  }

  /** The earliest firstSeen of any waiting path, or null. */
  oldestFirstSeen(): number | null {
    let oldest: number | null = null;
    for (const m of this.marks.values()) if (oldest === null || m.firstSeen < oldest) oldest = m.firstSeen;
    return oldest;
  }

  /**
   * ms until the next path that is not `busy` becomes quiet (0 when one already is), or null when
   * none waits. A busy path's turn comes when its op settles, which the caller hears of anyway.
   */
  nextDueIn(now: number, quietMs: number, busy: (path: string) => boolean = () => false): number | null {
    let due: number | null = null;
    for (const [path, m] of this.marks) {
      if (busy(path)) continue;
      const wait = Math.max(0, m.lastSeen + quietMs - now);
      if (due === null || wait < due) due = wait;
    }
    return due;
  }

  clear(): void {
    this.marks.clear();
  }
}
