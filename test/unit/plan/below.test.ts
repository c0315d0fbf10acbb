import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rowsAtOrBelow } from '../../../src/plan/below.js';
import { isWithin } from '../../../src/relpath.js';

const rows = (...paths: string[]): { path: string }[] => paths.map((path) => ({ path }));
const pathsOf = (found: Map<string, { path: string }[]>, key: string): string[] => (found.get(key) ?? []).map((r) => r.path).sort();

test('each path gets its own row and every row below it, nested paths each their own, and nothing that only shares a prefix', () => {
  const mirror = rows('a', 'a/b', 'a/b/f', 'a/b-x', 'a/b-x/g', 'a/c', 'ab', 'ab/h', 'z/y/x');
  // Four paths (each row's directory looked up), then two of them (each row compared with each).
  for (const asked of [['a', 'a/b', 'z/y', 'missing'], ['a', 'a/b']]) {
    const found = rowsAtOrBelow(mirror, asked);
    assert.deepEqual([...found.keys()].sort(), asked.sort());
    assert.deepEqual(pathsOf(found, 'a'), ['a', 'a/b', 'a/b-x', 'a/b-x/g', 'a/b/f', 'a/c']);
    assert.deepEqual(pathsOf(found, 'a/b'), ['a/b', 'a/b/f']);
  }
  const found = rowsAtOrBelow(mirror, ['a', 'a/b', 'z/y', 'missing']);
  assert.deepEqual(pathsOf(found, 'z/y'), ['z/y/x'], 'rows below a path the standby has no row for');
  assert.deepEqual(pathsOf(found, 'missing'), []);
});

test('the same as filtering the rows with isWithin for each path, on a seeded random tree', () => {
  let seed = 7;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const names = ['a', 'b', 'a-b', 'a.b', 'ab', 'b0'];
  const paths = new Set<string>();
  for (let i = 0; i < 2000; i++) paths.add(Array.from({ length: 1 + next(4) }, () => names[next(names.length)] as string).join('/'));
  const mirror = rows(...paths);
  // A few paths (each row compared with each) and many (each row's directory looked up).
  const many = [...paths].filter(() => next(5) === 0);
  for (const asked of [many.slice(0, 2), many]) {
    const found = rowsAtOrBelow(mirror, asked);
    for (const dir of asked) assert.deepEqual(pathsOf(found, dir), mirror.filter((r) => isWithin(r.path, dir)).map((r) => r.path).sort(), dir);
  }
});

test('no paths asked: the rows are not read', () => {
  const never: Iterable<{ path: string }> = { [Symbol.iterator]: () => assert.fail('read the rows') };
  assert.equal(rowsAtOrBelow(never, []).size, 0);
});
