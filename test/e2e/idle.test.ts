// e2e: idle daemons sleep. A receiver with no agent, and a live agent with --metrics-listen that
// has nothing to send, must not wake many times a second. prom-client's default event-loop sampler
// (a 10 ms timer) woke each ~100 times a second: 296-313 voluntary context switches of the main
// thread in 3 s, where these daemons need a handful (the agent's 200 ms heartbeat, which the
// receiver records; keep-alive pings). Counted from /proc: a voluntary switch is a wait that ended.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTree, closeStandbys, openStandby, startLiveAgent, waitForConvergence } from '../helpers/e2e.js';

after(closeStandbys);

const WINDOW_MS = 3000;
/**
 * Bounds with room: 9-15, 26-28 and 24-33 were measured in the window (the higher ones with other
 * tests loading the machine), and ~300 each with the 10 ms sampler.
 */
const MAX_WAKEUPS = { receiverAlone: 60, agent: 90, receiverWithAgent: 120 };

/** Voluntary context switches of process `pid`'s main thread so far. */
async function mainThreadWaits(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/task/${pid}/status`, 'utf8');
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status);
  assert.ok(m, `no voluntary_ctxt_switches in /proc/${pid}/task/${pid}/status`);
  return Number(m[1]);
}

/** How many times `pid`'s main thread waited and woke within `ms` from now. */
async function wakeupsOver(pid: number, ms: number): Promise<number> {
  const before = await mainThreadWaits(pid);
  await sleep(ms);
  return (await mainThreadWaits(pid)) - before;
}

test('an idle receiver, and an idle live agent with --metrics-listen, wake only a few times a second', { timeout: 60_000 }, async (t) => {
  const s = await openStandby();
  const receiverPid = s.receiver.child.pid;
  assert.ok(receiverPid !== undefined);
  await sleep(500);
  const receiverAlone = await wakeupsOver(receiverPid, WINDOW_MS);
  assert.ok(receiverAlone <= MAX_WAKEUPS.receiverAlone, `the idle receiver's main thread woke ${receiverAlone} times in ${WINDOW_MS} ms (at most ${MAX_WAKEUPS.receiverAlone} expected)`);

  await buildTree(s.src, { 'a.txt': 'a\n' });
  const agent = startLiveAgent(s, ['--metrics-listen', '127.0.0.1:0']);
  await agent.waitForLog(/serving \/healthz and \/metrics on /, 20_000);
  await waitForConvergence(s);
  const agentPid = agent.child.pid;
  assert.ok(agentPid !== undefined);
  await sleep(500);
  const [agentWakeups, receiverWithAgent] = await Promise.all([wakeupsOver(agentPid, WINDOW_MS), wakeupsOver(receiverPid, WINDOW_MS)]);
  t.diagnostic(`main-thread wakeups in ${WINDOW_MS} ms: receiver alone ${receiverAlone}, live agent ${agentWakeups}, receiver with the agent ${receiverWithAgent}`);
  assert.ok(agentWakeups <= MAX_WAKEUPS.agent, `the idle live agent's main thread woke ${agentWakeups} times in ${WINDOW_MS} ms (at most ${MAX_WAKEUPS.agent} expected)`);
  assert.ok(receiverWithAgent <= MAX_WAKEUPS.receiverWithAgent, `with an idle agent connected, the receiver's main thread woke ${receiverWithAgent} times in ${WINDOW_MS} ms (at most ${MAX_WAKEUPS.receiverWithAgent} expected)`);
});
