// Preload (`node --import`) that lists every module a process loads, for tests that check what a
// command does not load. Appends one URL or path a line to the file named by $WARMSYNC_MODULE_TRACE:
// ES modules as the loader hook sees them, CommonJS ones (require, createRequire) from
// require.cache when the process exits. Kept as plain JavaScript: the traced child runs without tsx.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const out = process.env.WARMSYNC_MODULE_TRACE;
if (out) {
  const hooks = `
    import { appendFileSync } from 'node:fs';
    export async function load(url, context, next) {
      if (!url.startsWith('node:')) appendFileSync(${JSON.stringify(out)}, url + '\\n');
      return next(url, context);
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => appendFileSync(out, Object.keys(cache).map((p) => `${p}\n`).join('')));
}
