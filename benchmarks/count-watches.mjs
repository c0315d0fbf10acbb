// Counts the inotify watches warmsync's watcher holds on a tree, and its RSS once they are all in
// place: npm run build, then node benchmarks/count-watches.mjs DIR
import { readdirSync, readFileSync } from 'node:fs';
import { watchTree } from '../dist/watch/watcher.js';

const root = process.argv[2];
const watcher = watchTree(root, { isExcluded: () => false, onDirty: () => {}, onIncomplete: (reason, _at, detail) => console.error(reason, detail), onError: (err) => console.error(err.message) });
await watcher.ready;
let watches = 0;
for (const fd of readdirSync('/proc/self/fdinfo')) {
  try {
    watches += (readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/^inotify /gm) ?? []).length;
  } catch { /* fd closed meanwhile */ }
}
console.log(JSON.stringify({ inotifyWatches: watches, watchedDirs: watcher.size, rssMB: Math.round(process.memoryUsage().rss / 1048576) }));
await watcher.close();
