// e2e: the guard against a snapshot time T from the future and the way back from a wrong T
// (issue 17, finding 7), through bin/warmsync with a real receiver and `agent --once`:
// - `snapshot --time 2099-01-01T00:00:00Z` (a typo) exits 2 with SNAPSHOT_FUTURE naming the problem
//   and changes nothing: no T recorded, the tombstoned file still on disk;
// - with --force it is recorded (warned), and from then on every deletion is applied at once, each
//   later true T being ignored as older (the state the finding describes);
// - `snapshot --time T --correct` records the true T again: it lists the files removed under the
//   wrong T as gone for good (it re-creates nothing), and the next deletion is held by the gate again.
import assert from 'node:assert/strict';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  assertCleanFailure, buildTree, closeStandbys, exists, openStandby, runCli, settleTimes, statusJson, syncOnce, tombstonePaths,
  type Standby,
} from '../helpers/e2e.js';

after(closeStandbys);

const FUTURE = '2099-01-01T00:00:00Z';

async function cli(args: string[], code = 0): Promise<{ stdout: string; stderr: string }> {
  const r = await runCli(args, { timeoutMs: 30_000 });
  assert.equal(r.code, code, `warmsync ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

async function deleteOnSource(s: Standby, rel: string): Promise<void> {
  await unlink(join(s.src, rel));
  await syncOnce(s);
  assert.ok(tombstonePaths(s.dst).includes(rel), `${rel} tombstoned`);
}

describe('snapshot: a T from the future is refused; a wrong T can be corrected', { concurrency: false }, () => {
  let s: Standby;
  before(async () => {
    s = await openStandby();
    await buildTree(s.src, { 'filestore/aa/one': 'one\n', 'filestore/aa/two': 'two\n', 'filestore/aa/three': 'three\n', 'etc/app.conf': 'x=1\n' });
    await settleTimes(s.src);
    await syncOnce(s);
    await deleteOnSource(s, 'filestore/aa/one');
  });

  test('a T later than now + skew: exit 2 SNAPSHOT_FUTURE, nothing recorded, nothing removed', { timeout: 60_000 }, async () => {
    const r = await runCli(['snapshot', '--root', s.dst, '--time', FUTURE], { timeoutMs: 30_000 });
    assertCleanFailure(r, 2, /^warmsync: SNAPSHOT_FUTURE: --time: T 2099-01-01T00:00:00\.000Z is \d+ ms past this host's clock .* plus skew.*; nothing changed \(--force records it anyway\)$/);
    assert.equal((await statusJson(s.dst)).snapshotTime, null);
    assert.ok(await exists(join(s.dst, 'filestore/aa/one')), 'the tombstoned file is kept');
    assert.deepEqual(tombstonePaths(s.dst), ['filestore/aa/one']);
    // A T within the skew of this host's clock is fine (the active's clock may run ahead by skew).
    const near = Date.now() + 1000;
    await cli(['snapshot', '--root', s.dst, '--time', String(near)]);
    assert.equal((await statusJson(s.dst)).snapshotTime, near);
    assert.ok(await exists(join(s.dst, 'filestore/aa/one')), 'held: deleted less than the grace before T');
  });

  test('--force records it (warned): every deletion then goes at once, later true Ts are ignored', { timeout: 60_000 }, async () => {
    const r = await cli(['snapshot', '--root', s.dst, '--time', FUTURE, '--force']);
    assert.match(r.stderr, /"code":"SNAPSHOT_FUTURE","msg":"--force: recording T 2099-01-01T00:00:00\.000Z is /);
    assert.match(r.stdout, /removed filestore\/aa\/one\n1 removed/);
    assert.equal((await statusJson(s.dst)).snapshotTime, Date.parse(FUTURE));
    await deleteOnSource(s, 'filestore/aa/two');
    const later = await cli(['snapshot', '--root', s.dst, '--time', String(Date.now())]);
    assert.match(later.stdout, /\(unchanged: the given time was older\)\nremoved filestore\/aa\/two\n/);
    assert.equal(await exists(join(s.dst, 'filestore/aa/two')), false, 'the wrong T let a fresh deletion through at once');
  });

  test('--correct records the true T, lists what is gone for good, and the gate holds deletions again', { timeout: 60_000 }, async () => {
    const truth = Date.now() - 1000;
    const r = await cli(['snapshot', '--root', s.dst, '--time', String(truth), '--correct', '--json']);
    const out = JSON.parse(r.stdout) as { snapshotTime: number; previous: number; corrected: boolean; unrecoverable: Array<{ path: string; snapshotTime: number }> };
    assert.equal(out.corrected, true);
    assert.equal(out.snapshotTime, truth);
    assert.equal(out.previous, Date.parse(FUTURE));
    assert.deepEqual(out.unrecoverable.map((u) => [u.path, u.snapshotTime]), [['filestore/aa/one', Date.parse(FUTURE)], ['filestore/aa/two', Date.parse(FUTURE)]]);
    assert.match(r.stderr, /"code":"SNAPSHOT_CORRECTED","msg":"recorded snapshot time corrected from 2099-01-01T00:00:00\.000Z to /);
    assert.equal((await statusJson(s.dst)).snapshotTime, truth);
    assert.equal(await exists(join(s.dst, 'filestore/aa/one')), false, 'a correction re-creates nothing');

    await deleteOnSource(s, 'filestore/aa/three');
    const next = await cli(['snapshot', '--root', s.dst, '--time', String(Date.now())]);
    assert.match(next.stdout, /0 removed, 1 tombstone\(s\) still held\n$/);
    assert.ok(await exists(join(s.dst, 'filestore/aa/three')), 'held by the gate again');
    // Human output names the correction and what it cannot undo.
    const human = await cli(['snapshot', '--root', s.dst, '--time', String(truth), '--correct']);
    assert.match(human.stdout, /\(corrected; was /);
    assert.match(human.stdout, /^gone for good filestore\/aa\/one: removed at .* under snapshot 2099-01-01T00:00:00\.000Z$/m);
  });
});
