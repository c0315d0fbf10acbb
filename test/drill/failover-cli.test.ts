/**
 * `warmsync failover` without a database: the settings it prints for the watermark and skew the
 * receiver recorded (human and --json), and its refusals: no watermark yet (NO_WATERMARK), --apply
 * without --pgdata (exit 2), a data dir that is not a standby's (NOT_STANDBY_DATA, nothing
 * written), a --standby that is not a postgres URL (exit 2). Applying to a real standby:
 * failover-apply.test.ts (and the drill, drill.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { assertCleanFailure, closeStandbys, openStandby, openWorkspace, runCli, statusJson, syncOnce, type Standby } from '../helpers/e2e.js';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';

after(closeStandbys);

describe('warmsync failover', () => {
  test('no watermark yet: NO_WATERMARK, exit 1', async () => {
    const s = await openStandby();
    await s.receiver.stop();
    assertCleanFailure(await runCli(['failover', '--root', s.dst]), 1, /^warmsync: NO_WATERMARK: no watermark yet/);
  });

  test('after a sync: W - skew as recovery_target_time, exclusive, promote, delay 0', async () => {
    const ws = await openWorkspace();
    const receiver = await startReceiverProcess(['--root', ws.dst, '--listen', '127.0.0.1:0', '--token-file', ws.tokenFile, '--skew', '1500']);
    const s: Standby = { ...ws, receiver, url: receiver.url };
    await writeFile(join(s.src, 'a.bin'), 'a');
    await syncOnce(s);
    const { watermark } = await statusJson(s.dst);
    assert.ok(watermark !== null);
    const r = await runCli(['failover', '--root', s.dst, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { watermark: number; skewMs: number; recoveryTarget: number; settings: Record<string, string>; applied: boolean };
    assert.equal(out.watermark, watermark);
    assert.equal(out.skewMs, 1500);
    assert.equal(out.recoveryTarget, watermark - 1500);
    const pg = new Date(watermark - 1500).toISOString().replace('T', ' ').replace('Z', '+00');
    assert.deepEqual(out.settings, { recovery_target_time: pg, recovery_target_inclusive: 'off', recovery_target_action: 'promote', recovery_min_apply_delay: '0' });
    assert.equal(out.applied, false);

    const human = await runCli(['failover', '--root', s.dst, '--skew', '0']);
    assert.equal(human.code, 0, human.stderr);
    const target = new Date(watermark).toISOString().replace('T', ' ').replace('Z', '+00');
    assert.ok(human.stdout.split('\n').includes(`recovery_target_time = '${target}'`), human.stdout);
    assert.match(human.stdout, /^recovery_target_action = 'promote'$/m);

    assertCleanFailure(await runCli(['failover', '--root', s.dst, '--apply']), 2, /MISSING_FLAG: .*--pgdata/);
    assertCleanFailure(await runCli(['failover', '--root', s.dst, '--standby', 'mysql://x']), 2, /BAD_PG_URL: --standby: mysql:\/\/x is not a postgres/);
    const notStandby = join(s.dir, 'pgdata');
    await mkdir(notStandby);
    assertCleanFailure(await runCli(['failover', '--root', s.dst, '--apply', '--pgdata', notStandby]), 1, /NOT_STANDBY_DATA: .* has no standby\.signal or recovery\.signal/);
    assert.equal(existsSync(join(notStandby, 'postgresql.auto.conf')), false, 'nothing written');
  });
});
