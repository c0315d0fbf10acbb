/**
 * gate/failover: the recovery settings for watermark W and skew (target W - skew, exclusive, promote,
 * no apply delay; none without a watermark), or for a WAL position W covers (recovery_target_lsn,
 * exclusive); which target a failover chooses (auto, lsn, time; another cluster's position refused), the timestamp form PostgreSQL's recovery_target_time
 * accepts, quoting, and postgresql.auto.conf rewritten with earlier values of the same parameters
 * dropped and everything else (primary_conninfo, comments) kept.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chooseTarget, failoverPlan, pgTimestamp, renderAutoConf, settingLine } from '../../../src/gate/failover.js';

const W = Date.parse('2026-11-26T10:00:05.250Z');

describe('failoverPlan', () => {
  test('no watermark: no plan', () => assert.equal(failoverPlan(null, 2000), null));

  test('target W - skew, exclusive, promote, delay 0', () => {
    const plan = failoverPlan(W, 2000);
    assert.ok(plan !== null);
    assert.equal(plan.recoveryTarget, W - 2000);
    assert.deepEqual(plan.settings, [
      ['recovery_target_time', '2026-11-26 10:00:03.250+00'],
      ['recovery_target_inclusive', 'off'],
      ['recovery_target_action', 'promote'],
      ['recovery_min_apply_delay', '0'],
    ]);
  });

  test('skew 0: the target is W itself', () => assert.equal(failoverPlan(W, 0)?.recoveryTarget, W));

  test('a position W covers: recovery_target_lsn, exclusive, promote, delay 0', () => {
    const plan = failoverPlan(W, 2000, { lsn: '0/3000148', at: W - 300 });
    assert.equal(plan?.target, 'lsn');
    assert.equal(plan?.recoveryTargetLsn, '0/3000148');
    assert.equal(plan?.positionAt, W - 300);
    assert.deepEqual(plan?.settings, [
      ['recovery_target_lsn', '0/3000148'],
      ['recovery_target_inclusive', 'off'],
      ['recovery_target_action', 'promote'],
      ['recovery_min_apply_delay', '0'],
    ]);
  });

  test('a position W does not cover is never used', () => assert.equal(failoverPlan(W, 2000, { lsn: '0/1', at: W + 1 })?.target, 'time'));
});

describe('chooseTarget', () => {
  const position = { lsn: '1/A0', at: W - 100, system: '7001' };
  const cases: Array<{ name: string; input: Parameters<typeof chooseTarget>[0]; target: 'lsn' | 'time' | null; note: RegExp | null }> = [
    { name: 'auto with a position: LSN', input: { choice: 'auto', watermark: W, skewMs: 5, position }, target: 'lsn', note: null },
    { name: 'auto, same cluster as the standby: LSN', input: { choice: 'auto', watermark: W, skewMs: 5, position, standbySystem: '7001' }, target: 'lsn', note: null },
    { name: 'auto without a position: time, said why', input: { choice: 'auto', watermark: W, skewMs: 5, position: null }, target: 'time', note: /no WAL position recorded/ },
    { name: 'auto, another cluster: time, said why', input: { choice: 'auto', watermark: W, skewMs: 5, position, standbySystem: '9' }, target: 'time', note: /not the same cluster/ },
    { name: 'auto, the agent could not read the system id ("0"): LSN', input: { choice: 'auto', watermark: W, skewMs: 5, position: { ...position, system: '0' }, standbySystem: '9' }, target: 'lsn', note: null },
    { name: 'time: time, whatever is recorded', input: { choice: 'time', watermark: W, skewMs: 5, position }, target: 'time', note: null },
    { name: 'lsn without a position: no plan', input: { choice: 'lsn', watermark: W, skewMs: 5, position: null }, target: null, note: /no WAL position/ },
    { name: 'lsn, another cluster: no plan', input: { choice: 'lsn', watermark: W, skewMs: 5, position, standbySystem: '9' }, target: null, note: /not the same cluster/ },
    { name: 'no watermark: no plan', input: { choice: 'auto', watermark: null, skewMs: 5, position }, target: null, note: null },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { plan, note } = chooseTarget(c.input);
      assert.equal(plan?.target ?? null, c.target);
      if (c.note === null) assert.equal(note, null);
      else assert.match(note ?? '', c.note);
    });
  }
});

describe('pgTimestamp', () => {
  const cases: Array<[number, string]> = [
    [W, '2026-11-26 10:00:05.250+00'],
    [Date.parse('2026-01-02T03:04:05.006Z'), '2026-01-02 03:04:05.006+00'],
    [0, '1970-01-01 00:00:00.000+00'],
  ];
  for (const [ms, want] of cases) test(want, () => assert.equal(pgTimestamp(ms), want));
});

describe('settingLine', () => {
  test('quotes the value', () => assert.equal(settingLine(['recovery_target_action', 'promote']), "recovery_target_action = 'promote'"));
  test('doubles a quote inside', () => assert.equal(settingLine(['x', "it's"]), "x = 'it''s'"));
});

describe('renderAutoConf', () => {
  const settings = failoverPlan(W, 2000)?.settings ?? [];
  const tail = [
    '# warmsync failover: recover up to the watermark W - skew, then promote',
    "recovery_target_time = '2026-11-26 10:00:03.250+00'",
    "recovery_target_inclusive = 'off'",
    "recovery_target_action = 'promote'",
    "recovery_min_apply_delay = '0'",
    '',
  ].join('\n');

  test('empty file: just the settings', () => assert.equal(renderAutoConf('', settings), tail));

  test('what pg_basebackup -R wrote is kept; an earlier apply delay is replaced', () => {
    const before = [
      '# Do not edit this file manually!',
      "primary_conninfo = 'user=postgres host=127.0.0.1 port=5432'",
      "recovery_min_apply_delay = '5min'",
      'port = 5433',
      '',
    ].join('\n');
    assert.equal(renderAutoConf(before, settings), [
      '# Do not edit this file manually!',
      "primary_conninfo = 'user=postgres host=127.0.0.1 port=5432'",
      'port = 5433',
      tail,
    ].join('\n'));
  });

  test('a target of another kind from an earlier failover goes (PostgreSQL accepts only one)', () => {
    const lsn = failoverPlan(W, 2000, { lsn: '0/10', at: W })?.settings ?? [];
    const out = renderAutoConf(renderAutoConf('', settings), lsn);
    assert.doesNotMatch(out, /recovery_target_time/);
    assert.match(out, /recovery_target_lsn = '0\/10'/);
    assert.match(out, /# warmsync failover: recover up to a WAL position the watermark W covers/);
  });

  test('a second failover replaces the first one\'s values (any case, with or without =)', () => {
    const once = renderAutoConf("Recovery_Target_Time '2020-01-01 00:00:00+00'\n", settings);
    assert.equal(renderAutoConf(once, settings).match(/recovery_target_time/gi)?.length, 1);
    assert.equal(renderAutoConf(once, settings).split('\n').filter((l) => l.startsWith('recovery_')).length, 4);
  });
});
