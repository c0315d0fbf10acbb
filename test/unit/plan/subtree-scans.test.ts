/**
 * SubtreeScans: a subtree mark is answered only by a completed scan of that directory or one above
 * it that began strictly after the mark; names sharing a prefix are not above one another; the
 * record is bounded, and forgetting only means scanning again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SubtreeScans } from '../../../src/plan/subtree-scans.js';

test('a scan of the directory or of one above it, begun after the mark, answers it; one begun at or before it does not', () => {
  const scans = new SubtreeScans();
  scans.record('a', 100);
  assert.equal(scans.covers('a', 99), true);
  assert.equal(scans.covers('a/b/c', 99), true, 'a scan of an ancestor saw all below it');
  assert.equal(scans.covers('a', 100), false, 'the same millisecond: the scan may have begun first');
  assert.equal(scans.covers('a/b', 150), false);
  assert.equal(scans.covers('', 50), false, 'a scan below the root says nothing of the rest');
});

test('only ancestors count: not a directory below, nor one whose name shares a prefix', () => {
  const scans = new SubtreeScans();
  scans.record('a/b', 100);
  scans.record('a-b', 100);
  scans.record('ab', 100);
  assert.equal(scans.covers('a', 50), false, 'a scan of a/b did not see the rest of a');
  assert.equal(scans.covers('a/bc', 50), false);
  assert.equal(scans.covers('a/b/x', 50), true);
});

test('a full scan (the root, "") answers every mark made before it began', () => {
  const scans = new SubtreeScans();
  scans.record('', 500);
  assert.equal(scans.covers('x/y/z', 499), true);
  assert.equal(scans.covers('x', 500), false);
});

test('the latest scan of a directory counts, an older one recorded after it changes nothing', () => {
  const scans = new SubtreeScans();
  scans.record('d', 300);
  scans.record('d', 200);
  assert.equal(scans.covers('d', 250), true);
  assert.equal(scans.size, 1);
});

test('at most maxKept directories are remembered, the longest-begun forgotten first', () => {
  const scans = new SubtreeScans(3);
  for (const [i, dir] of ['a', 'b', 'c', 'd'].entries()) scans.record(dir, 100 + i);
  assert.equal(scans.size, 3);
  assert.equal(scans.covers('a', 50), false, 'forgotten: the mark is looked at as a subtree again');
  assert.equal(scans.covers('d', 50), true);
  scans.record('b', 200); // scanned again: now the newest
  scans.record('e', 201);
  assert.equal(scans.covers('b', 150), true);
  assert.equal(scans.covers('c', 50), false);
});
