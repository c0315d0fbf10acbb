/**
 * benchmarks/competitors.ts rsyncWireStats: what the wan-text scenarios report for rsync's side,
 * from the output of the rsync installed here (a local copy with --stats) and from a client's
 * output over a daemon link, where rsync 3.2+ names the compression it negotiated.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { rsyncWireStats } from '../../benchmarks/competitors.js';

test('rsyncWireStats reads "Total bytes sent" from the installed rsync --stats output', () => {
  const dir = mkdtempSync(join(tmpdir(), 'warmsync-rsync-stats-'));
  try {
    writeFileSync(join(dir, 'a'), 'x'.repeat(5000));
    const out = execFileSync('rsync', ['-a', '--stats', '--debug=nstr', `${dir}/a`, `${dir}/b`], { encoding: 'utf8' });
    const stats = rsyncWireStats(out);
    const sent = stats['wireBytesSent'];
    assert.ok(typeof sent === 'number' && sent > 5000 && sent < 6000, `parsed ${String(sent)} from: ${out}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rsyncWireStats names the negotiated compression and reads a thousands-separated count', () => {
  const out = [
    'Client negotiated checksum: xxh128',
    'Client negotiated compress: zstd (level 3)',
    '',
    'Total transferred file size: 50,498,847 bytes',
    'Total bytes sent: 13,603,017',
    'Total bytes received: 7,905',
  ].join('\n');
  assert.deepEqual(rsyncWireStats(out), { wireBytesSent: 13_603_017, compress: 'zstd (level 3)' });
  assert.deepEqual(rsyncWireStats('rsync: nothing useful here\n'), {});
});
