/**
 * docs/errors.md lists every code the code base can report: errors, warnings and op results.
 * A new code without a line there fails this test.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const abs = join(dir, name);
    return statSync(abs).isDirectory() ? sources(abs) : abs.endsWith('.ts') ? [abs] : [];
  });
}

const CODE_SITES = [
  /(?:WarmsyncError|UsageError|ProtocolError)\('([A-Z][A-Z_]+)'/g,
  /\.(?:warn|error)\('([A-Z][A-Z_]+)'/g,
  /onWarning\('([A-Z][A-Z_]+)'/g,
  /\bfail\([\w.]+, '([A-Z][A-Z_]+)'/g,
  /settleLocally\([\w.]+, [\w.]+, '([A-Z][A-Z_]+)'/g,
  /code: '([A-Z][A-Z_]+)'/g,
];

test('every code used in src/ is documented in docs/errors.md', () => {
  const used = new Set<string>();
  for (const file of sources(join(ROOT, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const site of CODE_SITES) for (const m of text.matchAll(site)) used.add(m[1] as string);
  }
  assert.ok(used.size > 40, `expected to find the codes in src/, found only ${used.size}`);
  const documented = new Set([...readFileSync(join(ROOT, 'docs/errors.md'), 'utf8').matchAll(/`([A-Z][A-Z_]+)`/g)].map((m) => m[1]));
  const missing = [...used].filter((c) => !documented.has(c)).sort();
  assert.deepEqual(missing, [], `codes used in src/ but not in docs/errors.md: ${missing.join(', ')}`);
});
