/**
 * When files written on the source show up on a standby: the one measurement every live scenario
 * shares. The caller says which relative paths to expect, with the size they must reach and the
 * moment the writer closed them (performance.now()); a timer then polls the standby every
 * `intervalMs` (1 ms by default) and records, for each path, the time from that close to the first
 * poll that finds it at its final name with its full size. Both warmsync and rsync rename a
 * finished temp file into place, so the size check only guards against a replicator that does not.
 *
 * A directory with few pending paths is checked with one stat per path; one with many (a burst) is
 * read once per poll and only the names it holds are stat'ed. Even so, a poll of 10 directories
 * filling up to 6,000 names each takes ~18 ms, and polled every 20 ms it took 92 % of a core, on a
 * 2-core machine half of what the replicator under test had. So the next poll waits at least
 * POLL_DUTY_FACTOR times as long as the last one took: the poller uses at most a fifth of a core,
 * and an arrival is timed to within a few of its polls (tens of ms in a burst of 60,000 files).
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** Above this many pending paths in one directory, a poll reads the directory instead of stat'ing each. */
const STAT_EACH_MAX = 16;
/** The pause after a poll is at least this many times its duration. */
const POLL_DUTY_FACTOR = 4;

interface Expected {
  readonly closedAt: number;
  readonly size: number;
}

export class Arrivals {
  private readonly pending = new Map<string, Map<string, Expected>>();
  private readonly arrived = new Map<string, { latencyMs: number; at: number }>();
  private readonly order: number[] = [];
  private pendingCount = 0;
  private timer: NodeJS.Timeout;

  constructor(private readonly standbyDir: string, private readonly intervalMs = 1) {
    this.timer = setTimeout(() => this.tick(), intervalMs);
  }

  private tick(): void {
    const started = performance.now();
    this.poll();
    const tookMs = performance.now() - started;
    this.timer = setTimeout(() => this.tick(), Math.max(this.intervalMs, POLL_DUTY_FACTOR * tookMs));
  }

  /** Expects `rel` (a file, '/'-separated) to reach `size` bytes on the standby; `closedAt` from performance.now(). */
  expect(rel: string, closedAt: number, size: number): void {
    const slash = rel.lastIndexOf('/');
    const dir = slash < 0 ? '' : rel.slice(0, slash);
    let names = this.pending.get(dir);
    if (names === undefined) this.pending.set(dir, (names = new Map()));
    if (!names.has(rel.slice(slash + 1))) this.pendingCount++;
    names.set(rel.slice(slash + 1), { closedAt, size });
  }

  /** Paths expected but not (yet) arrived. */
  get missing(): number {
    return this.pendingCount;
  }

  /** Close-to-arrival latencies (ms), in arrival order. */
  latencies(): number[] {
    return [...this.order];
  }

  /** One path's latency (ms) and the performance.now() of the poll that found it, or null while it has not arrived. */
  arrival(rel: string): { latencyMs: number; at: number } | null {
    return this.arrived.get(rel) ?? null;
  }

  /** performance.now() of the poll that found the last arrival, or null before the first. */
  lastArrivalAt(): number | null {
    let last: number | null = null;
    for (const a of this.arrived.values()) if (last === null || a.at > last) last = a.at;
    return last;
  }

  /** Resolves true once nothing is pending, false after `timeoutMs`. */
  async waitAll(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.pendingCount > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.pendingCount === 0;
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private poll(): void {
    const now = performance.now();
    for (const [dir, names] of this.pending) {
      const abs = join(this.standbyDir, dir);
      let candidates: Iterable<string> = names.keys();
      if (names.size > STAT_EACH_MAX) {
        let present: string[];
        try {
          present = readdirSync(abs);
        } catch {
          continue; // the directory is not there yet
        }
        candidates = present.filter((name) => names.has(name));
      }
      for (const name of [...candidates]) {
        const want = names.get(name) as Expected;
        let size: number | undefined;
        try {
          size = statSync(join(abs, name), { throwIfNoEntry: false })?.size;
        } catch {
          continue; // e.g. ENOTDIR while the replicator swaps a path's kind
        }
        if (size !== want.size) continue;
        const latencyMs = now - want.closedAt;
        this.arrived.set(dir === '' ? name : `${dir}/${name}`, { latencyMs, at: now });
        this.order.push(latencyMs);
        names.delete(name);
        this.pendingCount--;
      }
      if (names.size === 0) this.pending.delete(dir);
    }
  }
}
