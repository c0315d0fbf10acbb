/**
 * gate/dbposition: which (LSN, at) pair a watermark covers (at <= W, the newest by the agent's
 * clock), which pairs the agent still sends (bounded, thinned while W lags), LSN parsing and order,
 * the clock offset estimate from round trips (intersection of the intervals, the newest alone when
 * they do not meet), and which skew is in force.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MEASURED_SKEW_VALID_MS, compareLsn, coveredPosition, describeSkew, estimateOffset, parseLsn, positionsToSend, skewInForce,
  type ClockSample, type DbPosition,
} from '../../../src/gate/dbposition.js';

const at = (t: number, lsn = `0/${(0x1000 + t).toString(16).toUpperCase()}`): DbPosition => ({ lsn, at: t });

describe('coveredPosition', () => {
  const ps = [at(100), at(200), at(300)];
  const cases: Array<{ name: string; positions: DbPosition[]; w: number | null; want: number | null }> = [
    { name: 'no watermark: none', positions: ps, w: null, want: null },
    { name: 'W before every pair: none', positions: ps, w: 99, want: null },
    { name: 'W exactly at a pair covers it', positions: ps, w: 200, want: 200 },
    { name: 'W one ms short of a pair does not', positions: ps, w: 299, want: 200 },
    { name: 'W past all: the newest', positions: ps, w: 10_000, want: 300 },
    { name: 'order of the list does not matter', positions: [at(300), at(100), at(200)], w: 250, want: 200 },
    { name: 'no pairs: none', positions: [], w: 1000, want: null },
    { name: 'newest by the clock, not by LSN (a primary rebuilt: LSNs start over)', positions: [at(100, 'FF/0'), at(200, '0/10')], w: 300, want: 200 },
  ];
  for (const c of cases) test(c.name, () => assert.equal(coveredPosition(c.positions, c.w)?.at ?? null, c.want));
});

describe('positionsToSend', () => {
  test('the covered one and everything newer, sorted', () => {
    assert.deepEqual(positionsToSend([at(300), at(100), at(200), at(400)], 250, 64).map((p) => p.at), [200, 300, 400]);
  });
  test('nothing covered: all of them', () => assert.deepEqual(positionsToSend([at(100), at(200)], null, 64).map((p) => p.at), [100, 200]));
  test('at most max; the covered one and the newest are kept, the rest thinned', () => {
    const many = Array.from({ length: 100 }, (_, i) => at(i * 10));
    const sent = positionsToSend(many, 5, 16);
    assert.ok(sent.length <= 16, `${sent.length}`);
    assert.equal(sent[0]?.at, 0);
    assert.equal(sent[sent.length - 1]?.at, 990);
    for (let i = 1; i < sent.length; i++) assert.ok((sent[i]?.at ?? 0) > (sent[i - 1]?.at ?? 0));
  });
});

describe('LSNs', () => {
  test('parse', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('1/0'), 1n << 32n);
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
    for (const bad of ['', '0', '0/', '/0', 'G/0', '123456789/0', '0/0/0', ' 0/0']) assert.equal(parseLsn(bad), null, bad);
  });
  test('order', () => {
    assert.equal(compareLsn('0/FF', '1/0'), -1);
    assert.equal(compareLsn('1/0', '0/FFFFFFFF'), 1);
    assert.equal(compareLsn('A/1', 'a/1'), 0);
    assert.throws(() => compareLsn('x', '0/0'));
  });
});

describe('estimateOffset', () => {
  const s = (sentAt: number, receivedAt: number, serverMs: number): ClockSample => ({ sentAt, receivedAt, serverMs });
  test('no samples: none', () => assert.equal(estimateOffset([]), null));
  test('one sample, same clock, 2 ms round trip: |offset| <= 2', () => {
    const e = estimateOffset([s(1000, 1002, 1001.5)]);
    // interval: [1001.5 - 1003, 1001.5 - 1000] = [-1.5, 1.5]
    assert.deepEqual(e, { offsetMs: 0, boundMs: 2, at: 1002, samples: 1 });
  });
  test('the primary 500 ms ahead: bound about 500 plus the round trip', () => {
    const e = estimateOffset([s(1000, 1004, 1502)]);
    assert.equal(e?.boundMs, 502); // [1502 - 1005, 1502 - 1000] = [497, 502]
    assert.equal(e?.offsetMs, 499.5);
  });
  test('intervals intersect: the tightest of them all (a slow round trip does not widen it)', () => {
    const e = estimateOffset([s(1000, 1200, 1100), s(2000, 2001, 2000.5), s(3000, 3300, 3150)]);
    assert.equal(e?.boundMs, 2); // [-1.5, 0.5]
    assert.equal(e?.samples, 3);
  });
  test('the agent 300 ms ahead (negative offset): bound 300 and a bit', () => {
    const e = estimateOffset([s(1300, 1301, 1000.4)]);
    assert.equal(e?.boundMs, 302); // [-301.6, -299.6]
    assert.ok((e?.offsetMs ?? 0) < 0);
  });
  test('intervals that do not meet (a clock stepped): the newest alone', () => {
    const e = estimateOffset([s(1000, 1001, 1000.5), s(2000, 2001, 2800.5)]);
    assert.equal(e?.samples, 1);
    assert.equal(e?.boundMs, 801);
    assert.equal(e?.at, 2001);
  });
  test('a sample received before it was sent (clock stepped back mid-trip) is ignored', () => {
    assert.equal(estimateOffset([s(2000, 1000, 1500)]), null);
  });
});

describe('skewInForce', () => {
  const base = { measured: { boundMs: 3, at: 10_000 }, watermark: 10_500, configuredMs: 1000, defaultMs: 2000 };
  test('--skew wins', () => assert.deepEqual(skewInForce({ ...base, flagMs: 5000 }), { skewMs: 5000, source: 'flag' }));
  test('--skew 0 is a value', () => assert.deepEqual(skewInForce({ ...base, flagMs: 0 }), { skewMs: 0, source: 'flag' }));
  test('measured near W', () => assert.deepEqual(skewInForce(base), { skewMs: 3, source: 'measured' }));
  test('measured too long before W: the configured skew', () => {
    assert.deepEqual(skewInForce({ ...base, watermark: 10_000 + MEASURED_SKEW_VALID_MS + 1 }), { skewMs: 1000, source: 'configured' });
  });
  test('no watermark: not measured', () => assert.equal(skewInForce({ ...base, watermark: null }).source, 'configured'));
  test('nothing: the default', () => assert.deepEqual(skewInForce({ ...base, measured: null, configuredMs: null }), { skewMs: 2000, source: 'default' }));
  test('described with its source', () => assert.match(describeSkew({ skewMs: 3, source: 'measured' }), /^3 ms \(measured/));
});
