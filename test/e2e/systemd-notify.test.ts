// e2e: both daemons as Type=notify services (deploy/*.service). The real bin/warmsync receiver and
// live agent run with NOTIFY_SOCKET pointing at a real AF_UNIX datagram socket (a python3 child
// binds it, as systemd would) and WATCHDOG_USEC=400000 (WatchdogSec=0.4s):
// the receiver says STATUS= then READY=1 once it listens; the agent pushes its start timeout
// (EXTEND_TIMEOUT_USEC) while its first full pass runs and says READY=1 once the standby matches
// the source; each sends its one-line state when it changes (the receiver's is `warmsync status`'s
// verdict line, and follows a new snapshot time); both ping WATCHDOG=1 about every 200 ms; SIGTERM
// gives STOPPING=1, exit 0 and nothing after. Apart: a NOTIFY_SOCKET nobody listens on costs one
// warning on each side and replication goes on; without NOTIFY_SOCKET nothing of it shows; with two
// standbys, one down, the agent is ready once the other matches (a DR site that is down must not
// fail the agent's start).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import {
  assertSameTree, buildTree, closeStandbys, openStandby, openStandbyOf, runCli, settleTimes, startLiveAgent, waitForConvergence,
  type AgentProcess, type Standby, type TreeSpec,
} from '../helpers/e2e.js';
import { assertPingRate, closeNotifyListeners, listenNotify, type NotifyListener } from '../helpers/notify.js';

let sockets: string;
before(async () => {
  sockets = await mkdtemp(join(tmpdir(), 'warmsync-notify-e2e-'));
});
after(async () => {
  await closeStandbys();
  await closeNotifyListeners();
  await rm(sockets, { recursive: true, force: true });
});

const TREE: TreeSpec = {
  'etc/system.yaml': 'shared:\n  database:\n    type: postgresql\n',
  'data/filestore/ab/ab01': 'binary ab01\n'.repeat(500),
  'data/filestore/cd/cd02': 'binary cd02\n',
};
/** WatchdogSec=0.4s, as systemd passes it: pings are due every 200 ms. */
const WATCHDOG_USEC = 400_000;
const PING_MS = WATCHDOG_USEC / 2000;

describe('systemd notify: receiver and live agent under Type=notify with a watchdog', { concurrency: false }, () => {
  let s: Standby;
  let agent: AgentProcess;
  let onReceiver: NotifyListener;
  let onAgent: NotifyListener;
  let receiverReady = 0;
  let agentReady = 0;
  const context = (): string => `--- agent stderr:\n${agent.stderr().slice(-4000)}\n--- receiver stderr:\n${s.receiver.stderr().slice(-3000)}\n--- to systemd from the agent: ${JSON.stringify(onAgent.texts().filter((t) => t !== 'WATCHDOG=1'))}`;

  before(async () => {
    onReceiver = await listenNotify(sockets, 'receiver.sock');
    onAgent = await listenNotify(sockets, 'agent.sock');
  });

  test('the receiver: its status line, then READY=1 once it listens', { timeout: 30_000 }, async () => {
    s = await openStandby({ NOTIFY_SOCKET: onReceiver.path, WATCHDOG_USEC: String(WATCHDOG_USEC) });
    receiverReady = (await onReceiver.waitFor(/^READY=1$/, 10_000)).at;
    const said = onReceiver.texts().filter((t) => t !== 'WATCHDOG=1');
    assert.deepEqual(said.slice(0, 2), ['STATUS=UNSAFE: no watermark yet: no agent has completed a sync to this standby; agent not connected', 'READY=1']);
  });

  test('the agent: extends its start timeout during the first full pass, READY=1 once the standby matches', { timeout: 60_000 }, async () => {
    await buildTree(s.src, TREE);
    await settleTimes(s.src);
    agent = startLiveAgent(s, [], [], { NOTIFY_SOCKET: onAgent.path, WATCHDOG_USEC: String(WATCHDOG_USEC) });
    agentReady = (await onAgent.waitFor(/^READY=1$/, 30_000).catch((err: Error) => assert.fail(`${err.message}\n${context()}`))).at;
    // READY=1 comes after the first pass: the standby already holds everything.
    await assertSameTree(s.src, s.dst);
    assert.match(agent.stderr(), /caught up: ws:\/\/127\.0\.0\.1:\d+: connected, W \d+ s behind/);
    const beforeReady = onAgent.messages.filter((m) => m.at <= agentReady && m.text !== 'WATCHDOG=1').map((m) => m.text);
    assert.equal(beforeReady[0], 'EXTEND_TIMEOUT_USEC=90000000', context());
    // Its first status line is from before the standby was caught up; the one just before READY=1, from after.
    const statuses = beforeReady.filter((t) => t.startsWith('STATUS='));
    assert.match(statuses[0] ?? '', /^STATUS=ws:\/\/127\.0\.0\.1:\d+: (not connected, no W yet|connected, first full pass)$/, context());
    assert.deepEqual(beforeReady.slice(-2), [`STATUS=${s.url}: connected, W 0 s behind`, 'READY=1'], context());
    assert.equal(onAgent.texts().filter((t) => t === 'READY=1').length, 1);
    assert.ok(!onAgent.messages.some((m) => m.at > agentReady && m.text.startsWith('EXTEND_TIMEOUT_USEC=')), 'a start-up extension after READY=1');
  });

  test('the receiver\'s status line follows the agent and the snapshot time, as `warmsync status` words it', { timeout: 30_000 }, async () => {
    await onReceiver.waitFor(/^STATUS=UNSAFE: no DB snapshot time recorded \(run warmsync snapshot, or the receiver's --snapshot-cmd\); agent connected$/, 5_000);
    const from = onReceiver.messages.length;
    const snapshot = await runCli(['snapshot', '--root', s.dst, '--time', new Date(Date.now() - 60_000).toISOString()], { timeoutMs: 20_000 });
    assert.equal(snapshot.code, 0, snapshot.stderr);
    const safe = await onReceiver.waitFor(/^STATUS=SAFE: /, 5_000, from);
    assert.match(safe.text, /^STATUS=SAFE: the filestore is \d+ ms ahead of the DB snapshot plus skew; agent connected$/);
    const status = await runCli(['status', '--root', s.dst], { timeoutMs: 20_000 });
    assert.match(status.stdout.split('\n')[0] ?? '', /^SAFE: the filestore is \d+ ms ahead of the DB snapshot plus skew$/);
  });

  test('both ping WATCHDOG=1 about every WATCHDOG_USEC/2 (200 ms)', { timeout: 30_000 }, async () => {
    // Keep the agent busy meanwhile: pings come from the loop doing the work.
    for (let i = 0; i < 20; i++) {
      await writeFile(join(s.src, `data/filestore/ab/new-${i}`), `new ${i}\n`.repeat(1000));
      await sleep(50);
    }
    await waitForConvergence(s, { what: 'the files written while pinging', context });
    await sleep(500);
    const now = Date.now();
    assertPingRate(onReceiver.messages, PING_MS, receiverReady, now);
    assertPingRate(onAgent.messages, PING_MS, agentReady, now);
  });

  test('SIGTERM: STOPPING=1, exit 0, and nothing after it', { timeout: 40_000 }, async () => {
    for (const [name, stop, listener] of [['agent', () => agent.stop(), onAgent], ['receiver', () => s.receiver.stop(), onReceiver]] as const) {
      assert.equal(await stop(), 0, `${name} exit code\n${context()}`);
      const stopping = await listener.waitFor(/^STOPPING=1$/, 5_000);
      await sleep(PING_MS * 3);
      const after = listener.messages.filter((m) => m.at > stopping.at).map((m) => m.text);
      assert.deepEqual(after, [], `${name} said more after STOPPING=1`);
      assert.equal(listener.texts().filter((t) => t === 'STOPPING=1').length, 1);
    }
  });
});

describe('systemd notify: two standbys, one of them down', () => {
  test('READY=1 once the reachable standby matches; the status line names both', { timeout: 60_000 }, async () => {
    const listener = await listenNotify(sockets, 'two.sock');
    const local = await openStandby();
    const dr = await openStandbyOf(local);
    // The DR site is down: its URL refuses connections. (Stopped the moment it listens, it still
    // exits 0: SIGTERM is handled from before "listening on" and READY=1; it was not, half the time.)
    assert.equal(await dr.receiver.stop(), 0);
    await buildTree(local.src, TREE);
    const agent = startLiveAgent([local, dr], [], [], { NOTIFY_SOCKET: listener.path });
    const ready = await listener.waitFor(/^READY=1$/, 30_000).catch((err: Error) => assert.fail(`${err.message}\n${agent.stderr()}`));
    await assertSameTree(local.src, local.dst);
    const said = listener.messages.filter((m) => m.at <= ready.at).map((m) => m.text);
    assert.equal(said.at(-2), `STATUS=${local.url}: connected, W 0 s behind; ${dr.url}: not connected, no W yet`);
    assert.equal(await agent.stop(), 0);
  });
});

describe('systemd notify: a bad NOTIFY_SOCKET, and none', { concurrency: false }, () => {
  test('a socket nobody listens on: one NOTIFY_FAILED warning on each side, and replication goes on', { timeout: 60_000 }, async () => {
    const nowhere = { NOTIFY_SOCKET: join(sockets, 'nobody.sock'), WATCHDOG_USEC: '100000' };
    const s = await openStandby(nowhere);
    await buildTree(s.src, TREE);
    const agent = startLiveAgent(s, [], [], nowhere);
    await agent.waitForLog(/caught up: /, 30_000);
    await writeFile(join(s.src, 'etc/later.yaml'), 'written while live\n');
    await waitForConvergence(s, { what: 'a file written after the start', context: () => agent.stderr() });
    await sleep(500); // ten failed pings more on each side
    assert.equal(await agent.stop(), 0);
    assert.equal(await s.receiver.stop(), 0);
    for (const [name, stderr] of [['agent', agent.stderr()], ['receiver', s.receiver.stderr()]] as const) {
      const warnings = stderr.split('\n').filter((l) => l.includes('NOTIFY_FAILED'));
      assert.equal(warnings.length, 1, `${name}: ${stderr}`);
      assert.match(warnings[0] as string, /cannot send [A-Z_]+ to systemd at NOTIFY_SOCKET=.*nobody\.sock: no such file or directory, sendto .*; going on without telling systemd/);
    }
  });

  test('without NOTIFY_SOCKET: the same daemons, nothing about systemd', { timeout: 60_000 }, async () => {
    const s = await openStandby({ NOTIFY_SOCKET: '', WATCHDOG_USEC: String(WATCHDOG_USEC) });
    await buildTree(s.src, TREE);
    const agent = startLiveAgent(s, [], [], { NOTIFY_SOCKET: '' });
    await agent.waitForLog(/caught up: /, 30_000);
    await assertSameTree(s.src, s.dst);
    assert.equal(await agent.stop(), 0);
    assert.equal(await s.receiver.stop(), 0);
    assert.doesNotMatch(agent.stderr() + s.receiver.stderr(), /NOTIFY|systemd/);
  });
});
