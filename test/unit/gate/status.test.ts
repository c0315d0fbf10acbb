/**
 * gate/status: buildStatus carries every field `status --json` documents (safe, reason, T, W,
 * recovery target, tombstones, counts, last contact and its age, receiver and agent, quarantine),
 * and formatStatus starts with SAFE or UNSAFE followed by the reason.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildStatus, formatStatus, type StatusInput } from '../../../src/gate/status.js';

const T = Date.parse('2026-11-26T10:00:00.000Z');
const NOW = T + 3_600_000;

const input = (over: Partial<StatusInput> = {}): StatusInput => ({
  root: '/srv/standby', now: NOW, files: 12, bytes: 3456, dirs: 3, symlinks: 1, tombstones: 2,
  oldestTombstone: T - 60_000, snapshotTime: T, watermark: T + 5000, skewMs: 2000, lastContact: NOW - 4000,
  agentConnected: true, receiverPid: 4242, quarantined: 7, feedGap: null, deletionsHeld: 0, ...over,
});

describe('buildStatus', () => {
  test('carries every documented field', () => {
    const s = buildStatus(input());
    assert.deepEqual(s, {
      root: '/srv/standby', safe: true, reason: s.reason, snapshotTime: T, watermark: T + 5000, recoveryTarget: T + 3000,
      recoveryTargetLsn: null, recoveryTargetLsnAt: null, skewMs: 2000, skewSource: 'configured', clockOffsetMs: null, tombstonesPending: 2, oldestTombstone: T - 60_000, files: 12, bytes: 3456, dirs: 3, symlinks: 1,
      lastContact: NOW - 4000, lastContactAgeMs: 4000, agentConnected: true, receiverRunning: true, receiverPid: 4242, quarantined: 7,
      feedIncomplete: null, deletionsHeld: 0, rootLost: null, verifyDamage: null,
    });
    assert.match(s.reason, /3000 ms ahead/);
    // JSON-safe: what `status --json` prints parses back to the same object.
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  });

  const cases: Array<{ name: string; over: Partial<StatusInput>; safe: boolean; recoveryTarget: number | null; reason: RegExp }> = [
    { name: 'W == T + skew is safe', over: { watermark: T + 2000 }, safe: true, recoveryTarget: T, reason: /0 ms ahead/ },
    { name: 'W one ms short is unsafe', over: { watermark: T + 1999 }, safe: false, recoveryTarget: T - 1, reason: /1 ms behind/ },
    { name: 'no watermark is unsafe, no recovery target', over: { watermark: null }, safe: false, recoveryTarget: null, reason: /no watermark/ },
    { name: 'no snapshot time is unsafe, recovery target still W - skew', over: { snapshotTime: null }, safe: false, recoveryTarget: T + 3000, reason: /no DB snapshot time/ },
    { name: 'a larger skew can make it unsafe', over: { skewMs: 6000 }, safe: false, recoveryTarget: T - 1000, reason: /1000 ms behind/ },
    {
      name: 'W held by an incomplete feed short of T: unsafe, and the reason names the gap',
      over: { watermark: T + 1000, feedGap: { since: T + 1001, reason: 'inotify queue overflow' } }, safe: false, recoveryTarget: T - 1000,
      reason: /^change feed incomplete since 2026-11-26T10:00:01\.001Z \(inotify queue overflow\): the watermark is held/,
    },
    {
      name: 'W held by an incomplete feed but past T + skew: still safe (W is true, only late)',
      over: { watermark: T + 2500, feedGap: { since: T + 2501, reason: 'out of inotify watches' } }, safe: true, recoveryTarget: T + 500, reason: /500 ms ahead/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const s = buildStatus(input(c.over));
      assert.equal(s.safe, c.safe);
      assert.equal(s.recoveryTarget, c.recoveryTarget);
      assert.match(s.reason, c.reason);
    });
  }

  test('a measured clock offset near W is the skew in force, and decides the verdict', () => {
    const s = buildStatus(input({ watermark: T + 10, dbClock: { offsetMs: 0.4, boundMs: 3, at: T + 9 } }));
    assert.equal(s.skewMs, 3);
    assert.equal(s.skewSource, 'measured');
    assert.equal(s.clockOffsetMs, 0.4);
    assert.equal(s.safe, true);
    assert.equal(s.recoveryTarget, T + 7);
  });
  test('a measurement long before W does not count: the recorded skew', () => {
    const s = buildStatus(input({ watermark: T + 5000, dbClock: { offsetMs: 0, boundMs: 3, at: T - 3_600_000 } }));
    assert.equal(s.skewSource, 'configured');
    assert.equal(s.skewMs, 2000);
  });
  test('no recorded skew: the default, said so', () => assert.equal(buildStatus(input({ skewIsDefault: true })).skewSource, 'default'));
  test('a recorded WAL position W covers is the recovery target', () => {
    const s = buildStatus(input({ dbPosition: { lsn: '0/3000148', at: T + 4000, system: '42' } }));
    assert.equal(s.recoveryTargetLsn, '0/3000148');
    assert.equal(s.recoveryTargetLsnAt, T + 4000);
    assert.equal(s.recoveryTarget, T + 3000); // the time target is still reported
  });
  test('a position W does not cover is not offered', () => {
    assert.equal(buildStatus(input({ dbPosition: { lsn: '0/3000148', at: T + 5001, system: '42' } })).recoveryTargetLsn, null);
  });
  test('a lost standby root: unsafe whatever W says, and named in the report', () => {
    const r = buildStatus(input({ rootLost: '/srv/standby is missing' }));
    assert.equal(r.safe, false);
    assert.equal(r.rootLost, '/srv/standby is missing');
    assert.equal(r.reason, 'the standby root /srv/standby is missing: a failover would not find its files there');
    assert.match(formatStatus(r), /^UNSAFE: the standby root \/srv\/standby is missing/);
  });
  test('verify\'s finding not yet sent again: unsafe, and in the report; a lost root is named first', () => {
    const r = buildStatus(input({ verifyDamage: { files: 2, at: 1795690000000 } }));
    assert.equal(r.safe, false);
    assert.deepEqual(r.verifyDamage, { files: 2, at: 1795690000000 });
    assert.match(r.reason, /^verify found 2 file\(s\) missing or corrupt here at /);
    assert.match(buildStatus(input({ verifyDamage: { files: 2, at: 1 }, rootLost: '/x is missing' })).reason, /^the standby root \/x is missing/);
  });
  test('no receiver: not running, null pid', () => {
    const s = buildStatus(input({ receiverPid: null, agentConnected: false }));
    assert.equal(s.receiverRunning, false);
    assert.equal(s.receiverPid, null);
    assert.equal(s.agentConnected, false);
  });
  test('never contacted: lastContact and its age are null', () => {
    const s = buildStatus(input({ lastContact: null }));
    assert.equal(s.lastContact, null);
    assert.equal(s.lastContactAgeMs, null);
  });
  test('a last contact ahead of this host\'s clock has age 0, never negative', () => {
    assert.equal(buildStatus(input({ lastContact: NOW + 5000 })).lastContactAgeMs, 0);
  });
  test('no tombstones: count 0, oldest null', () => {
    const s = buildStatus(input({ tombstones: 0, oldestTombstone: null }));
    assert.equal(s.tombstonesPending, 0);
    assert.equal(s.oldestTombstone, null);
  });
});

describe('formatStatus', () => {
  test('safe: the first line is "SAFE: reason"', () => {
    const s = buildStatus(input());
    const lines = formatStatus(s).split('\n');
    assert.equal(lines[0], `SAFE: ${s.reason}`);
  });
  test('unsafe: the first line is "UNSAFE: reason"', () => {
    const s = buildStatus(input({ watermark: null }));
    assert.match(formatStatus(s).split('\n')[0] ?? '', /^UNSAFE: no watermark/);
  });
  test('the human text names T, W, the recovery target, tombstones, counts, contact, receiver and quarantine', () => {
    const text = formatStatus(buildStatus(input()));
    for (const needle of [
      '2026-11-26T10:00:00.000Z', // T
      '2026-11-26T10:00:05.000Z', // W
      '2026-11-26T10:00:03.000Z', // recovery target
      '2 pending, oldest deleted 2026-11-26T09:59:00.000Z',
      '12 (3456 bytes), 3 dirs, 1 symlinks',
      '(4 s ago)',
      'running (pid 4242), agent connected',
      '7 file(s)',
    ]) assert.ok(text.includes(needle), `${JSON.stringify(needle)} missing from:\n${text}`);
  });
  test('nothing recorded yet: "never" and "none yet", receiver not running', () => {
    const text = formatStatus(buildStatus(input({ snapshotTime: null, watermark: null, lastContact: null, receiverPid: null, agentConnected: false, tombstones: 0, oldestTombstone: null })));
    assert.match(text, /^UNSAFE: /);
    assert.match(text, /DB snapshot \(T\) +never/);
    assert.match(text, /watermark \(W\) +never/);
    assert.match(text, /recovery target +none yet/);
    assert.match(text, /receiver +not running/);
    assert.match(text, /tombstones +0 pending\n/);
  });
});

describe('formatStatus: the DB target and the skew', () => {
  test('an LSN target gets its line, the time target its own, the skew its source', () => {
    const text = formatStatus(buildStatus(input({ dbPosition: { lsn: '0/3000148', at: T + 4000, system: '42' }, dbClock: { offsetMs: -0.5, boundMs: 2, at: T + 4990 } })));
    assert.match(text, /recovery target +WAL position 0\/3000148, read from the DB primary at 2026-11-26T10:00:04\.000Z/);
    assert.match(text, /time target +2026-11-26T10:00:04\.998Z/);
    assert.match(text, /skew +2 ms \(measured: .*\); DB primary clock - agent clock -0\.5 ms/);
  });
  test('without: the time target is the recovery target, the skew says where it comes from', () => {
    const text = formatStatus(buildStatus(input()));
    assert.match(text, /recovery target +2026-11-26T10:00:03\.000Z/);
    assert.match(text, /skew +2000 ms \(the receiver's --skew\)/);
  });
});

describe('formatStatus: the agent\'s own trouble', () => {
  test('an incomplete feed and held deletions each get a line; neither shows while all is well', () => {
    const quiet = formatStatus(buildStatus(input()));
    assert.doesNotMatch(quiet, /change feed|deletions held/);
    const text = formatStatus(buildStatus(input({ feedGap: { since: T + 1001, reason: 'inotify queue overflow' }, deletionsHeld: 100 })));
    assert.match(text, /change feed +incomplete since 2026-11-26T10:00:01\.001Z: inotify queue overflow/);
    assert.match(text, /deletions held +100 by the agent .*--release-deletions/);
  });
});
