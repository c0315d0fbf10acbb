// Faults: SIGKILL the receiver between renaming files into place and recording them in the manifest,
// then change the source under those very files before the next sync. WARMSYNC_FAULT_STOP=commit:K
// stops the receiver right after its Kth rename (src/receiver/session.ts), so the kill lands in that
// window however fast or slow the machine. The promise checked: a file on the standby is always
// known to the manifest, so the next reconciliation converges the standby on the source even when
// the source deleted or rewrote a file the killed receiver had put in place: no stray file a
// failover would serve, and `warmsync verify` finds nothing stray.
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startAgentProcess, startReceiverProcess } from '../../scripts/lib/cli-process.js';
import { assertSameTree, closeStandbys, openWorkspace, receiverArgs, restartReceiver, runCli, syncOnce, tombstonePaths, type Standby } from '../helpers/e2e.js';
import { LONG, Rng, faultSeed, killWhenStopped } from '../helpers/faults.js';

after(closeStandbys);

const seed = faultSeed('commit-kill');
const rng = new Rng(seed);
const ROUNDS = LONG ? 12 : 4;
const FILES_PER_ROUND = 60;

test('SIGKILL between the renames and the record: the next sync converges, nothing is stray', { timeout: LONG ? 900_000 : 180_000 }, async () => {
  const ws = await openWorkspace();
  for (let d = 0; d < 4; d++) await mkdir(join(ws.src, `filestore/0${d}`), { recursive: true });
  const files: string[] = [];
  let next = 0;
  // A first receiver only to learn a free port; each round's faulty one listens on the same address.
  const first = await startReceiverProcess(receiverArgs(ws));
  const s: Standby = { ...ws, receiver: first, url: first.url };
  await first.stop();
  const port = new URL(s.url).port;
  const args = receiverArgs(s).map((a) => (a === '127.0.0.1:0' ? `127.0.0.1:${port}` : a));

  for (let round = 0; round < ROUNDS; round++) {
    const fresh: string[] = [];
    for (let i = 0; i < FILES_PER_ROUND; i++) {
      const rel = `filestore/0${next % 4}/blob-${next++}`;
      fresh.push(rel);
      await writeFile(join(s.src, rel), rng.bytes(rng.int(1, 8192)));
    }
    files.push(...fresh);
    const stopAt = rng.int(1, FILES_PER_ROUND - 1);
    s.receiver = await startReceiverProcess(args, { WARMSYNC_FAULT_STOP: `commit:${stopAt}` });
    const agent = startAgentProcess(['--root', s.src, '--connect', s.url, '--token-file', s.tokenFile, '--once', '--connect-attempts', '1']);
    await killWhenStopped(s.receiver.child, new Promise((r) => s.receiver.child.once('close', r)), `rename ${stopAt} of round ${round}`, s.receiver.stderr);
    agent.child.kill('SIGKILL');
    await agent.exited;

    // Under what the killed receiver may have renamed into place: deletions and rewrites.
    for (const rel of fresh) {
      const draw = rng.next();
      if (draw < 0.4) {
        await rm(join(s.src, rel));
        files.splice(files.indexOf(rel), 1);
      } else if (draw < 0.6) {
        await writeFile(join(s.src, rel), rng.bytes(rng.int(1, 8192)));
      }
    }
    await restartReceiver(s);
    // --max-delete 100: round 0 may delete more than half of a 60-file tree on purpose (seed 35
    // draws 32); the guard is tested in test/unit/plan/safety.test.ts and the e2e suite.
    await syncOnce(s, ['--connect-attempts', '20', '--max-delete', '100'], 120_000);
    await assertSameTree(s.src, s.dst, { skipDst: (rel) => tombstonePaths(s.dst).includes(rel) });
    await s.receiver.stop();
  }
  const verify = await runCli(['verify', '--root', s.dst], { timeoutMs: 60_000 });
  assert.equal(verify.code, 0, `verify found differences:\n${verify.stdout}${verify.stderr}`);
  assert.match(verify.stdout, / 0 stray\n$/);
  process.stdout.write(`# commit-kill: seed ${seed}: ${ROUNDS} kills after a rename, before its record; ${files.length} files at the end\n`);
});
