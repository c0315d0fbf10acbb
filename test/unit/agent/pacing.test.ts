/**
 * The sender's pacing rules, with the clock passed in: --bwlimit's token bucket never lets more than
 * burst + rate·t bytes out in t seconds and does not hold the rate below the limit; the credit
 * window grows to twice the bandwidth-delay product it measures, between the receiver's window and
 * its windowMax, and stays at the receiver's window on a short link.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TokenBucket, WindowSizer, windowFor } from '../../../src/agent/pacing.js';

const MiB = 1024 * 1024;

/** Sends `chunks` through `bucket` as the sender does (take, wait what it says, send); returns each send time (ms). */
function sendTimes(bucket: TokenBucket, chunks: readonly number[], start = 0): number[] {
  let now = start;
  return chunks.map((bytes) => {
    now += bucket.take(bytes, now);
    return now;
  });
}

describe('TokenBucket', () => {
  test('a burst goes out at once, then the rate holds exactly, whatever the chunk size', () => {
    for (const chunk of [1000, 64 * 1024, MiB]) {
      const rate = 4 * MiB;
      const bucket = new TokenBucket(rate, 0);
      const n = Math.ceil((40 * MiB) / chunk);
      const times = sendTimes(bucket, new Array<number>(n).fill(chunk));
      // The last byte leaves when the bucket has paid for all but the burst: (total - burst) / rate.
      const expected = ((n * chunk - bucket.burst) / rate) * 1000;
      assert.ok(Math.abs((times.at(-1) as number) - expected) < 1, `chunk ${chunk}: last send at ${times.at(-1)} ms, expected ${expected}`);
      // Over every prefix: bytes out by time t <= burst + rate·t.
      times.forEach((t, i) => assert.ok((i + 1) * chunk <= bucket.burst + (rate * t) / 1000 + chunk, `chunk ${chunk}: ${i + 1} sends by ${t} ms`));
    }
  });

  test('the burst is a tenth of a second of data, at least 64 KiB', () => {
    assert.equal(new TokenBucket(10 * MiB, 0).burst, MiB);
    assert.equal(new TokenBucket(100 * 1024, 0).burst, 64 * 1024);
  });

  test('a quiet spell refills it only up to the burst: no catching up on the time lost', () => {
    const bucket = new TokenBucket(MiB, 0);
    assert.equal(bucket.take(bucket.burst, 0), 0);
    // An hour idle, then 10 MiB: only the burst goes free, the rest is paced.
    const wait = bucket.take(10 * MiB, 3_600_000);
    assert.ok(Math.abs(wait - ((10 * MiB - bucket.burst) / MiB) * 1000) < 1e-6, `waited ${wait} ms`);
  });

  test('a small change after a quiet spell goes out at once', () => {
    const bucket = new TokenBucket(1024 * 1024, 0);
    assert.equal(bucket.take(20 * 1024, 5_000), 0);
  });
});

describe('windowFor', () => {
  test('twice the bandwidth-delay product, clamped to [window, windowMax]', () => {
    // 1 Gbit/s at 200 ms: 25 MB in flight, 50 MB window.
    assert.equal(windowFor(125e6, 200, 8 * MiB, 64 * MiB), 50e6);
    // 100 Mbit/s at 50 ms: 625 KB, far below the receiver's 8 MiB.
    assert.equal(windowFor(12.5e6, 50, 8 * MiB, 64 * MiB), 8 * MiB);
    // 10 Gbit/s at 200 ms: capped.
    assert.equal(windowFor(1.25e9, 200, 8 * MiB, 64 * MiB), 64 * MiB);
  });
});

/**
 * A simulated link: `rate` bytes/s with `rttMs` round trip, the receiver crediting each chunk as it
 * arrives (credit back after the round trip and the chunk's time on the wire). The sender keeps the
 * window full. Returns the sizer after `seconds`.
 */
function simulate(rate: number, rttMs: number, floor: number, cap: number, seconds: number): { sizer: WindowSizer; delivered: number } {
  const sizer = new WindowSizer(floor, cap);
  const chunk = 256 * 1024;
  const credits: Array<{ at: number; bytes: number }> = [];
  let now = 0;
  let wireFreeAt = 0;
  let unconsumed = 0;
  let delivered = 0;
  while (now < seconds * 1000) {
    while (unconsumed + chunk <= sizer.window) {
      sizer.onSent(chunk, now);
      unconsumed += chunk;
      wireFreeAt = Math.max(now, wireFreeAt) + (chunk / rate) * 1000;
      credits.push({ at: wireFreeAt + rttMs, bytes: chunk });
    }
    const next = credits.shift() as { at: number; bytes: number };
    now = Math.max(now, next.at);
    sizer.onCredited(next.bytes, now);
    unconsumed -= next.bytes;
    delivered += next.bytes;
  }
  return { sizer, delivered };
}

describe('WindowSizer', () => {
  test('on a long fat link it grows to about twice the bandwidth-delay product and fills the link', () => {
    // 1 Gbit/s, 200 ms: 25 MB in flight needed; the receiver starts at 8 MiB.
    const { sizer, delivered } = simulate(125e6, 200, 8 * MiB, 64 * MiB, 20);
    assert.ok(Math.abs(sizer.roundTripMs - 200) < 5, `round trip ${sizer.roundTripMs} ms`);
    assert.ok(sizer.window >= 1.5 * 25e6 && sizer.window <= 64 * MiB, `window ${sizer.window}`);
    // Over the 20 s the link was mostly full (the first seconds grow the window).
    assert.ok(delivered / 20 > 0.8 * 125e6, `delivered ${(delivered / 20 / 1e6).toFixed(1)} MB/s`);
  });

  test('a fixed 8 MiB window over the same link would deliver only window / round trip', () => {
    const { delivered } = simulate(125e6, 200, 8 * MiB, 8 * MiB, 20);
    assert.ok(delivered / 20 < 0.4 * 125e6, `delivered ${(delivered / 20 / 1e6).toFixed(1)} MB/s`);
  });

  test('never past windowMax', () => {
    const { sizer } = simulate(1.25e9, 200, 8 * MiB, 16 * MiB, 10);
    assert.equal(sizer.window, 16 * MiB);
  });

  test('a slower period (the receiver queued) does not shrink it', () => {
    const sizer = new WindowSizer(8 * MiB, 64 * MiB);
    // 1 MiB every `everyMs`, each credited 100 ms after it went out, for `ms`.
    let t = 0;
    const phase = (everyMs: number, ms: number): void => {
      const inFlight: number[] = [];
      for (const end = t + ms; t < end; t += everyMs) {
        while (inFlight.length > 0 && (inFlight[0] as number) + 100 <= t) sizer.onCredited(MiB, (inFlight.shift() as number) + 100);
        sizer.onSent(MiB, t);
        inFlight.push(t);
      }
      for (const sentAt of inFlight) sizer.onCredited(MiB, sentAt + 100);
      t += 100;
    };
    phase(10, 2000); // 100 MiB/s at 100 ms: twice the product is 21 MB
    const grown = sizer.window;
    assert.ok(grown > 18e6 && grown < 24e6, `grown to ${grown}`);
    phase(100, 2000); // 10 MiB/s: twice the product would be 2 MB
    assert.equal(sizer.window, grown);
  });

  test('on a LAN the receiver\'s window stays as it is', () => {
    const { sizer } = simulate(500e6, 0.2, 8 * MiB, 64 * MiB, 5);
    assert.equal(sizer.window, 8 * MiB);
  });
});
