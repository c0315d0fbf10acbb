// e2e: what `warmsync agent --once` loads. Start-up is most of a no-op resync's CPU, so the agent
// must not load what it does not use: zod (the protocol is checked by hand, src/protocol/check.ts),
// prom-client (the receiver's /metrics), yaml (only with --config), cli-progress (only on a
// terminal), pg (the receiver's snapshot source). Traced with test/helpers/module-trace.mjs over a
// first sync (results and credit come back) and a no-op rerun.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { agentArgs, buildTree, closeStandbys, openStandby, runCli, type Standby } from '../helpers/e2e.js';

after(closeStandbys);

const TRACE_HOOK = fileURLToPath(new URL('../helpers/module-trace.mjs', import.meta.url));
const NOT_ON_THE_AGENT_PATH = ['zod', 'prom-client', 'yaml', 'cli-progress', 'pg'];

/** Runs `agent --once --json` on `s` under the module trace (asserts exit 0); returns the modules it loaded. */
async function tracedOnce(s: Standby, label: string): Promise<string[]> {
  const traceFile = join(s.dir, `modules-${label}.txt`);
  const env = { NODE_OPTIONS: `--import=${TRACE_HOOK}`, WARMSYNC_MODULE_TRACE: traceFile };
  const r = await runCli(agentArgs(s), { env, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${label}: agent exited ${r.code}: ${r.stderr}`);
  return (await readFile(traceFile, 'utf8')).split('\n').filter((line) => line !== '');
}

function packagesIn(modules: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const m of modules) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(m);
    if (match) names.add(match[1] as string);
  }
  return names;
}

test('agent --once loads neither zod nor the other packages it does not use', { timeout: 120_000 }, async () => {
  const s = await openStandby();
  await buildTree(s.src, { 'a.txt': 'a\n', 'dir/b.txt': 'b\n', 'link': { symlink: 'a.txt' } });
  for (const label of ['first-sync', 'no-op']) {
    const modules = await tracedOnce(s, label);
    // The trace itself works: it saw warmsync's own ES modules and ws's CommonJS files.
    assert.ok(modules.some((m) => m.endsWith('/dist/protocol/validate.js')), `${label}: no protocol module in the trace`);
    const packages = packagesIn(modules);
    assert.ok(packages.has('ws') && packages.has('better-sqlite3'), `${label}: ${[...packages].join(', ')}`);
    for (const name of NOT_ON_THE_AGENT_PATH) {
      assert.ok(!packages.has(name), `${label}: agent --once loaded ${name}: ${modules.filter((m) => m.includes(`/node_modules/${name}/`)).slice(0, 3).join(', ')}`);
    }
  }
});

test('run as a command, bin/warmsync.js starts node with its young generation capped (--max-semi-space-size=4)', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  // The receiver was started as the installed command is: the file itself, through its first line.
  const argv = (await readFile(`/proc/${s.receiver.child.pid}/cmdline`, 'utf8')).split('\0');
  assert.ok(argv.includes('--max-semi-space-size=4'), argv.join(' '));
  assert.ok(argv.some((a) => a.endsWith('/bin/warmsync.js')), argv.join(' '));
});
