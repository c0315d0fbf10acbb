/**
 * `npm run test:faults [-- --long] [-- --seed N]`: the fault suite on its own. `npm test` runs the
 * same files in their quick mode; --long means more kill points, faults and mutations
 * (WARMSYNC_FAULT_LONG=1), --seed replays a run (WARMSYNC_FAULT_SEED, printed by every suite).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

let values: { long?: boolean; seed?: string };
try {
  ({ values } = parseArgs({ options: { long: { type: 'boolean' }, seed: { type: 'string' } }, strict: true }));
} catch (err) {
  process.stderr.write(`test:faults: ${(err as Error).message}; usage: npm run test:faults [-- --long] [-- --seed N]\n`);
  process.exit(2);
}
const dir = fileURLToPath(new URL('.', import.meta.url));
const files = readdirSync(dir).filter((name) => name.endsWith('.test.ts')).sort().map((name) => dir + name);
const env = { ...process.env };
if (values.long) env['WARMSYNC_FAULT_LONG'] = '1';
if (values.seed !== undefined) env['WARMSYNC_FAULT_SEED'] = values.seed;
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], { env, stdio: 'inherit' });
child.on('close', (code) => process.exit(code ?? 1));
