/**
 * The paths with a live op in flight, each with when its change was first observed (the watermark
 * waits for the oldest). Answers "does this path overlap one in flight?" (itself, an ancestor, or
 * something below it) in O(depth): a burst puts thousands of paths in flight while thousands more
 * wait, and checking each waiting path against every path in flight cost 0.5 s per look at
 * 2,000 x 2,000, many times a second. An op added as not `blocksBelow` (a directory's new mtime)
 * holds up only its own path: every file created in a directory changes that directory's mtime,
 * so during a burst it is almost always in flight, and its files must not wait for it. Pure.
 */
export class BusyPaths {
  private readonly firstSeen = new Map<string, number>();
  /** Directory -> how many paths in flight lie below it. */
  private readonly below = new Map<string, number>();
  /** Paths in flight whose op holds up everything below them. */
  private readonly blocking = new Set<string>();

  get size(): number {
    return this.firstSeen.size;
  }

  /** When each path in flight was first observed. */
  values(): IterableIterator<number> {
    return this.firstSeen.values();
  }

  add(path: string, seen: number, blocksBelow = true): void {
    if (blocksBelow) this.blocking.add(path);
    if (this.firstSeen.has(path)) {
      this.firstSeen.set(path, Math.min(this.firstSeen.get(path) as number, seen));
      return;
    }
    this.firstSeen.set(path, seen);
    for (const dir of ancestors(path)) this.below.set(dir, (this.below.get(dir) ?? 0) + 1);
  }

  delete(path: string): void {
    if (!this.firstSeen.delete(path)) return;
    this.blocking.delete(path);
    for (const dir of ancestors(path)) {
      const n = (this.below.get(dir) as number) - 1;
      if (n === 0) this.below.delete(dir);
      else this.below.set(dir, n);
    }
  }

  has(path: string): boolean {
    return this.firstSeen.has(path);
  }

  /** Is `path` or anything below it in flight, or one of its ancestors with an op that blocks below? */
  overlaps(path: string): boolean {
    if (this.firstSeen.has(path) || this.below.has(path)) return true;
    if (this.blocking.size > 0) for (const dir of ancestors(path)) if (this.blocking.has(dir)) return true;
    return false;
  }
}

/** 'a/b/c' -> 'a/b', 'a' (relative paths; the root '' is never a path of its own). */
function* ancestors(path: string): Generator<string> {
  for (let i = path.lastIndexOf('/'); i > 0; i = path.lastIndexOf('/', i - 1)) yield path.slice(0, i);
}
