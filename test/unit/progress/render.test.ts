/**
 * The progress text shared by the terminal bar and the plain lines: sizes, durations, the share
 * done (bytes first, files when there are no bytes), rate and ETA, the unknown-total form, the
 * finished form.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { etaMs, formatBytes, formatDuration, fractionDone, renderProgress } from '../../../src/progress/render.js';

describe('units', () => {
  const bytes: ReadonlyArray<[number, string]> = [[0, '0 B'], [1023, '1023 B'], [1024, '1.00 KiB'], [1536, '1.50 KiB'], [20 * 2 ** 20, '20.0 MiB'], [3 * 2 ** 40, '3.00 TiB']];
  for (const [n, want] of bytes) test(`${n} bytes`, () => assert.equal(formatBytes(n), want));
  const durations: ReadonlyArray<[number, string]> = [[0, '0.0 s'], [420, '0.4 s'], [9_949, '9.9 s'], [9_950, '10 s'], [59_400, '59 s'], [61_000, '1m01s'], [3_600_000 + 5 * 60_000, '1h05m']];
  for (const [ms, want] of durations) test(`${ms} ms`, () => assert.equal(formatDuration(ms), want));
});

describe('fraction and ETA', () => {
  const base = { label: 'sending', startedMs: 0 };
  test('by bytes when there are bytes to do', () => {
    assert.equal(fractionDone({ done: { files: 9, bytes: 25 }, total: { files: 10, bytes: 100 } }), 0.25);
  });
  test('by files when there are none (empty files, metadata)', () => {
    assert.equal(fractionDone({ done: { files: 1, bytes: 0 }, total: { files: 4, bytes: 0 } }), 0.25);
    assert.equal(fractionDone({ done: { files: 0, bytes: 0 }, total: { files: 0, bytes: 0 } }), 1);
  });
  test('never past 1 (verify hashes tombstoned files the total leaves out)', () => {
    assert.equal(fractionDone({ done: { files: 5, bytes: 120 }, total: { files: 4, bytes: 100 } }), 1);
  });
  test('ETA at the average rate; unknown at the start and without a total', () => {
    assert.equal(etaMs({ ...base, done: { files: 1, bytes: 25 }, total: { files: 4, bytes: 100 }, nowMs: 10_000 }), 30_000);
    assert.equal(etaMs({ ...base, done: { files: 0, bytes: 0 }, total: { files: 4, bytes: 100 }, nowMs: 10_000 }), null);
    assert.equal(etaMs({ ...base, done: { files: 1, bytes: 25 }, total: null, nowMs: 10_000 }), null);
  });
});

describe('renderProgress', () => {
  const state = { label: 'sending', startedMs: 1_000, nowMs: 11_000, done: { files: 1200, bytes: 50 * 2 ** 20 }, total: { files: 2400, bytes: 100 * 2 ** 20 } };
  test('plain line', () => {
    assert.equal(renderProgress(state), 'sending:  50% 1,200/2,400 files, 50.0 MiB/100.0 MiB, 5.00 MiB/s, ETA 10 s');
  });
  test('with a bar', () => {
    assert.equal(renderProgress(state, 10), 'sending [#####-----]  50% 1,200/2,400 files, 50.0 MiB/100.0 MiB, 5.00 MiB/s, ETA 10 s');
  });
  test('total not known yet', () => {
    assert.equal(renderProgress({ ...state, label: 'hashing', total: null }, 10), 'hashing: 1,200 files, 50.0 MiB, 5.00 MiB/s, 10 s');
  });
  test('finished', () => {
    assert.equal(renderProgress({ ...state, finished: true }), 'sending: done, 1,200 files, 50.0 MiB in 10 s (5.00 MiB/s)');
  });
});
