/**
 * Per-source back-off of failed authentications. A source address (not address and port: a
 * guesser opens new sockets) may fail AUTH_FREE_FAILURES times; each failure after that makes it
 * wait twice as long as the last (from AUTH_BACKOFF_BASE_MS up to AUTH_BACKOFF_MAX_MS) before the
 * receiver speaks to it again. A success or AUTH_FAILURE_MEMORY_MS without a failure forgets it.
 * Once a source waits, it gets one attempt at a time: the attempt let through when a wait ends
 * holds the door for as long again, until its outcome (many sockets opened in parallel would
 * otherwise all get in the moment the wait ends).
 * The token is a long random secret, so this is not what keeps it from being guessed: it keeps a
 * guesser from costing HMACs, nonces and log lines at the rate it can open sockets.
 */
import {
  AUTH_BACKOFF_BASE_MS, AUTH_BACKOFF_MAX_MS, AUTH_FAILURE_MEMORY_MS, AUTH_FREE_FAILURES, AUTH_TRACKED_SOURCES,
} from './limits.js';

interface Failures { count: number; last: number; until: number; wait: number }

export class AuthBackoff {
  /** Insertion order is last-failure order (re-inserted on each failure): the first is the stalest. */
  private readonly sources = new Map<string, Failures>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Milliseconds `source` must still wait before it may try again (0: it may). */
  waitFor(source: string): number {
    const f = this.sources.get(source);
    if (f === undefined) return 0;
    const now = this.now();
    if (now - f.last > AUTH_FAILURE_MEMORY_MS) {
      this.sources.delete(source);
      return 0;
    }
    if (now < f.until) return f.until - now;
    // One attempt through; the next waits for its outcome (failed or succeeded) or as long again.
    if (f.wait > 0) f.until = now + f.wait;
    return 0;
  }

  /** Records a failure; returns the wait it now owes (0 while within the free failures). */
  failed(source: string): number {
    const now = this.now();
    const prior = this.sources.get(source);
    const count = prior !== undefined && now - prior.last <= AUTH_FAILURE_MEMORY_MS ? prior.count + 1 : 1;
    const over = count - AUTH_FREE_FAILURES;
    const wait = over <= 0 ? 0 : Math.min(AUTH_BACKOFF_MAX_MS, AUTH_BACKOFF_BASE_MS * 2 ** Math.min(over - 1, 30));
    this.sources.delete(source);
    this.sources.set(source, { count, last: now, until: now + wait, wait });
    while (this.sources.size > AUTH_TRACKED_SOURCES) {
      const stalest = this.sources.keys().next().value as string;
      this.sources.delete(stalest);
    }
    return wait;
  }

  succeeded(source: string): void {
    this.sources.delete(source);
  }
}
