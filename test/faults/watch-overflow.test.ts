// Faults: the live agent's inotify queue overflows. The agent is frozen (SIGSTOP) so it cannot read
// its queue, then the source gets more unmergeable events than fs.inotify.max_queued_events (writes
// alternating between two files), and after them a new directory with a file inside and an edit in
// an existing directory, whose events the full queue drops. No sysctl is touched. Checked: once
// thawed, the agent logs WATCH_OVERFLOW with the sysctl to raise, keeps running, and everything
// the dropped events would have reported reaches the standby through the rescan that follows.
// Run with one standby and with two (issue 21): the overflow holds and rescans every standby.
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LogRecord } from '../../src/log.js';
import {
  buildTree, closeStandbys, openStandby, openStandbyOf, settleTimes, startLiveAgent, waitForConvergence, type Standby,
} from '../helpers/e2e.js';

after(closeStandbys);

const QUEUE = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'));
const PASS = /scanned \d+ files, \d+ dirs, \d+ symlinks \(\d+ hashed, \d+ from cache, \d+ to hash while sending\); \d+ change\(s\) to send/;

for (const standbys of [1, 2]) {
  describe(`live agent feeding ${standbys} standby(s) whose inotify queue overflows`, () => {
    let all: Standby[];

    before(async () => {
      const first = await openStandby();
      all = [first];
      while (all.length < standbys) all.push(await openStandbyOf(first));
      await buildTree(first.src, {
        'etc/system.yaml': 'shared: {}\n',
        'data/filestore/ab/abcdef': 'binary one\n',
        'data/noise/.keep': '',
      });
      await settleTimes(first.src);
    });

    test('WATCH_OVERFLOW names the sysctl, and what the dropped events hid arrives on every standby', { timeout: 120_000 }, async () => {
      const [s] = all as [Standby];
      const agent = startLiveAgent(all, ['--rescan-interval', '600']);
      await agent.waitForLog(/"msg":"watching /, 20_000);
      await agent.waitForLog(PASS, 20_000);
      for (const each of all) await waitForConvergence(each, { what: `the initial sync of ${each.url}`, context: agent.stderr });
      const mark = agent.stderr().length;

      assert.ok(agent.child.kill('SIGSTOP'));
      try {
        const noise = join(s.src, 'data/noise');
        const fds = [openSync(join(noise, 'ping'), 'w'), openSync(join(noise, 'pong'), 'w')];
        for (let i = 0; i < QUEUE + 100; i++) writeSync(fds[i % 2] as number, 'x');
        for (const fd of fds) closeSync(fd);
        // The queue is full: these events are dropped.
        mkdirSync(join(s.src, 'data/filestore/cd/deep'), { recursive: true });
        writeFileSync(join(s.src, 'data/filestore/cd/deep/cdef01'), 'made while the queue was full\n');
        writeFileSync(join(s.src, 'data/filestore/ab/abcdef'), 'binary one, edited while the queue was full\n');
      } finally {
        agent.child.kill('SIGCONT');
      }

      const [line] = await agent.waitForLog(/^.*"code":"WATCH_OVERFLOW".*$/m, 20_000, mark);
      const record = JSON.parse(line) as LogRecord;
      assert.equal(record.level, 'warn');
      assert.match(record.msg, /fs\.inotify\.max_queued_events/);
      // Each standby has its own rescan: the overflow is every link's, not only the first's.
      for (const each of all) await waitForConvergence(each, { timeoutMs: 30_000, what: `what the dropped events hid, on ${each.url}`, context: agent.stderr });
      assert.equal(agent.child.exitCode, null, 'the agent stopped');
      assert.equal(await agent.stop(), 0, `the agent did not stop cleanly:\n${agent.stderr()}`);
    });
  });
}
