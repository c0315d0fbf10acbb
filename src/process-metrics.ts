/**
 * Node's process metrics on both daemons' /metrics (warmsync_process_*, warmsync_nodejs_*): prom-client's
 * defaults, with the event loop's lag sampled once a second instead of every 10 ms.
 *
 * prom-client samples the loop with a 10 ms timer (perf_hooks.monitorEventLoopDelay), which kept an
 * idle receiver, or a live agent with --metrics-listen, waking ~100 times a second: ~300 voluntary
 * context switches of the main thread in 3 s, and 0.6 % of a core in a bare node process. Its
 * sampler cannot be left out, only slowed; but its histogram records the time between samples, not
 * how late they came (9-11 ms at its default, ~1 s at one a second), and each reset makes the next
 * interval go unrecorded (a second-long blind spot after every scrape at that rate). So its lag
 * gauges are replaced by ones fed by a one-second tick of our own that records how late each tick
 * came. A stall of a second or more shows in the window it ends in; a shorter one when a tick falls
 * due during it.
 */
import { Gauge, collectDefaultMetrics, type Registry } from 'prom-client';

const PREFIX = 'warmsync_';
export const EVENT_LOOP_SAMPLE_MS = 1000;
/** Ticks kept between scrapes: an hour's worth; older ones are dropped first. */
const MAX_SAMPLES = 3600;

const LAG_GAUGES = {
  min: 'The smallest event loop lag since the last scrape (how late a once-a-second tick came)',
  max: 'The largest event loop lag since the last scrape (how late a once-a-second tick came)',
  mean: 'The mean event loop lag since the last scrape',
  stddev: 'The standard deviation of the event loop lag since the last scrape',
  p50: 'The median event loop lag since the last scrape',
  p90: 'The 90th percentile of the event loop lag since the last scrape',
  p99: 'The 99th percentile of the event loop lag since the last scrape',
} as const;
export type LagStatistic = keyof typeof LAG_GAUGES;

/** The statistics prom-client reports, over `samples` (seconds late); all 0 when there are none. */
export function lagStatistics(samples: readonly number[]): Record<LagStatistic, number> {
  if (samples.length === 0) return { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  const variance = sorted.reduce((a, b) => a + (b - mean) ** 2, 0) / sorted.length;
  // Nearest rank, as HdrHistogram reports a percentile: the smallest sample with p % at or below it.
  const percentile = (p: number): number => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] as number;
  return {
    min: sorted[0] as number, max: sorted[sorted.length - 1] as number, mean, stddev: Math.sqrt(variance),
    p50: percentile(50), p90: percentile(90), p99: percentile(99),
  };
}

export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: PREFIX, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  let samples: number[] = [];
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (samples.length === MAX_SAMPLES) samples.shift();
    samples.push(Math.max(0, now - last - EVENT_LOOP_SAMPLE_MS) / 1000);
    last = now;
  }, EVENT_LOOP_SAMPLE_MS).unref();
  const gauges = new Map<LagStatistic, Gauge>();
  for (const [statistic, help] of Object.entries(LAG_GAUGES) as Array<[LagStatistic, string]>) {
    const name = `${PREFIX}nodejs_eventloop_lag_${statistic}_seconds`;
    registry.removeSingleMetric(name);
    gauges.set(statistic, new Gauge({
      name, help, registers: [registry],
      // The first of them collected in a scrape sets them all and starts the next window.
      collect: statistic === 'min' ? () => {
        const lag = lagStatistics(samples);
        samples = [];
        for (const [s, gauge] of gauges) gauge.set(lag[s]);
      } : undefined,
    }));
  }
}
