import { parentOf } from '../relpath.js';

/**
 * Which subtree marks a scan has already answered. The watcher marks a directory that appeared as
 * a subtree once the watches below it are in place (events inside it may predate them): everything
 * below it must be looked at once. A completed scan of it, or of a directory above it, that began
 * after that mark saw all of it as it was then, and every change since has an event of its own;
 * the mark then needs only a look at the directory itself. During a `cp -a` of 60,000 files into
 * nested new directories under a live agent, a directory's own mark was often handed out after
 * its parent's scan had covered it (it waits while ops below it are in flight): the subtree scans
 * visited 154,644 files and, their rows being there by then, read and hashed 93,857 of them again.
 * Pure: the caller passes the times (the clock of the marks).
 */
export class SubtreeScans {
  /** Directory ('' is the root) -> when its latest completed scan began; oldest first. */
  private readonly started = new Map<string, number>();

  /** @param maxKept how many directories to remember; forgetting one only costs a scan that was not needed. */
  constructor(private readonly maxKept = 4096) {}

  /** A scan of `dir` that began at `startedAt` completed and saw all of it (nothing unreadable). */
  record(dir: string, startedAt: number): void {
    if ((this.started.get(dir) ?? -Infinity) >= startedAt) return;
    this.started.delete(dir);
    this.started.set(dir, startedAt);
    for (const oldest of this.started.keys()) {
      if (this.started.size <= this.maxKept) break;
      this.started.delete(oldest);
    }
  }

  /**
   * Did a scan of `dir` or of a directory above it begin after `markedAt` (strictly: the clock
   * counts whole milliseconds) and complete? Then a subtree mark of `dir` made at `markedAt` is answered.
   */
  covers(dir: string, markedAt: number): boolean {
    for (let p = dir; ; p = parentOf(p)) {
      if ((this.started.get(p) ?? -Infinity) > markedAt) return true;
      if (p === '') return false;
    }
  }

  get size(): number {
    return this.started.size;
  }
}
