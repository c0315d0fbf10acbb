/**
 * agent/watermark: computeWatermark, the pure heart of invariant 4 (DESIGN.md). The live agent
 * (agent/live.ts) calls it on every heartbeat with `now` = Date.now(), its settle margin, when its
 * last full reconciliation began (null until the first one completes), and the first-observation
 * times of every change not yet durable on the standby: ops in flight, changes that failed and
 * wait for a rescan, large files being hashed, and the oldest path still waiting in the coalescer.
 * The receiver takes the result as the heartbeat's `watermark`: null or a safe integer.
 *
 * A table of cases at the boundaries (no W before the first reconciliation; W = now - settle with
 * nothing pending; W strictly below every pending time, one ms counts; empty and large pending;
 * falsy values that are still values), then a fast-check property over random integer inputs:
 * W is null iff there was no reconciliation; otherwise W <= now - settle, W < every pending time,
 * and W is the greatest integer satisfying both (one ms more would break one of them). An
 * incomplete change feed (`incompleteSince`) holds W strictly below its start and changes nothing else.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { computeWatermark, type WatermarkInput } from '../../../src/agent/watermark.js';

const NOW = 1_764_177_919_231;
const SETTLE = 1000;

describe('computeWatermark', () => {
  const cases: ReadonlyArray<{ name: string; input: WatermarkInput; w: number | null }> = [
    // before the first reconciliation
    { name: 'no W before the first reconciliation, nothing pending', input: { now: NOW, settleMs: SETTLE, reconciledFrom: null, pending: [] }, w: null },
    { name: 'no W before the first reconciliation, whatever is pending', input: { now: NOW, settleMs: SETTLE, reconciledFrom: null, pending: [NOW - 5000, NOW] }, w: null },
    { name: 'a reconciliation that began at epoch 0 is one (0 is not "none")', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 0, pending: [] }, w: NOW - SETTLE },
    // nothing pending: the settle margin alone
    { name: 'nothing pending: W = now - settle', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [] }, w: NOW - SETTLE },
    { name: 'nothing pending, settle 0: W = now', input: { now: NOW, settleMs: 0, reconciledFrom: NOW - 60_000, pending: [] }, w: NOW },
    { name: 'W may pass the start of the reconciliation (the watcher covers what came after)', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 1, pending: [] }, w: NOW - SETTLE },
    { name: 'an empty Set is nothing pending too', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: new Set<number>() }, w: NOW - SETTLE },
    // one pending change: W stays strictly below it
    { name: 'a change pending since long ago holds W one ms below it', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [NOW - 30_000] }, w: NOW - 30_001 },
    { name: 'a change pending exactly at now - settle: W one ms below it', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [NOW - SETTLE] }, w: NOW - SETTLE - 1 },
    { name: 'a change pending one ms after now - settle: W = now - settle, already below it', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [NOW - SETTLE + 1] }, w: NOW - SETTLE },
    { name: 'a change first seen just now (inside the settle margin): the margin wins', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [NOW] }, w: NOW - SETTLE },
    { name: 'settle 0, a change first seen just now: W one ms below now', input: { now: NOW, settleMs: 0, reconciledFrom: NOW - 60_000, pending: [NOW] }, w: NOW - 1 },
    { name: 'a first observation "in the future" (the clock stepped back) never lifts W', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [NOW + 10_000] }, w: NOW - SETTLE },
    { name: 'a change pending since before the reconciliation began still holds W', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [NOW - 90_000] }, w: NOW - 90_001 },
    { name: 'a change first observed at epoch 0 holds W at -1 (0 is a time)', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 60_000, pending: [0] }, w: -1 },
    // several pending: the oldest wins, wherever it is
    { name: 'several pending: the oldest holds W (first)', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [NOW - 9000, NOW - 5000, NOW - 7000] }, w: NOW - 9001 },
    { name: 'several pending: the oldest holds W (middle)', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [NOW - 5000, NOW - 9000, NOW - 7000] }, w: NOW - 9001 },
    { name: 'several pending: the oldest holds W (last)', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [NOW - 5000, NOW - 7000, NOW - 9000] }, w: NOW - 9001 },
    { name: 'the same time pending twice counts once', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [NOW - 4000, NOW - 4000] }, w: NOW - 4001 },
    { name: 'old and recent pending mixed with ones inside the margin', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [NOW, NOW - 2, NOW - 2000, NOW + 5] }, w: NOW - 2001 },
    // large pending, and the iterables live.ts may hand over
    {
      name: '100,000 pending, the oldest in the middle',
      input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: Array.from({ length: 100_000 }, (_, i) => (i === 54_321 ? NOW - 3_600_000 : NOW - (i % 997))) },
      w: NOW - 3_600_001,
    },
    {
      name: '100,000 pending, all inside the settle margin',
      input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: Array.from({ length: 100_000 }, (_, i) => NOW - (i % SETTLE) + 1) },
      w: NOW - SETTLE,
    },
    // an incomplete feed holds W below the moment it may have started missing changes
    { name: 'feed incomplete since long ago: W one ms below that', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [], incompleteSince: NOW - 20_000 }, w: NOW - 20_001 },
    { name: 'feed incomplete and an older change pending: the older holds W', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [NOW - 30_000], incompleteSince: NOW - 20_000 }, w: NOW - 30_001 },
    { name: 'feed incomplete since the last reconciliation began (out of watches)', input: { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 45_000, pending: [], incompleteSince: NOW - 45_000 }, w: NOW - 45_001 },
    { name: 'feed incomplete only from inside the settle margin: the margin wins', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [], incompleteSince: NOW - 10 }, w: NOW - SETTLE },
    { name: 'feed incomplete: null is complete', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: [], incompleteSince: null }, w: NOW - SETTLE },
    { name: 'feed incomplete, no reconciliation yet: still no W', input: { now: NOW, settleMs: SETTLE, reconciledFrom: null, pending: [], incompleteSince: NOW - 5 }, w: null },
    { name: 'pending as a Map\'s values', input: { now: NOW, settleMs: SETTLE, reconciledFrom: 1, pending: new Map([['a', NOW - 3000], ['b', NOW - 8000]]).values() }, w: NOW - 8001 },
  ];
  for (const c of cases) {
    test(c.name, () => assert.equal(computeWatermark(c.input), c.w));
  }

  test('for any inputs: null iff no reconciliation, else the greatest integer <= now - settle and < every pending time', () => {
    // Epoch-ms times. Pending times are drawn around now - settle, often within a few ms of it (where
    // an off-by-one lives), else anywhere from long before it to past the clock.
    const input = fc.record({
      now: fc.integer({ min: 0, max: 2 ** 42 }),
      settleMs: fc.integer({ min: 0, max: 120_000 }),
      reconciledFrom: fc.option(fc.integer({ min: 0, max: 2 ** 42 }), { nil: null }),
      offsets: fc.array(fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -200_000, max: 200_000 })), { maxLength: 50 }),
    });
    fc.assert(fc.property(input, ({ now, settleMs, reconciledFrom, offsets }) => {
      const pending = offsets.map((o) => now - settleMs + o);
      const w = computeWatermark({ now, settleMs, reconciledFrom, pending });
      const label = JSON.stringify({ now, settleMs, reconciledFrom, pending, w });
      if (reconciledFrom === null) {
        assert.equal(w, null, label);
        return;
      }
      assert.ok(w !== null && Number.isSafeInteger(w), `W is a safe integer (the heartbeat's type): ${label}`);
      assert.ok(w <= now - settleMs, `W stays the settle margin behind the clock: ${label}`);
      for (const t of pending) assert.ok(w < t, `W passed a change pending since ${t}: ${label}`);
      // Tight: one ms more would pass the margin or reach a pending change.
      const next = w + 1;
      assert.ok(next > now - settleMs || pending.some((t) => next >= t), `W could be ${next}: ${label}`);
    }), { numRuns: 2000 });
  });

  test('for any inputs: an incomplete feed holds W strictly below its start, and nothing else changes', () => {
    const input = fc.record({
      now: fc.integer({ min: 0, max: 2 ** 42 }),
      settleMs: fc.integer({ min: 0, max: 120_000 }),
      pending: fc.array(fc.integer({ min: -200_000, max: 200_000 }), { maxLength: 20 }),
      since: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -200_000, max: 200_000 })),
    });
    fc.assert(fc.property(input, ({ now, settleMs, pending, since }) => {
      const base = { now, settleMs, reconciledFrom: 0, pending: pending.map((o) => now - settleMs + o) };
      const complete = computeWatermark(base) as number;
      const incompleteSince = now - settleMs + since;
      const w = computeWatermark({ ...base, incompleteSince });
      assert.equal(w, Math.min(complete, incompleteSince - 1), JSON.stringify({ ...base, incompleteSince, w, complete }));
    }), { numRuns: 2000 });
  });

  test('reading pending in any order, or from a Set, gives the same W', () => {
    const times = fc.array(fc.integer({ min: NOW - 100_000, max: NOW + 1000 }), { maxLength: 30 });
    const timesAndPermutation = times.chain((t) => fc.tuple(fc.constant(t), fc.shuffledSubarray(t, { minLength: t.length, maxLength: t.length })));
    fc.assert(fc.property(timesAndPermutation, ([inOrder, permuted]) => {
      const base = { now: NOW, settleMs: SETTLE, reconciledFrom: NOW - 200_000 };
      const w = computeWatermark({ ...base, pending: inOrder });
      assert.equal(computeWatermark({ ...base, pending: permuted }), w);
      assert.equal(computeWatermark({ ...base, pending: new Set(inOrder) }), w);
    }));
  });
});
