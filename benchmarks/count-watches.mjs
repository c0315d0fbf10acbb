// Counts the inotify watches chokidar holds on a tree: node benchmarks/count-watches.mjs DIR
import { readdirSync, readFileSync } from 'node:fs';
import { watch } from 'chokidar';

const root = process.argv[2];
const watcher = watch(root, { ignoreInitial: true, followSymlinks: false });
await new Promise((resolve) => watcher.once('ready', resolve));
let watches = 0;
for (const fd of readdirSync('/proc/self/fdinfo')) {
  try {
    watches += (readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/^inotify /gm) ?? []).length;
  } catch { /* fd closed meanwhile */ }
}
console.log(JSON.stringify({ inotifyWatches: watches, rssMB: Math.round(process.memoryUsage().rss / 1048576) }));
await watcher.close();
