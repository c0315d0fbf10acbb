/**
 * agent/metrics: statusLine, the live agent's state in the one line systemd shows (STATUS=): per
 * standby, connected or not, then its W as whole seconds behind now (or why there is none yet), a
 * held W and what is queued only when there are some; standbys in --connect order, `; ` apart.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { statusLine, type StandbyReport } from '../../../src/agent/metrics.js';

const NOW = 1_780_000_000_000;
const BASE: StandbyReport = {
  url: 'ws://standby:7373', connected: true, watermark: NOW - 200, feedIncomplete: null,
  filesSent: 10, bytesSent: 1000, wireBytesSent: 1000, queuedPaths: 0, opsInFlight: 0, connections: 1,
};

test('statusLine: one clause per standby, only what matters', () => {
  const cases: ReadonlyArray<[string, Partial<StandbyReport>, string]> = [
    ['live, W 0.2 s behind (rounded: unchanged from one heartbeat to the next)', {}, 'ws://standby:7373: connected, W 0 s behind'],
    ['live, W 1.6 s behind', { watermark: NOW - 1_600 }, 'ws://standby:7373: connected, W 2 s behind'],
    ['a W ahead of this clock reads 0', { watermark: NOW + 500 }, 'ws://standby:7373: connected, W 0 s behind'],
    ['connected, first pass running', { watermark: null }, 'ws://standby:7373: connected, first full pass'],
    ['never reached', { connected: false, watermark: null }, 'ws://standby:7373: not connected, no W yet'],
    ['gone, with its last W and a backlog', { connected: false, watermark: NOW - 35_000, queuedPaths: 120 }, 'ws://standby:7373: not connected, W 35 s behind, 120 queued'],
    ['W held for a feed gap', { feedIncomplete: { since: NOW - 5_000, reason: 'overflow' } }, 'ws://standby:7373: connected, W 0 s behind, W held (overflow)'],
  ];
  for (const [what, change, line] of cases) assert.equal(statusLine([{ ...BASE, ...change }], NOW), line, what);
});

test('statusLine: several standbys in order, "; " apart; none gives an empty line', () => {
  const dr = { ...BASE, url: 'wss://dr.example:7373', connected: false, watermark: NOW - 90_000 };
  assert.equal(statusLine([BASE, dr], NOW), 'ws://standby:7373: connected, W 0 s behind; wss://dr.example:7373: not connected, W 90 s behind');
  assert.equal(statusLine([], NOW), '');
});
