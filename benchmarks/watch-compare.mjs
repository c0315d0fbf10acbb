// The watcher alone, for comparing two builds of it (e.g. fs.watch on main against the inotify
// addon): time until every directory is watched, idle RSS then (after a GC), and event-to-callback
// latency (a file written in a random watched directory -> its onDirty call), sequentially.
//   node --expose-gc benchmarks/watch-compare.mjs DIST_DIR TREE [SAMPLES]
// DIST_DIR is a built dist/ (npm run build); TREE any directory (nothing is written outside
// TREE/**/.latency-*, each removed again).
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const [dist, tree, samplesArg] = process.argv.slice(2);
if (dist === undefined || tree === undefined) throw new Error('usage: watch-compare.mjs DIST_DIR TREE [SAMPLES]');
const samples = Number(samplesArg ?? 500);
const { watchTree } = await import(pathToFileURL(resolve(dist, 'watch/watcher.js')).href);

const waiting = new Map();
const t0 = performance.now();
const watcher = watchTree(tree, {
  isExcluded: () => false,
  onDirty: (rel) => {
    const done = waiting.get(rel);
    if (done !== undefined) {
      waiting.delete(rel);
      done(performance.now());
    }
  },
  onIncomplete: (reason, _at, detail) => console.error(reason, detail),
  onError: (err) => console.error(err.message),
});
await watcher.ready;
const readyMs = performance.now() - t0;
globalThis.gc?.();
await new Promise((r) => setTimeout(r, 500));
globalThis.gc?.();
const rssMB = process.memoryUsage().rss / 1048576;

// Latency: leaf directories of the tree, a new file in one of them at a time.
const dirs = [];
const walk = (rel) => {
  for (const d of readdirSync(join(tree, rel), { withFileTypes: true })) {
    if (d.isDirectory() && !d.name.startsWith('.latency')) walk(rel === '' ? d.name : `${rel}/${d.name}`);
  }
  dirs.push(rel);
};
walk('');
const lat = [];
for (let i = 0; i < samples; i++) {
  const dir = dirs[(i * 7919) % dirs.length];
  const rel = `${dir === '' ? '' : `${dir}/`}.latency-${process.pid}-${i}`;
  const seen = new Promise((r) => waiting.set(rel, r));
  const start = performance.now();
  writeFileSync(join(tree, rel), 'x');
  lat.push((await seen) - start);
  rmSync(join(tree, rel));
  await new Promise((r) => setTimeout(r, 2));
}
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(3);
console.log(JSON.stringify({ dist, watchedDirs: watcher.size, readyMs: Math.round(readyMs), idleRssMB: Math.round(rssMB), latencyMs: { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1) } }));
await watcher.close();
