// --bwlimit through the real bin/warmsync, real sockets and SQLite: the agent holds each standby's
// file data to the limit (never more than 10 % above it: the token bucket makes that exact, only
// the first 0.1 s burst comes free), per standby (two standbys at 1 MiB/s each finish in the time
// one does, which a shared cap could not), and the bytes arrive intact. Bad values exit 2 naming
// the flag and the value, from the command line and from --config.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { assertCleanFailure, assertSameTree, buildTree, closeStandbys, openStandby, openStandbyOf, runAgent, runCli, syncOnce, type Standby } from '../helpers/e2e.js';

const MiB = 1024 * 1024;
const LIMIT = MiB;
/** Well past the 0.1 s burst, short enough for the suite: ~3 s at the limit. */
const DATA_BYTES = 3 * MiB;

/** `DATA_BYTES` of random (uncompressible) data in 6 files, from 20 KiB (the small-file path) to 1 MiB (chunked). */
async function fillSource(s: Standby): Promise<void> {
  const sizes = [20 * 1024, 300 * 1024, 700 * 1024, MiB, 500 * 1024];
  sizes.push(DATA_BYTES - sizes.reduce((a, b) => a + b, 0));
  await buildTree(s.src, Object.fromEntries(sizes.map((size, i) => [`data/filestore/f${i}`, randomBytes(size)])));
}

/** Bytes per second of a run that sent `bytes` in `elapsedMs`, the agent's own time (its scan included: the rate it sent at was at least this). */
const rateOf = (bytes: number, elapsedMs: number): number => bytes / (elapsedMs / 1000);

describe('agent --bwlimit', () => {
  after(closeStandbys);

  test('holds one standby to the limit: not more than 10 % over it, and not far under', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await fillSource(s);
    const summary = await syncOnce(s, ['--bwlimit', '1M']);
    assert.equal(summary.bytesSent, DATA_BYTES);
    const rate = rateOf(summary.bytesSent, summary.elapsedMs);
    assert.ok(rate <= 1.1 * LIMIT, `${(rate / MiB).toFixed(3)} MiB/s is more than 10 % over --bwlimit 1M (${summary.elapsedMs} ms)`);
    // Loose below: start-up, scan and a busy machine only ever slow it down.
    assert.ok(rate >= 0.5 * LIMIT, `${(rate / MiB).toFixed(3)} MiB/s is far under --bwlimit 1M (${summary.elapsedMs} ms)`);
    await assertSameTree(s.src, s.dst);
  });

  test('the limit is per standby: two at 1M each take the time of one, each held to the limit', { timeout: 60_000 }, async () => {
    const local = await openStandby();
    const dr = await openStandbyOf(local);
    await fillSource(local);
    const r = await runAgent([local, dr], ['--bwlimit', '1024K']);
    assert.equal(r.code, 0, r.stderr);
    const { standbys } = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { standbys: Array<{ ok: boolean; bytesSent: number; elapsedMs: number }> };
    assert.equal(standbys.length, 2);
    for (const s of standbys) {
      assert.ok(s.ok);
      assert.equal(s.bytesSent, DATA_BYTES);
      assert.ok(rateOf(s.bytesSent, s.elapsedMs) <= 1.1 * LIMIT, `a standby got ${(rateOf(s.bytesSent, s.elapsedMs) / MiB).toFixed(3)} MiB/s`);
    }
    // Synced side by side; one cap shared by both would keep each busy (2 × 3 MiB − burst) / 1 MiB/s ≥ 5.9 s.
    const slowest = Math.max(...standbys.map((s) => s.elapsedMs));
    assert.ok(slowest < 5000, `the slower standby took ${slowest} ms: the limit looks shared`);
    await assertSameTree(local.src, local.dst);
    await assertSameTree(local.src, dr.dst);
  });

  test('bad values exit 2 naming --bwlimit and the value, on the command line and in --config', async () => {
    const env = { WARMSYNC_TOKEN: 'x'.repeat(32) };
    const base = ['agent', '--root', '/nonexistent-src', '--connect', 'ws://127.0.0.1:9', '--once'];
    for (const bad of ['fast', '0', '1000', '12Q', '-5M', '1e6', '']) {
      const r = await runCli([...base, `--bwlimit=${bad}`], { env });
      assertCleanFailure(r, 2, new RegExp(`BAD_FLAG: --bwlimit takes bytes per second from 1024, as a number with an optional K, M or G suffix \\(e\\.g\\. 500K, 12M\\), not ${JSON.stringify(JSON.stringify(bad)).slice(1, -1)}`));
    }
    const s = await openStandby();
    const config = join(s.dir, 'agent.yaml');
    await writeFile(config, 'bwlimit: 5 MB/s\n');
    const r = await runCli([...base, '--config', config], { env });
    assertCleanFailure(r, 2, /BAD_FLAG: --bwlimit takes bytes per second .*not "5 MB\/s"/);
  });
});
