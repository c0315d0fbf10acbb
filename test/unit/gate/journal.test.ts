/**
 * gate/journal: the pure decisions that finish an interrupted promote or restore (invariant 6).
 * Every combination of where a planned path is found after a kill (tree: absent/same/other,
 * quarantine: yes/no, manifest row: absent/same/other) maps to one step; the tables name the kill
 * that leaves each state. Then sameRow and sameOnDisk.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { promoteStep, restoreStep, sameOnDisk, sameRow, type Observed } from '../../../src/gate/journal.js';
import type { ManifestEntry } from '../../../src/entry.js';

const o = (tree: Observed['tree'], inQuarantine: boolean, row: Observed['row']): Observed => ({ tree, inQuarantine, row });

describe('promoteStep', () => {
  const cases: Array<[string, boolean, Observed, string]> = [
    ['not moved yet (kill before its move): move', true, o('same', false, 'same'), 'move'],
    ['changed content in the tree, row unchanged: still move (what is at the path goes)', true, o('other', false, 'same'), 'move'],
    ['moved, manifest rolled back (kill after its move, before the commit): record', true, o('absent', true, 'same'), 'record'],
    ['moved and committed (kill after the commit, before the final report): done', true, o('absent', true, 'absent'), 'done'],
    ['absent at planning, row still there: record (only the row goes)', false, o('absent', false, 'same'), 'record'],
    ['absent at planning, committed: done', false, o('absent', false, 'absent'), 'done'],
    ['present at planning, gone from both places since: record', true, o('absent', false, 'same'), 'record'],
    ['in both the tree and the quarantine: leave', true, o('same', true, 'same'), 'leave'],
    ['row changed since the plan (re-recorded): leave', true, o('same', false, 'other'), 'leave'],
    ['row changed, file already in the quarantine: leave', true, o('absent', true, 'other'), 'leave'],
    ['appeared after planning (was absent): leave', false, o('same', false, 'same'), 'leave'],
    ['in the tree without its row, not in the quarantine: leave', true, o('same', false, 'absent'), 'leave'],
  ];
  for (const [name, wasPresent, observed, want] of cases) test(name, () => assert.equal(promoteStep(wasPresent, observed).do, want));

  test('a kill at any point, then the rerun: every path ends moved and recorded exactly once', () => {
    // A path's life through promote: in the tree with its row -> moved -> row removed (commit).
    // Whatever state a kill leaves, the rerun's step brings it to "in the quarantine, no row".
    const states: Observed[] = [o('same', false, 'same'), o('absent', true, 'same'), o('absent', true, 'absent')];
    for (const state of states) {
      const step = promoteStep(true, state).do;
      const after = step === 'move' ? o('absent', true, 'absent') : step === 'record' ? o(state.tree, state.inQuarantine, 'absent') : state;
      assert.deepEqual(after, o('absent', true, 'absent'), JSON.stringify(state));
      assert.equal(promoteStep(true, after).do, 'done', 'a second rerun changes nothing');
    }
  });
});

describe('restoreStep', () => {
  const present = { wasPresent: true };
  const cases: Array<[string, { wasPresent: boolean }, Observed, boolean, boolean, string, string?]> = [
    ['in the quarantine, path free, row gone (finished promotion): move back', present, o('absent', true, 'absent'), false, true, 'move-back'],
    ['in the quarantine, row still there (interrupted promotion): move back', present, o('absent', true, 'same'), false, false, 'move-back'],
    ['moved back by a killed restore (journaled), row rolled back: record', present, o('same', false, 'absent'), true, true, 'record'],
    ['moved back and committed before the kill: record (idempotent)', present, o('same', false, 'same'), true, true, 'record'],
    ['in the quarantine, path occupied again: skip', present, o('same', true, 'absent'), false, true, 'skip', 'something is at that path again'],
    ['in the quarantine, a different row at the path: skip', present, o('absent', true, 'other'), false, true, 'skip', 'something is at that path again'],
    ['a file at the path without a row, not journaled by restore: skip', present, o('same', false, 'absent'), false, true, 'skip', 'something is at that path again'],
    ['journaled, but a different file is at the path: skip', present, o('other', false, 'absent'), true, true, 'skip', 'already restored'],
    ['absent at promotion: skip', { wasPresent: false }, o('absent', false, 'absent'), false, true, 'skip', 'not in the quarantine (it was already absent at promotion)'],
    ['interrupted promotion never moved it: skip', present, o('same', false, 'same'), false, false, 'skip', 'never moved: the promotion stopped before it'],
    ['in neither place: skip', present, o('absent', false, 'absent'), false, true, 'skip', 'not in the quarantine'],
  ];
  for (const [name, entry, observed, journaled, done, want, why] of cases) {
    test(name, () => {
      const step = restoreStep(entry, observed, journaled, done);
      assert.equal(step.do, want);
      if (why !== undefined) assert.equal(step.do === 'skip' ? step.why : null, why);
    });
  }
});

describe('sameRow and sameOnDisk', () => {
  const row: ManifestEntry = { path: 'a', kind: 'file', size: 3, mtimeMs: 10, mode: 0o644, hash: '0123456789abcdef', target: null, bornMs: 5, deletedAt: null, damaged: false };
  test('sameRow: every recorded field counts, damaged does not', () => {
    assert.equal(sameRow(row, { ...row, damaged: true }), true);
    assert.equal(sameRow(row, undefined), false);
    for (const change of [{ size: 4 }, { mtimeMs: 11 }, { mode: 0o600 }, { hash: 'fedcba9876543210' }, { bornMs: 6 }, { deletedAt: 7 }, { kind: 'symlink' as const }]) {
      assert.equal(sameRow(row, { ...row, ...change }), false, JSON.stringify(change));
    }
  });
  test('sameOnDisk: kind, and size for files', () => {
    assert.equal(sameOnDisk(row, null), 'absent');
    assert.equal(sameOnDisk(row, { kind: 'file', size: 3 }), 'same');
    assert.equal(sameOnDisk(row, { kind: 'file', size: 4 }), 'other');
    assert.equal(sameOnDisk(row, { kind: 'dir', size: 3 }), 'other');
    assert.equal(sameOnDisk({ kind: 'symlink', size: 3 }, { kind: 'symlink', size: 9 }), 'same');
  });
});
