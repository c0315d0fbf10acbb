// e2e: the live agent's mass-deletion guard (DESIGN.md invariant 5). A live agent watches a synced
// tree; `rm -rf data/*` takes 100 of its 104 files. Deletions past --max-delete's share (50 %) are
// held, not sent: the agent logs MASS_DELETE once and keeps running, a file written meanwhile still
// reaches the standby, and `status` on the standby shows how many deletions are held. Emptying the
// source under the agent is held the same way, and so is a source disk unmounted under it (a tmpfs:
// needs mount(2), so root; skipped elsewhere, failed under CI). Restarting the agent once with
// --release-deletions sends them as tombstones and `status` shows none held.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';
import { mountTmpfs, skipOrFailUnderCI } from '../helpers/ci.js';
import {
  closeStandbys, exists, openStandby, openWorkspace, receiverArgs, runCli, startLiveAgent, statusJson, tombstonePaths, waitFor,
  waitForConvergence, type AgentProcess, type Standby,
} from '../helpers/e2e.js';

const mountedHere: string[] = [];
after(async () => {
  for (const dir of mountedHere) execFileSync('umount', ['-l', dir]);
  await closeStandbys();
});

const DATA_FILES = 100;

test('live: a mass deletion is held while everything else flows; --release-deletions sends it', { timeout: 180_000 }, async () => {
  const s = await openStandby();
  for (let d = 0; d < 10; d++) await mkdir(join(s.src, `data/${d}`), { recursive: true });
  for (let i = 0; i < DATA_FILES; i++) await writeFile(join(s.src, `data/${i % 10}/blob-${i}`), `binary ${i}\n`);
  await mkdir(join(s.src, 'etc'));
  for (let i = 0; i < 4; i++) await writeFile(join(s.src, `etc/conf-${i}.yaml`), `key: ${i}\n`);

  let agent: AgentProcess = startLiveAgent(s);
  const context = (): string => `--- agent stderr (tail):\n${agent.stderr().slice(-4000)}`;
  await waitForConvergence(s, { what: 'the initial sync', timeoutMs: 60_000, context });

  // The disk "loses" its data directory: 100 of 104 files.
  const logFrom = agent.stderr().length;
  await rm(join(s.src, 'data'), { recursive: true });
  await agent.waitForLog(/MASS_DELETE/, 30_000, logFrom);
  // Everything else keeps flowing.
  await writeFile(join(s.src, 'etc/new.yaml'), 'written during the hold\n');
  await waitFor('etc/new.yaml on the standby', () => exists(join(s.dst, 'etc/new.yaml')), 20_000);

  // Every data file is still on the standby; those not tombstoned are held, and status says how many.
  for (let i = 0; i < DATA_FILES; i++) assert.ok(await exists(join(s.dst, `data/${i % 10}/blob-${i}`)), `data/${i % 10}/blob-${i} left the standby`);
  const dataTombstones = (): number => tombstonePaths(s.dst).filter((p) => /^data\/\d\/blob-/.test(p)).length;
  let held = 0;
  await waitFor('status to count the held deletions', async () => {
    held = (await statusJson(s.dst)).deletionsHeld;
    return held > 0 && held + dataTombstones() >= DATA_FILES;
  }, 20_000);
  // Sent before the guard tripped: at most the share (52 of 104); the rest held.
  assert.ok(dataTombstones() <= 52, `${dataTombstones()} data files tombstoned, more than --max-delete's 50 % of 104`);
  // The directories' deletions may still join the held ones: the text must show exactly the count
  // the JSON gives around it, once that count holds still between the two reads.
  let text = '';
  await waitFor('status text to show the held deletions', async () => {
    text = (await runCli(['status', '--root', s.dst])).stdout;
    held = (await statusJson(s.dst)).deletionsHeld;
    return new RegExp(`deletions held +${held} by the agent .*--release-deletions`).test(text);
  }, 20_000).catch(() => assert.fail(`status does not show the ${held} held deletions:\n${text}`));
  assert.equal((agent.stderr().slice(logFrom).match(/MASS_DELETE/g) ?? []).length, 1, `MASS_DELETE logged more than once:\n${context()}`);

  // Emptying the whole source under the live agent is held too; the agent keeps running.
  const emptyFrom = agent.stderr().length;
  await rm(join(s.src, 'etc'), { recursive: true });
  await writeFile(join(s.src, 'still-here.txt'), 'a file written after the source was emptied\n');
  await waitFor('still-here.txt on the standby', () => exists(join(s.dst, 'still-here.txt')), 20_000);
  assert.equal(agent.child.exitCode, null, `the agent exited:\n${context()}`);
  assert.doesNotMatch(agent.stderr().slice(emptyFrom), /MASS_DELETE/, 'a second MASS_DELETE line while the first halt still holds');
  assert.ok(await exists(join(s.dst, 'etc/conf-0.yaml')), 'etc/ left the standby while deletions were held');

  // The operator checked the source: one restart with --release-deletions sends every deletion.
  assert.equal(await agent.stop(), 0);
  agent = startLiveAgent(s, ['--release-deletions']);
  await waitForConvergence(s, { what: 'the standby after --release-deletions', timeoutMs: 60_000, context });
  await waitFor('status to show no deletion held', async () => (await statusJson(s.dst)).deletionsHeld === 0, 20_000);
  assert.equal(dataTombstones(), DATA_FILES);
  assert.ok(tombstonePaths(s.dst).includes('etc/conf-0.yaml'));
  assert.equal(await agent.stop(), 0);
});

test('live: the source\'s disk unmounted under the agent: every deletion held, the agent keeps running', { timeout: 120_000 }, async (t) => {
  const ws = await openWorkspace();
  const refused = mountTmpfs(ws.src, '16m');
  if (skipOrFailUnderCI(t, refused && `cannot mount a tmpfs here (${refused})`)) return;
  mountedHere.push(ws.src);
  for (let i = 0; i < 30; i++) await writeFile(join(ws.src, `blob-${i}`), `binary ${i}\n`);
  const receiver = await startReceiverProcess(receiverArgs(ws));
  const s: Standby = { ...ws, receiver, url: receiver.url };
  // The agent's cache lives off the source disk, as it would where the disk holds only data.
  const agent = startLiveAgent(s, ['--state-dir', join(ws.dir, 'agent-state')]);
  const context = (): string => `--- agent stderr (tail):\n${agent.stderr().slice(-4000)}`;
  await waitForConvergence(s, { what: 'the initial sync', timeoutMs: 60_000, context });

  const from = agent.stderr().length;
  // The agent holds the source root open only while it reads (scan/openfile.ts SourceRoot), so an
  // umount right after a read may find it busy for up to half a second, as an operator's would.
  await waitFor('umount of the source', () => {
    try {
      execFileSync('umount', [ws.src], { stdio: 'pipe' });
      return true;
    } catch (err) {
      if (/target is busy/.test(String((err as { stderr?: Buffer }).stderr))) return false;
      throw err;
    }
  }, 10_000);
  mountedHere.splice(mountedHere.indexOf(ws.src), 1);
  // The watches go with the file system; the rescan that follows finds an empty root.
  await agent.waitForLog(/"code":"WATCH_LOST"/, 20_000, from);
  await agent.waitForLog(/"code":"SOURCE_EMPTY"/, 20_000, from);
  await waitFor('status to count 30 held deletions', async () => (await statusJson(s.dst)).deletionsHeld === 30, 20_000);
  assert.deepEqual(tombstonePaths(s.dst), [], 'a file of the unmounted disk was tombstoned');
  for (let i = 0; i < 30; i++) assert.ok(await exists(join(s.dst, `blob-${i}`)), `blob-${i} left the standby`);
  // The mount point is watched again: what is written there still flows.
  await writeFile(join(ws.src, 'written-on-the-mount-point'), 'x\n');
  await waitFor('the new file on the standby', () => exists(join(s.dst, 'written-on-the-mount-point')), 20_000);
  assert.equal(agent.child.exitCode, null, `the agent exited:\n${context()}`);
  assert.equal(await agent.stop(), 0);
});
