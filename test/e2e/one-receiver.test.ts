// e2e: one receiver per root, and no agent on a standby (issue 17, item 11). A second receiver on the
// same root with another --state-dir started and wrote the same tree; an agent pointed at the
// receiver's own root adopted its files and wrote its hash cache into the receiver's state dir.
// The receiver now holds a lock on the root itself (an abstract socket named by the root's device
// and inode, src/receiver/lock.ts), which the kernel drops when the process dies: no stale lock.
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';
import { STATE_DIR, assertCleanFailure, closeStandbys, exists, openStandby, openWorkspace, receiverArgs, runCli, syncOnce } from '../helpers/e2e.js';

after(closeStandbys);

test('a second receiver on the same root, with another --state-dir, exits 1 naming the running one', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  const r = await runCli(['receiver', ...receiverArgs(s), '--state-dir', join(s.dir, 'other-state')], { timeoutMs: 20_000 });
  assertCleanFailure(r, 1, new RegExp(`RECEIVER_RUNNING: another receiver \\(pid ${s.receiver.child.pid}\\) is running on this root \\(${s.dst}\\), perhaps with another --state-dir`));
  // Through another path to the same directory too: the lock is the directory's identity.
  const r2 = await runCli(['receiver', ...receiverArgs(s).map((a) => (a === s.dst ? `${s.dir}/./dst/` : a)), '--state-dir', join(s.dir, 'third-state')], { timeoutMs: 20_000 });
  assertCleanFailure(r2, 1, /RECEIVER_RUNNING: /);
  await writeFile(join(s.src, 'a.txt'), 'a\n');
  await syncOnce(s);
  assert.equal(await exists(join(s.dst, 'a.txt')), true, 'the first receiver kept serving');
});

test('a receiver killed with SIGKILL leaves no lock: the next one starts, on any state dir', { timeout: 60_000 }, async () => {
  const ws = await openWorkspace();
  const first = await startReceiverProcess(receiverArgs(ws));
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));
  const second = await startReceiverProcess([...receiverArgs(ws), '--state-dir', join(ws.dir, 'elsewhere')]);
  assert.match(second.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
  await second.stop();
});

test('an agent pointed at the receiver\'s own root exits 2 and writes nothing into its state dir', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  const stateBefore = (await readdir(join(s.dst, STATE_DIR))).sort();
  // Default --state-dir: ROOT/.warmsync, the receiver's own state dir.
  const own = await runCli(['agent', '--root', s.dst, '--connect', s.url, '--token-file', s.tokenFile, '--once']);
  assertCleanFailure(own, 2, /SOURCE_IS_STANDBY: agent: \S+ holds a receiver's manifest \(manifest\.sqlite\)/);
  // Its own state dir elsewhere: the root is still a running receiver's.
  const elsewhere = await runCli(['agent', '--root', s.dst, '--connect', s.url, '--token-file', s.tokenFile, '--once', '--state-dir', join(s.dir, 'agent-state')]);
  assertCleanFailure(elsewhere, 2, new RegExp(`SOURCE_IS_STANDBY: agent: --root \\S+ is the root of a receiver \\(pid ${s.receiver.child.pid}\\)`));
  assert.deepEqual((await readdir(join(s.dst, STATE_DIR))).sort(), stateBefore, 'the agent wrote into the receiver\'s state dir');
  assert.equal(await exists(join(s.dir, 'agent-state')), false);
});

test('an agent whose source holds a standby is refused unless the standby is excluded', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  // The workspace dir holds src/ and dst/ (the running receiver's root).
  const base = ['agent', '--root', s.dir, '--connect', s.url, '--token-file', s.tokenFile, '--once', '--json', '--state-dir', join(s.dir, 'agent-state')];
  const refused = await runCli(base);
  assertCleanFailure(refused, 2, /SOURCE_IS_STANDBY: agent: --root \S+ holds the root of a receiver \(pid \d+\) at dst: exclude it \(--exclude \/dst\/\)/);
  const ok = await runCli([...base, '--exclude', '/dst/', '--exclude', '/agent-state/']);
  assert.equal(ok.code, 0, ok.stderr);
});

test('a source holding a stopped receiver\'s state dir (ROOT/.warmsync/manifest.sqlite) is refused unless excluded', { timeout: 60_000 }, async () => {
  const s = await openStandby();
  const source = join(s.dir, 'promoted');
  await mkdir(join(source, STATE_DIR), { recursive: true });
  await writeFile(join(source, STATE_DIR, 'manifest.sqlite'), '');
  await writeFile(join(source, 'x.txt'), 'x\n');
  const base = ['agent', '--root', source, '--connect', s.url, '--token-file', s.tokenFile, '--once', '--json'];
  assertCleanFailure(await runCli(base), 2, /SOURCE_IS_STANDBY: .*holds a receiver's manifest/);
  const withState = [...base, '--state-dir', join(s.dir, 'agent-state')];
  assertCleanFailure(await runCli(withState), 2, /SOURCE_IS_STANDBY: agent: --root \S+ holds a receiver's state dir \(\.warmsync\/manifest\.sqlite\).*--exclude \/\.warmsync\//);
  const ok = await runCli([...withState, '--exclude', '/.warmsync/']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await exists(join(s.dst, 'x.txt')), true);
  assert.equal(await exists(join(s.dst, STATE_DIR, 'manifest.sqlite')), true);
});

test('operator commands given a state dir the running receiver does not keep exit 1 naming the one it keeps', { timeout: 60_000 }, async () => {
  // The receiver first ran with the default state dir (its manifest stays there), then was
  // restarted with another one: the default manifest is stale, and status would judge its old W.
  const s = await openStandby();
  await writeFile(join(s.src, 'a.txt'), 'a\n');
  await syncOnce(s);
  await s.receiver.stop();
  const live = join(s.dir, 'live-state');
  const receiver = await startReceiverProcess([...receiverArgs(s), '--state-dir', live]);
  try {
    for (const args of [['status', '--root', s.dst], ['promote', '--root', s.dst, '--time', String(Date.now()), '--dry-run'], ['verify', '--root', s.dst]]) {
      const r = await runCli(args, { timeoutMs: 20_000 });
      assertCleanFailure(r, 1, new RegExp(`STATE_DIR_NOT_LIVE: the receiver running on ${s.dst} \\(pid ${receiver.child.pid}\\) keeps its state in ${live}, not in ${s.dst}/${STATE_DIR}: .*give --state-dir ${live}$`));
    }
    const ok = await runCli(['status', '--root', s.dst, '--state-dir', live, '--json'], { timeoutMs: 20_000 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { receiverRunning: boolean }).receiverRunning, true);
  } finally {
    await receiver.stop();
  }
  // Once it is stopped, the default state dir may be read again (by an operator who knows what it holds).
  assert.equal((await runCli(['status', '--root', s.dst], { timeoutMs: 20_000 })).code, 0);
});
