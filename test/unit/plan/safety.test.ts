/**
 * plan/safety: an emptied source halts (SOURCE_EMPTY) instead of tombstoning every file, and a run
 * that would delete more than the allowed share of the standby's files halts (MASS_DELETE), except
 * for small runs at or under minDeletesToHalt. Only file deletions count.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Entry, EntryKind, ManifestEntry } from '../../../src/entry.js';
import type { Change } from '../../../src/plan/diff.js';
import { DEFAULT_SAFETY, DeletionGuard, checkSafety, type SafetyOptions } from '../../../src/plan/safety.js';

const T = 1_764_177_919_231;

const entry = (path: string, kind: EntryKind): Entry => ({
  path, kind, size: kind === 'file' ? 3 : 0, mtimeMs: T, mode: kind === 'dir' ? 0o755 : 0o644,
  hash: kind === 'file' ? 'aaaaaaaaaaaaaaaa' : null, target: kind === 'symlink' ? 'x' : null,
});
const row = (path: string, kind: EntryKind): ManifestEntry => ({ ...entry(path, kind), bornMs: T, deletedAt: null, damaged: false });

/** `n` deletions of live rows of `kind`. */
const deletions = (n: number, kind: EntryKind = 'file'): Change[] =>
  Array.from({ length: n }, (_, i) => ({ path: `${kind}-${i}`, old: row(`${kind}-${i}`, kind), new: null }));
/** `n` new files. */
const creations = (n: number): Change[] =>
  Array.from({ length: n }, (_, i) => ({ path: `new-${i}`, old: null, new: entry(`new-${i}`, 'file') }));

interface Case {
  readonly name: string;
  readonly changes: readonly Change[];
  readonly sourceEntries: number;
  readonly standbyFiles: number;
  readonly options?: SafetyOptions;
  readonly halt: 'SOURCE_EMPTY' | 'MASS_DELETE' | null;
}

describe('checkSafety', () => {
  const cases: readonly Case[] = [
    // SOURCE_EMPTY
    { name: 'source empty, standby holds files', changes: deletions(100), sourceEntries: 0, standbyFiles: 100, halt: 'SOURCE_EMPTY' },
    { name: 'source empty, standby holds one file', changes: deletions(1), sourceEntries: 0, standbyFiles: 1, halt: 'SOURCE_EMPTY' },
    { name: 'source empty, standby holds files, no deletions planned', changes: [], sourceEntries: 0, standbyFiles: 3, halt: 'SOURCE_EMPTY' },
    { name: 'both empty', changes: [], sourceEntries: 0, standbyFiles: 0, halt: null },
    { name: 'source empty, standby holds only dirs (no files)', changes: deletions(4, 'dir'), sourceEntries: 0, standbyFiles: 0, halt: null },
    { name: 'source with one entry, standby files all deleted but few', changes: deletions(5), sourceEntries: 1, standbyFiles: 5, halt: null },
    // MASS_DELETE (defaults: share 0.5, minDeletesToHalt 10)
    { name: 'over the share and over the minimum', changes: deletions(60), sourceEntries: 40, standbyFiles: 100, halt: 'MASS_DELETE' },
    { name: 'all of 11 files', changes: deletions(11), sourceEntries: 1, standbyFiles: 11, halt: 'MASS_DELETE' },
    { name: 'one over the share', changes: deletions(51), sourceEntries: 49, standbyFiles: 100, halt: 'MASS_DELETE' },
    { name: 'exactly the share: not halted', changes: deletions(50), sourceEntries: 50, standbyFiles: 100, halt: null },
    { name: 'under the share', changes: deletions(49), sourceEntries: 51, standbyFiles: 100, halt: null },
    { name: 'exactly minDeletesToHalt (10 of 10): never halted', changes: deletions(10), sourceEntries: 1, standbyFiles: 10, halt: null },
    { name: 'under minDeletesToHalt (3 of 3)', changes: deletions(3), sourceEntries: 1, standbyFiles: 3, halt: null },
    { name: 'no deletions at all', changes: creations(500), sourceEntries: 500, standbyFiles: 0, halt: null },
    { name: 'dir deletions do not count', changes: deletions(1000, 'dir'), sourceEntries: 1, standbyFiles: 20, halt: null },
    { name: 'symlink deletions do not count', changes: deletions(1000, 'symlink'), sourceEntries: 1, standbyFiles: 20, halt: null },
    { name: 'creations do not count', changes: [...creations(100), ...deletions(10)], sourceEntries: 100, standbyFiles: 12, halt: null },
    {
      name: 'only file deletions count toward the share',
      changes: [...deletions(11), ...deletions(100, 'dir')], sourceEntries: 10, standbyFiles: 21, halt: 'MASS_DELETE',
    },
    // Options
    {
      name: 'share 0.1: 11 of 100 halts',
      changes: deletions(11), sourceEntries: 89, standbyFiles: 100, options: { maxDeleteShare: 0.1, minDeletesToHalt: 10 }, halt: 'MASS_DELETE',
    },
    {
      name: 'share 1: deleting everything never halts by share',
      changes: deletions(100), sourceEntries: 1, standbyFiles: 100, options: { maxDeleteShare: 1, minDeletesToHalt: 10 }, halt: null,
    },
    {
      name: 'minDeletesToHalt 0: a single deletion over the share halts',
      changes: deletions(1), sourceEntries: 1, standbyFiles: 1, options: { maxDeleteShare: 0.5, minDeletesToHalt: 0 }, halt: 'MASS_DELETE',
    },
    {
      name: 'minDeletesToHalt 1000: 1000 of 1000 never halts',
      changes: deletions(1000), sourceEntries: 1, standbyFiles: 1000, options: { maxDeleteShare: 0.5, minDeletesToHalt: 1000 }, halt: null,
    },
    {
      name: 'SOURCE_EMPTY wins over a permissive share',
      changes: deletions(100), sourceEntries: 0, standbyFiles: 100, options: { maxDeleteShare: 1, minDeletesToHalt: 1000 }, halt: 'SOURCE_EMPTY',
    },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.halt ?? 'no halt'}`, () => {
      const halt = checkSafety(c.changes, c.sourceEntries, c.standbyFiles, c.options ?? DEFAULT_SAFETY);
      assert.equal(halt?.code ?? null, c.halt);
    });
  }
});

describe('checkSafety: messages', () => {
  test('SOURCE_EMPTY names the file count and asks whether the disk is mounted', () => {
    const halt = checkSafety(deletions(7), 0, 7, DEFAULT_SAFETY);
    assert.ok(halt);
    assert.equal(halt.code, 'SOURCE_EMPTY');
    assert.match(halt.message, /holds 7 files/);
    assert.match(halt.message, /mounted/);
    assert.match(halt.message, /Nothing was changed/);
  });

  test('MASS_DELETE names the counts, the share and --max-delete', () => {
    const halt = checkSafety(deletions(60), 40, 100, DEFAULT_SAFETY);
    assert.ok(halt);
    assert.equal(halt.code, 'MASS_DELETE');
    assert.match(halt.message, /delete 60 of 100 files/);
    assert.match(halt.message, /\(60 %, above --max-delete 50 %\)/);
    assert.match(halt.message, /rerun with a higher --max-delete/);
  });

  test('MASS_DELETE rounds the percentages', () => {
    const halt = checkSafety(deletions(2), 1, 3, { maxDeleteShare: 0.333, minDeletesToHalt: 0 });
    assert.match(halt?.message ?? '', /\(67 %, above --max-delete 33 %\)/);
  });

  test('the defaults: share 0.5, minimum 10', () => {
    assert.deepEqual(DEFAULT_SAFETY, { maxDeleteShare: 0.5, minDeletesToHalt: 10 });
  });
});

describe('DeletionGuard: the live agent counts file deletions over a window', () => {
  const WINDOW = 60_000;
  const guard = (options: SafetyOptions = DEFAULT_SAFETY): DeletionGuard => new DeletionGuard(options, WINDOW);

  test('deletions one at a time flow until the window holds more than the share, then every deletion is held', () => {
    const g = guard();
    const admitted = Array.from({ length: 60 }, (_, i) => g.admit(1, T + i, 100));
    // 50 of 100 is the share itself (allowed); the 51st trips.
    assert.deepEqual(admitted.map((a, i) => (a ? i : -1)).filter((i) => i >= 0).length, 50);
    assert.equal(admitted[50], false);
    assert.equal(g.halt?.code, 'MASS_DELETE');
    assert.match(g.halt?.finding ?? '', /^51 of the standby's 100 files deleted on the source within 60 s \(51 %, above --max-delete 50 %\)$/);
    // Held from then on: a directory, a link, a lone file hours later.
    assert.equal(g.admit(0, T + 61, 100), false);
    assert.equal(g.admit(1, T + 10 * WINDOW, 100), false);
  });

  test('deletions spread wider than the window never trip it', () => {
    const g = guard();
    for (let i = 0; i < 500; i++) assert.equal(g.admit(1, T + i * (WINDOW / 40), 100), true, `deletion ${i}`);
    assert.equal(g.halt, null);
  });

  test('at most minDeletesToHalt in the window never trips, whatever the share', () => {
    const g = guard();
    for (let i = 0; i < 10; i++) assert.equal(g.admit(1, T, 10), true);
    assert.equal(g.admit(1, T, 10), false);
  });

  test('--max-delete 100 never trips, even when the window counts more deletions than the standby holds', () => {
    const g = guard({ maxDeleteShare: 1, minDeletesToHalt: 10 });
    for (let i = 0; i < 300; i++) assert.equal(g.admit(1, T, 100), true);
  });

  test('directories and links (0 files) pass without counting', () => {
    const g = guard();
    for (let i = 0; i < 1000; i++) assert.equal(g.admit(0, T, 20), true);
    assert.equal(g.halt, null);
  });

  test('trip() holds with a pass\'s verdict and keeps the first; release() empties the window', () => {
    const g = guard();
    for (let i = 0; i < 50; i++) g.admit(1, T, 100);
    const halt = checkSafety(deletions(100), 0, 100, DEFAULT_SAFETY);
    assert.ok(halt);
    g.trip(halt);
    g.trip({ code: 'MASS_DELETE', finding: 'later', message: 'later' });
    assert.equal(g.halt?.code, 'SOURCE_EMPTY');
    assert.equal(g.admit(1, T, 100), false);
    g.release();
    assert.equal(g.halt, null);
    // The 50 admitted before the trip no longer count.
    for (let i = 0; i < 50; i++) assert.equal(g.admit(1, T + 1, 100), true);
  });
});
