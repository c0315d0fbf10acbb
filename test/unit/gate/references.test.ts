/**
 * gate/references: with the promoted DB's referenced names, a promotion plan keeps every path whose
 * file name is referenced (at any depth, whole names only) and moves the rest; without a
 * reference set, everything in the plan moves.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { splitByReferences } from '../../../src/gate/references.js';

const A = 'a94a8fe5ccb19ba61c4c0873d391e987982fbbd3';
const B = 'b94a8fe5ccb19ba61c4c0873d391e987982fbbd3';
const row = (path: string): { path: string } => ({ path });

describe('splitByReferences', () => {
  const plan = [row(`data/filestore/a9/${A}`), row(`data/filestore/b9/${B}`), row('etc/new.yaml'), row(A)];
  const cases: Array<{ name: string; referenced: Set<string> | null; move: string[]; keep: string[] }> = [
    { name: 'no reference check: all move', referenced: null, move: plan.map((r) => r.path), keep: [] },
    { name: 'one referenced binary stays, at any depth', referenced: new Set([A]), move: [`data/filestore/b9/${B}`, 'etc/new.yaml'], keep: [`data/filestore/a9/${A}`, A] },
    { name: 'nothing referenced: all move', referenced: new Set(), move: plan.map((r) => r.path), keep: [] },
    { name: 'a name must match whole, not a prefix', referenced: new Set([A.slice(0, 20), 'filestore']), move: plan.map((r) => r.path), keep: [] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { move, keep } = splitByReferences(plan, c.referenced);
      assert.deepEqual(move.map((r) => r.path), c.move);
      assert.deepEqual(keep.map((r) => r.path), c.keep);
    });
  }
});
