/**
 * Coalescer: dirty paths handed out once quiet, oldest first, busy ones left waiting; and when
 * the next one is due, which must not count busy paths (the live loop would spin on them).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Coalescer } from '../../../src/watch/coalesce.js';

describe('Coalescer', () => {
  test('a path is handed out once quiet for quietMs, keeping its first event time and subtree flag', () => {
    const c = new Coalescer();
    c.mark('a', 100);
    c.mark('a', 105, { subtree: true });
    assert.deepEqual(c.takeQuiet(106, 2, 10), [], 'an event 1 ms ago');
    assert.deepEqual(c.takeQuiet(107, 2, 10), [{ path: 'a', firstSeen: 100, subtree: true, subtreeMarkedAt: 105 }]);
    assert.equal(c.size, 0);
  });

  test('a subtree mark carries the time of the latest subtree mark (a scan must begin after it to answer it); a plain mark carries none', () => {
    const c = new Coalescer();
    c.mark('d', 10, { subtree: true, firstSeen: 4 });
    c.mark('d', 20); // a plain event after: still the subtree mark of 10
    c.mark('e', 10, { subtree: true });
    c.mark('e', 30, { subtree: true }); // made again (its watches placed again): from 30 on
    c.mark('f', 10);
    assert.deepEqual(c.takeQuiet(100, 2, 10), [
      { path: 'd', firstSeen: 4, subtree: true, subtreeMarkedAt: 10 },
      { path: 'e', firstSeen: 10, subtree: true, subtreeMarkedAt: 30 },
      { path: 'f', firstSeen: 10, subtree: false },
    ]);
  });

  test('a path put back keeps the earlier firstSeen (the watermark waits for it)', () => {
    const c = new Coalescer();
    c.mark('a', 200, { firstSeen: 50 });
    assert.equal(c.oldestFirstSeen(), 50);
  });

  test('busy paths stay, at most max are taken', () => {
    const c = new Coalescer();
    for (const p of ['a', 'b', 'c', 'd']) c.mark(p, 0);
    const taken = c.takeQuiet(10, 2, 2, (p) => p === 'a');
    assert.deepEqual(taken.map((d) => d.path), ['b', 'c']);
    assert.deepEqual(c.takeQuiet(10, 2, 10).map((d) => d.path), ['a', 'd']);
  });

  test('nextDueIn: 0 when a path is quiet, the wait for the next one otherwise, null when all waiting are busy', () => {
    const c = new Coalescer();
    assert.equal(c.nextDueIn(0, 2), null);
    c.mark('busy', 0);
    c.mark('later', 9);
    assert.equal(c.nextDueIn(10, 2), 0);
    assert.equal(c.nextDueIn(10, 2, (p) => p === 'busy'), 1);
    assert.equal(c.nextDueIn(10, 2, () => true), null);
  });
});
