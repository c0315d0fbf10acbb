// The event-loop lag on /metrics: sampled once a second (not prom-client's 10 ms, which kept idle
// daemons waking ~100 times a second), and reported as how late the samples came, not as the
// second between them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { EVENT_LOOP_SAMPLE_MS, collectProcessMetrics, lagStatistics } from '../../src/process-metrics.js';

/** The value of the unlabelled metric `name` in an exposition text. */
function valueOf(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} is not on /metrics:\n${text.slice(0, 2000)}`);
  return Number(m[1]);
}

function busyFor(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* hold the event loop */ }
}

test('lagStatistics: min, max, mean, standard deviation and nearest-rank percentiles; all 0 without samples', () => {
  const lag = lagStatistics([0.5, 0, 0.1, 0.2, 0.2]);
  assert.equal(lag.min, 0);
  assert.equal(lag.max, 0.5);
  assert.ok(Math.abs(lag.mean - 0.2) < 1e-12, `mean ${lag.mean}`);
  assert.ok(Math.abs(lag.stddev - Math.sqrt(0.028)) < 1e-12, `stddev ${lag.stddev}`);
  assert.equal(lag.p50, 0.2);
  assert.equal(lag.p90, 0.5);
  assert.equal(lag.p99, 0.5);
  assert.deepEqual(lagStatistics([]), { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 });
});

test('/metrics: an idle loop shows almost no lag, a blocked one shows how long it was held', { timeout: 30_000 }, async () => {
  const registry = new Registry();
  collectProcessMetrics(registry);
  await sleep(2.5 * EVENT_LOOP_SAMPLE_MS);
  const idle = await registry.metrics();
  const idleMax = valueOf(idle, 'warmsync_nodejs_eventloop_lag_max_seconds');
  assert.ok(idleMax < 0.4, `idle: lag max ${idleMax} s (prom-client's own histogram at one sample a second reads ~1 s)`);
  assert.equal(idle.match(/^warmsync_nodejs_eventloop_lag_max_seconds /gm)?.length, 1, 'one lag_max series, not prom-client\'s beside ours');
  // Hold the loop for 1.5 s: the tick due meanwhile comes at least 0.5 s late.
  busyFor(1.5 * EVENT_LOOP_SAMPLE_MS);
  await sleep(1.2 * EVENT_LOOP_SAMPLE_MS);
  const blocked = await registry.metrics();
  const blockedMax = valueOf(blocked, 'warmsync_nodejs_eventloop_lag_max_seconds');
  assert.ok(blockedMax >= 0.45 && blockedMax < 2, `after holding the loop 1.5 s: lag max ${blockedMax} s`);
  // Each scrape starts a new window.
  await sleep(2.2 * EVENT_LOOP_SAMPLE_MS);
  const after = valueOf(await registry.metrics(), 'warmsync_nodejs_eventloop_lag_max_seconds');
  assert.ok(after < 0.4, `the window after the stall: lag max ${after} s`);
});
