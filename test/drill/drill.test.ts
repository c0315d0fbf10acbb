/**
 * The short failover drill (scripts/drill/drill.ts) as CI runs it: two seeded crashes of a busy
 * Artifactory-like active server with a real PostgreSQL primary and standby, the real receiver and
 * live agent, each no sooner than the agent's W - skew is past 21 of the workload's commits. The W-bounded procedure must leave the promoted DB referencing only binaries the
 * standby holds, intact: 0 missing, 0 corrupt, every time. The naive and rsync procedures run on
 * the same crashes for the record (their losses are what docs/failover.md reports, not asserted).
 * Skips, saying why, only when PostgreSQL cannot be found or installed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PROCEDURES, runDrill } from '../../scripts/drill/drill.js';
import { postgresForTests } from '../../scripts/drill/pg.js';

const { pgBin, skip } = postgresForTests();

const SEEDS = [7, 8];
/**
 * The crash waits, past its seeded moment if need be, until W - skew is past this many commits,
 * the first of them uploads (the workload starts collecting past 20 live binaries): a loaded
 * machine slows the crash down instead of leaving too little work to check.
 */
const MIN_COVERED = 21;

describe('failover drill (short)', { skip, timeout: 600_000 }, () => {
  for (const seed of SEEDS) {
    test(`seed ${seed}: W-bounded failover, 0 missing and 0 corrupt referenced binaries`, async () => {
      const lines: string[] = [];
      const d = await runDrill({
        seed, pgBin, minRunMs: 5000, maxRunMs: 8000, minCoveredCommits: MIN_COVERED, procedures: PROCEDURES, applyDelayMs: 8000, skewMs: 1000, deleteGraceMs: 1000, rsyncEveryMs: 2000,
        say: (line) => lines.push(line),
      });
      const bounded = d.results.find((r) => r.procedure === 'bounded');
      const context = `seed ${seed}\n${lines.join('\n')}\n${JSON.stringify(d.results, null, 2)}`;
      assert.ok(bounded !== undefined, context);
      assert.equal(bounded.error, null, context);
      assert.ok(d.committed >= MIN_COVERED && (bounded.referenced ?? 0) > 0, `the workload did too little to prove anything: ${context}`);
      assert.equal(bounded.missing, 0, context);
      assert.equal(bounded.corrupt, 0, context);
      process.stdout.write(`# ${context.split('\n')[1] ?? ''}\n# ${d.results.map((r) => `${r.procedure}: ${r.error ?? `${r.missing} missing, ${r.corrupt} corrupt, ${r.lost} lost`}`).join('; ')}\n`);
    });
  }
});
