import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anchorMarks } from '../../../src/plan/anchor.js';
import type { DirtyPath } from '../../../src/watch/coalesce.js';

const mark = (path: string, firstSeen = 1, subtree = false): DirtyPath => ({ path, firstSeen, subtree });

/** A standby that holds `rows`: paths ending in '/' are live directories, '~' marks a tombstone. */
function standby(...rows: string[]): [(p: string) => boolean, (p: string) => boolean] {
  const live = new Map(rows.map((r) => [r.replace(/[/~]$/, ''), r.endsWith('/') ? 'dir' : r.endsWith('~') ? 'gone' : 'file']));
  return [(p) => live.has(p), (p) => live.get(p) === 'dir'];
}

test('a file in a directory the standby has is looked at where it is', () => {
  assert.deepEqual(anchorMarks([mark('a/f'), mark('g')], ...standby('a/')), [mark('a/f'), mark('g')]);
});

test('a new file below directories the standby lacks is looked at from the topmost one, as a subtree', () => {
  assert.deepEqual(anchorMarks([mark('a/b/c/f', 5)], ...standby('a/')), [mark('a/b', 5, true)]);
  assert.deepEqual(anchorMarks([mark('x/y', 5)], ...standby()), [mark('x', 5, true)]);
});

test('marks that land on one directory merge: the earliest firstSeen, a subtree', () => {
  const batch = [mark('n/f1', 7), mark('n', 9), mark('n/d/f2', 3)];
  assert.deepEqual(anchorMarks(batch, ...standby()), [mark('n', 3, true)]);
});

test('a path the standby has a row for stays where it is, even below a missing or deleted directory (its deletion must not be lost)', () => {
  assert.deepEqual(anchorMarks([mark('gone/f')], ...standby('gone/f')), [mark('gone/f')]);
  assert.deepEqual(anchorMarks([mark('old/f')], ...standby('old~', 'old/f~')), [mark('old/f')]);
});

test('a directory the standby holds only as a tombstone or as a file is not one to put things in: the look starts there', () => {
  assert.deepEqual(anchorMarks([mark('t/f', 2)], ...standby('t~')), [mark('t', 2, true)]);
  assert.deepEqual(anchorMarks([mark('was-file/f', 2)], ...standby('was-file')), [mark('was-file', 2, true)]);
});

test('a subtree mark made for a path below carries no mark time (no earlier scan answers it); merged subtree marks keep the latest, unless one has none', () => {
  const watched = (path: string, firstSeen: number, at: number): DirtyPath => ({ path, firstSeen, subtree: true, subtreeMarkedAt: at });
  // The directory's own mark (its watches placed at 20) and a file below it lifted to it: the file's change must be looked at.
  assert.deepEqual(anchorMarks([watched('n', 5, 20), mark('n/f', 3)], ...standby()), [mark('n', 3, true)]);
  // Two marks of one directory the standby has: the later watch placement counts.
  assert.deepEqual(anchorMarks([watched('d', 5, 20), watched('d', 2, 30)], ...standby('d/')), [watched('d', 2, 30)]);
  // A plain mark merged with a subtree mark keeps the subtree mark's time.
  assert.deepEqual(anchorMarks([mark('d', 1), watched('d', 5, 20)], ...standby('d/')), [watched('d', 1, 20)]);
  // A mark the standby has a row for is not lifted and keeps its time.
  assert.deepEqual(anchorMarks([watched('a/b', 5, 20)], ...standby('a/', 'a/b/')), [watched('a/b', 5, 20)]);
});
