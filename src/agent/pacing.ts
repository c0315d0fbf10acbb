/**
 * How fast the sender may put file data on a connection: the --bwlimit token bucket, and the
 * credit window it asks of the receiver, sized from the link it measures. Both are pure (the clock
 * is passed in), so their rules are tested without a network.
 */

/**
 * --bwlimit: at most `rate` bytes a second of file data, with a burst of BURST_SECONDS' worth (and
 * at least BURST_MIN_BYTES). A send larger than what is in the bucket goes out once the bucket has
 * refilled to cover it, so over any stretch of t seconds at most burst + rate·t bytes leave: the
 * cap holds whatever the chunk sizes, and the long-run rate is the limit, not below it.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  readonly burst: number;

  constructor(readonly rate: number, now: number) {
    this.burst = Math.max(BURST_MIN_BYTES, Math.round(rate * BURST_SECONDS));
    // Starts full: a small change after a quiet spell goes out at once.
    this.tokens = this.burst;
    this.last = now;
  }

  /** Takes `bytes` at `now` (ms); returns how long (ms) to wait before sending them, 0 for at once. */
  take(bytes: number, now: number): number {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }
}

/** A tenth of a second of data: smooth enough for the application beside the agent, large enough for a whole small file. */
const BURST_SECONDS = 0.1;
const BURST_MIN_BYTES = 64 * 1024;

/**
 * The credit window the sender works with. The receiver announces `window` (what it expects to be
 * enough) and, since protocol 4, `windowMax` (the most it lets one agent have unconsumed: its
 * memory bound). A window smaller than the bandwidth-delay product leaves a long link idle for part
 * of every round trip, so the rule is: window = clamp(2 × delivered rate × round trip, window,
 * windowMax), and it only grows. The round trip is the smallest time seen from sending a chunk to
 * its credit coming back (queueing only ever adds to it); the delivered rate is credit returned per
 * second over the last measurement period. While the window binds, the rate is window / round trip,
 * so the rule doubles the window each period until the link (or the receiver's disk) binds
 * instead; there it stops. It never shrinks on a slower period: a period in which the receiver
 * queued (an fsync, a burst of creates) delivers less than the link can, and following it down
 * spiralled the window back toward the receiver's 8 MiB (400 Mbit/s, 400 ms proxy, the 20k-file
 * corpus: 0.40x the link rate; the fixed window 0.35x; grow-only 0.69x, rsync -a 0.77x).
 * windowMax bounds what that costs. On a LAN twice the
 * product is below the announced window, which therefore stays as it is.
 */
export class WindowSizer {
  private current: number;
  private minRttMs = Infinity;
  /** Cumulative bytes sent when each unanswered chunk went out, and when, oldest first. */
  private readonly marks: Array<{ upTo: number; at: number }> = [];
  private sent = 0;
  private credited = 0;
  private periodStart: number | null = null;
  private periodCredited = 0;

  constructor(private readonly floor: number, private readonly cap: number) {
    this.current = floor;
  }

  get window(): number {
    return this.current;
  }

  /** The smallest round trip measured so far (ms), Infinity before the first. */
  get roundTripMs(): number {
    return this.minRttMs;
  }

  /** `bytes` of file data went out at `now`. */
  onSent(bytes: number, now: number): void {
    this.sent += bytes;
    // A few marks a round trip, not one per chunk: one per small file would be thousands.
    const lastMark = this.marks[this.marks.length - 1];
    if (lastMark === undefined || now - lastMark.at >= Math.min(this.minRttMs / 4, 50)) {
      this.marks.push({ upTo: this.sent, at: now });
      if (this.marks.length > MAX_MARKS) this.marks.shift();
    }
    this.periodStart ??= now;
  }

  /** The receiver credited `bytes` at `now` (credit the sender gives itself back for bytes it never sent is not this). */
  onCredited(bytes: number, now: number): void {
    this.credited += bytes;
    this.periodCredited += bytes;
    while (this.marks.length > 0 && (this.marks[0] as { upTo: number }).upTo <= this.credited) {
      const mark = this.marks.shift() as { upTo: number; at: number };
      this.minRttMs = Math.min(this.minRttMs, now - mark.at);
    }
    if (this.periodStart === null) return;
    const elapsed = now - this.periodStart;
    // A period of a few round trips (at least 100 ms): a shorter one measures the credit messages' grain, not the rate.
    if (elapsed < Math.max(100, 4 * this.minRttMs) || !Number.isFinite(this.minRttMs)) return;
    const rate = this.periodCredited / (elapsed / 1000);
    this.current = Math.max(this.current, windowFor(rate, this.minRttMs, this.floor, this.cap));
    this.periodStart = now;
    this.periodCredited = 0;
  }
}

const MAX_MARKS = 1024;

/** clamp(2 × rate × round trip, floor, cap), in bytes: twice the bandwidth-delay product, so one window is always in flight while the last one's credit returns. */
export function windowFor(bytesPerSec: number, roundTripMs: number, floor: number, cap: number): number {
  const bdp = bytesPerSec * (roundTripMs / 1000);
  return Math.max(floor, Math.min(cap, Math.round(2 * bdp)));
}
