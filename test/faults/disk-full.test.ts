// Faults: the standby's disk fills up. The standby root (manifest included: the default state dir
// lies inside it) is an 8 MiB tmpfs and the source holds twice that. The receiver reports ENOSPC per
// file (with its code, to the agent and in its log), keeps serving, keeps the manifest consistent
// (every row it holds is on disk and verifies) and records nothing it could not write; once the
// file system is grown, the next agent run converges. Needs mount(2) (root): skipped otherwise, except
// under CI (CI set), where a refused mount fails the test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';
import { mountTmpfs, skipOrFailUnderCI } from '../helpers/ci.js';
import {
  assertSameTree, buildTree, closeStandbys, findTempFiles, manifestRows, openWorkspace, receiverArgs, runAgent, runCli, settleTimes,
  syncOnce, type Standby,
} from '../helpers/e2e.js';

const mounted: string[] = [];
after(async () => {
  // Stops the receiver; removing the workspace fails at the mount point, so unmount, then remove it.
  await closeStandbys().catch(() => undefined);
  for (const dir of mounted) {
    execFileSync('umount', ['-l', dir]);
    await rm(dirname(dir), { recursive: true, force: true });
  }
});

test('disk full on the standby: ENOSPC reported, nothing recorded that is not on disk, recovery once space returns', { timeout: 180_000 }, async (t) => {
  const ws = await openWorkspace();
  const refused = mountTmpfs(ws.dst, '8m');
  if (skipOrFailUnderCI(t, refused && `cannot mount a tmpfs here (${refused})`)) return;
  mounted.push(ws.dst);
  const spec: Record<string, Buffer> = {};
  for (let i = 0; i < 32; i++) spec[`filestore/${(i % 4).toString(16).padStart(2, '0')}/blob-${i}`] = randomBytes(512 * 1024);
  for (let i = 0; i < 200; i++) spec[`etc/conf-${i}.yaml`] = randomBytes(100 + i);
  await buildTree(ws.src, spec);
  await settleTimes(ws.src);
  const receiver = await startReceiverProcess(receiverArgs(ws));
  const s: Standby = { ...ws, receiver, url: receiver.url };

  const full = await runAgent(s, ['--connect-attempts', '3'], 120_000);
  assert.equal(full.code, 1, `the agent should fail on a full standby:\n${full.stdout}${full.stderr}`);
  assert.match(full.stderr, /SYNC_INCOMPLETE: .*ENOSPC/);
  assert.equal(receiver.child.exitCode, null, `the receiver died on a full disk:\n${receiver.stderr()}`);
  assert.match(receiver.stderr(), /"level":"warn",.*"code":"ENOSPC"/, 'the receiver logs the error with its code');

  // Consistent: every live row is on disk with the recorded content; nothing half-written remains.
  const rows = manifestRows(s.dst).filter((r) => r.deleted_at === null && r.kind === 'file');
  assert.ok(rows.length < Object.keys(spec).length, 'not everything can fit');
  const verify = await runCli(['verify', '--root', s.dst, '--json'], { timeoutMs: 60_000 });
  const report = JSON.parse(verify.stdout) as { corrupt: unknown[]; missing: unknown[]; stray: Array<{ path: string }> };
  assert.deepEqual(report.corrupt, [], 'a recorded file does not match the manifest');
  assert.deepEqual(report.missing, [], 'the manifest records a file that is not on disk');
  assert.deepEqual(await findTempFiles(s.dst), [], 'temporary files left behind');
  const status = await runCli(['status', '--root', s.dst], { timeoutMs: 30_000 });
  assert.equal(status.code, 0, status.stderr);

  // Not a byte left, not even for the manifest's own writes (heartbeats, commits): a filler file
  // in the state dir takes the rest. The receiver must still not record what it could not write.
  // The premise is checked: the filler ran out of space, and no block is left free.
  const filler = await writeFile(join(s.dst, '.warmsync', 'filler'), Buffer.alloc(8 << 20)).then(() => 'written whole', (err: NodeJS.ErrnoException) => err.code);
  assert.equal(filler, 'ENOSPC', 'the 8 MiB filler should have run out of space: the standby was not full');
  const left = await statfs(s.dst);
  assert.equal(left.bavail, 0, `the filler left ${left.bavail} blocks of ${left.bsize} bytes free: the standby is not full`);
  await buildTree(s.src, { 'late/one.bin': randomBytes(4096), 'late/two.bin': randomBytes(10) });
  const none = await runAgent(s, ['--connect-attempts', '3'], 120_000);
  assert.equal(none.code, 1, `the agent should fail on a full standby:\n${none.stdout}${none.stderr}`);
  assert.equal(receiver.child.exitCode, null, `the receiver died when even the manifest could not be written:\n${receiver.stderr()}`);
  const again = JSON.parse((await runCli(['verify', '--root', s.dst, '--json'], { timeoutMs: 60_000 })).stdout) as typeof report;
  assert.deepEqual([again.corrupt, again.missing], [[], []], 'the manifest records what is not on disk');
  await rm(join(s.dst, '.warmsync', 'filler'));

  // Space returns: the same receiver, still running, takes the rest.
  execFileSync('mount', ['-o', 'remount,size=64m', s.dst]);
  await syncOnce(s);
  await assertSameTree(s.src, s.dst);
  const clean = await runCli(['verify', '--root', s.dst], { timeoutMs: 60_000 });
  assert.equal(clean.code, 0, `verify after recovery:\n${clean.stdout}${clean.stderr}`);
  process.stdout.write(`# disk-full: ${rows.length} of ${Object.keys(spec).length} files fitted in 8 MiB, ${report.stray.length} strays; converged after growing to 64 MiB\n`);
  assert.equal(await receiver.stop(), 0);
});
