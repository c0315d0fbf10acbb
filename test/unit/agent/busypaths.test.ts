/**
 * BusyPaths: which paths overlap one with an op in flight (itself, an ancestor, a descendant),
 * answered from ancestor counts; checked against the obvious scan over every path in flight.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BusyPaths } from '../../../src/agent/busypaths.js';
import { isWithin } from '../../../src/relpath.js';

describe('BusyPaths', () => {
  test('a path overlaps itself, its ancestors and its descendants in flight, not its siblings', () => {
    const busy = new BusyPaths();
    busy.add('a/b/c', 10);
    assert.equal(busy.overlaps('a/b/c'), true);
    assert.equal(busy.overlaps('a/b'), true, 'something below it is in flight');
    assert.equal(busy.overlaps('a'), true);
    assert.equal(busy.overlaps('a/b/c/d'), true, 'an ancestor is in flight');
    assert.equal(busy.overlaps('a/b/cc'), false, 'a sibling sharing a prefix');
    assert.equal(busy.overlaps('a/bb'), false);
    assert.equal(busy.overlaps('b'), false);
    busy.delete('a/b/c');
    assert.equal(busy.overlaps('a'), false, 'counts fall back to nothing');
    assert.equal(busy.size, 0);
  });

  test('an op that does not block below holds up only its own path (and waits for nothing new)', () => {
    const busy = new BusyPaths();
    busy.add('d', 1, false);
    assert.equal(busy.overlaps('d'), true);
    assert.equal(busy.overlaps('d/file'), false, 'a directory mtime update does not hold up its files');
    busy.add('d', 2);
    assert.equal(busy.overlaps('d/file'), true, 'a blocking op on the same path does');
    busy.delete('d');
    assert.equal(busy.overlaps('d/file'), false);
  });

  test('adding a path twice keeps one entry and the earlier time; deleting it once clears it', () => {
    const busy = new BusyPaths();
    busy.add('x/y', 20);
    busy.add('x/y', 10);
    busy.add('x/y', 30);
    assert.equal(busy.size, 1);
    assert.deepEqual([...busy.values()], [10]);
    busy.delete('x/y');
    busy.delete('x/y');
    assert.equal(busy.overlaps('x'), false);
  });

  test('agrees with a scan over every path in flight, for any sequence of adds and deletes', () => {
    const segment = fc.constantFrom('a', 'b', 'ab', 'a b', 'é');
    const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));
    const step = fc.tuple(fc.boolean(), path);
    fc.assert(fc.property(fc.array(step, { maxLength: 60 }), fc.array(path, { minLength: 1, maxLength: 20 }), (steps, probes) => {
      const busy = new BusyPaths();
      const plain = new Set<string>();
      for (const [add, p] of steps) {
        if (add) {
          busy.add(p, 0);
          plain.add(p);
        } else {
          busy.delete(p);
          plain.delete(p);
        }
      }
      assert.equal(busy.size, plain.size);
      for (const probe of probes) {
        const expected = [...plain].some((p) => isWithin(p, probe) || isWithin(probe, p));
        assert.equal(busy.overlaps(probe), expected, `${probe} against ${[...plain].join(', ')}`);
      }
    }));
  });
});
