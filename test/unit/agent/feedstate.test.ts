/**
 * agent/feedstate: when the live agent's change feed may be incomplete for one standby, and why
 * (invariant 4: W is held from `since` until a full pass begun after the gap was noticed has
 * completed). Cases: overflow and lost watches open a gap that only a later pass closes; gaps
 * merge (earliest since, latest noticed, each reason once however often it recurs); out of
 * watches holds at the last completed pass for good; a standby that fell behind opens a gap like
 * an overflow and reports only the first time until a pass closes it; two standbys' states are
 * independent (one's pass does not close the other's gap).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FeedState } from '../../../src/agent/feedstate.js';

const T = 1_764_177_919_231;

describe('FeedState', () => {
  test('complete until something is lost', () => {
    assert.equal(new FeedState().incomplete(T), null);
    assert.equal(new FeedState().incomplete(null), null);
  });

  test('an overflow holds from its since until a pass begun after it was noticed completes', () => {
    const f = new FeedState();
    f.lost('overflow', T, T + 10);
    assert.deepEqual(f.incomplete(T - 100), { since: T, reason: 'the inotify queue overflowed (raise fs.inotify.max_queued_events)' });
    f.passCompleted(T + 9); // began before the overflow was noticed: it may have missed changes
    assert.equal(f.incomplete(T + 9)?.since, T);
    f.passCompleted(T + 10);
    assert.equal(f.incomplete(T + 10), null);
  });

  test('gaps merge: earliest since, latest noticed, each reason once however often it recurs', () => {
    const f = new FeedState();
    f.lost('overflow', T + 5, T + 10);
    f.lost('watch-lost', T, T + 20);
    for (let i = 0; i < 50; i++) {
      f.lost('overflow', T + 30 + i, T + 40 + i);
      f.lost('watch-lost', T + 30 + i, T + 40 + i);
    }
    assert.deepEqual(f.incomplete(null), {
      since: T,
      reason: 'the inotify queue overflowed (raise fs.inotify.max_queued_events); an inotify watch was lost',
    });
    f.passCompleted(T + 88); // the last one was noticed at T + 89
    assert.equal(f.incomplete(null)?.since, T);
    f.passCompleted(T + 89);
    assert.equal(f.incomplete(null), null);
  });

  test('out of watches holds at the start of the last completed pass, for good', () => {
    const f = new FeedState();
    f.lost('watch-limit', T, T);
    assert.equal(f.incomplete(null), null, 'no pass completed yet: W is null anyway');
    assert.equal(f.incomplete(T + 100)?.since, T + 100);
    f.passCompleted(T + 500);
    assert.equal(f.incomplete(T + 500)?.since, T + 500);
    assert.match(f.incomplete(T + 500)?.reason ?? '', /out of inotify watches/);
  });

  test('out of watches and an older overflow: the earlier since wins', () => {
    const f = new FeedState();
    f.lost('watch-limit', T, T);
    f.lost('overflow', T + 50, T + 60);
    assert.equal(f.incomplete(T + 100)?.since, T + 50);
    assert.equal(f.incomplete(T + 40)?.since, T + 40);
  });

  test('a standby that fell behind: a gap like an overflow, reported once until a pass closes it', () => {
    const f = new FeedState();
    assert.equal(f.fellBehind(T, T + 10), true);
    assert.equal(f.fellBehind(T + 20, T + 30), false, 'already behind: nothing new to say');
    assert.deepEqual(f.incomplete(null), { since: T, reason: 'this standby fell too far behind: a full reconciliation is catching it up' });
    f.passCompleted(T + 29);
    assert.equal(f.incomplete(null)?.since, T, 'a pass begun before the last drop does not cover it');
    f.passCompleted(T + 30);
    assert.equal(f.incomplete(null), null);
    assert.equal(f.fellBehind(T + 40, T + 50), true, 'behind again after catching up: said again');
  });

  test('behind and an overflow: both reasons, the earlier since', () => {
    const f = new FeedState();
    f.lost('overflow', T + 5, T + 6);
    assert.equal(f.fellBehind(T, T + 10), true);
    assert.deepEqual(f.incomplete(null), {
      since: T,
      reason: 'the inotify queue overflowed (raise fs.inotify.max_queued_events); this standby fell too far behind: a full reconciliation is catching it up',
    });
  });

  test('two standbys: one\'s pass does not close the other\'s gap', () => {
    const local = new FeedState();
    const dr = new FeedState();
    for (const f of [local, dr]) f.lost('overflow', T, T + 10);
    local.passCompleted(T + 20);
    assert.equal(local.incomplete(T + 20), null);
    assert.equal(dr.incomplete(null)?.since, T);
  });
});
