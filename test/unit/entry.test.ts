/**
 * entry: whole-millisecond mtimes, the equality the planner uses, and the seconds handed to
 * utimes() so that a time written on the standby reads back as the same whole millisecond.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { lstat, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sameEntry, utimeValue, wholeMs, withoutSetuid, type Entry } from '../../src/entry.js';

/** The mtime of the reference file: 2025-11-26T17:25:19.231Z. */
const MTIME = 1_764_177_919_231;
/** Latest instant in year 9999, as far as a "wide range" of mtimes needs to go. */
const YEAR_9999_END = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const fileEntry = (over: Partial<Entry> = {}): Entry =>
  ({ path: 'a/f', kind: 'file', size: 3, mtimeMs: MTIME, mode: 0o644, hash: '0123456789abcdef', target: null, ...over });
const dirEntry = (over: Partial<Entry> = {}): Entry =>
  ({ path: 'a', kind: 'dir', size: 0, mtimeMs: MTIME, mode: 0o755, hash: null, target: null, ...over });
const linkEntry = (over: Partial<Entry> = {}): Entry =>
  ({ path: 'a/l', kind: 'symlink', size: 1, mtimeMs: MTIME, mode: 0o777, hash: null, target: 'f', ...over });

describe('wholeMs', () => {
  const cases: ReadonlyArray<[number, number]> = [
    [0, 0],
    [0.999, 0],
    [MTIME, MTIME],
    [MTIME + 0.999, MTIME],
    [MTIME + 0.5, MTIME],
    [MTIME + 0.0001, MTIME],
    [-1500.5, -1500],
  ];
  for (const [input, output] of cases) {
    test(`${input} -> ${output}`, () => {
      assert.equal(wholeMs(input), output);
    });
  }
});

describe('sameEntry', () => {
  const cases: ReadonlyArray<[string, Entry, Entry, boolean]> = [
    ['identical files', fileEntry(), fileEntry(), true],
    ['path is ignored', fileEntry(), fileEntry({ path: 'b/g' }), true],
    ['different size', fileEntry(), fileEntry({ size: 4 }), false],
    ['different mtime by 1 ms', fileEntry(), fileEntry({ mtimeMs: MTIME + 1 }), false],
    ['different mode', fileEntry(), fileEntry({ mode: 0o600 }), false],
    ['different hash', fileEntry(), fileEntry({ hash: 'fedcba9876543210' }), false],
    ['different kind (file vs dir)', fileEntry({ size: 0, hash: null, mode: 0o755 }), dirEntry(), false],
    ['identical dirs', dirEntry(), dirEntry(), true],
    ['dirs with different mtime', dirEntry(), dirEntry({ mtimeMs: 1 }), false],
    ['identical symlinks', linkEntry(), linkEntry(), true],
    ['symlinks with different targets of the same length', linkEntry(), linkEntry({ target: 'g' }), false],
  ];
  for (const [name, a, b, same] of cases) {
    test(`${name}: ${same}`, () => {
      assert.equal(sameEntry(a, b), same);
      assert.equal(sameEntry(b, a), same, 'symmetric');
    });
  }
});

describe('utimeValue', () => {
  const cases: ReadonlyArray<[number, number]> = [
    [0, 0.0005],
    [1, 0.0015],
    [999, 0.9995],
    [1000, 1.0005],
    [MTIME, 1_764_177_919.2315],
    [-1, -0.0015],
    [-1000, -1.0005],
  ];
  for (const [ms, seconds] of cases) {
    test(`${ms} ms -> ${seconds} s (the middle of the millisecond wholeMs truncates to)`, () => {
      assert.ok(Math.abs(Number(utimeValue(ms)) - seconds) < 1e-6, `${utimeValue(ms)} vs ${seconds}`);
    });
  }

  test('before 1970 the value is a numeric string (Node turns a negative number into "now")', () => {
    assert.equal(typeof utimeValue(-1500), 'string');
    assert.equal(typeof utimeValue(1500), 'number');
  });

  test(`reads back as ${MTIME} (a plain ms / 1000 lands a hair below it)`, () => {
    assert.equal(wholeMs(Number(utimeValue(MTIME)) * 1000), MTIME);
  });

  const wideRange = fc.oneof(
    fc.integer({ min: -YEAR_9999_END, max: YEAR_9999_END }),
    fc.integer({ min: MTIME - 10_000_000, max: MTIME + 10_000_000 }),
    fc.constantFrom(0, 1, -1, 999, -999, 1000, -1000, MTIME, 2 ** 31 * 1000 - 1, 2 ** 32 * 1000, YEAR_9999_END),
  );

  test('property: wholeMs(utimeValue(ms) * 1000) === ms, year -5999 to 9999', () => {
    fc.assert(fc.property(wideRange, (ms) => wholeMs(Number(utimeValue(ms)) * 1000) === ms), { numRuns: 20_000 });
  });

  test('on disk: utimes with utimeValue reads back as the same whole milliseconds, before 1970 too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warmsync-entry-'));
    try {
      const file = join(dir, 'f');
      await writeFile(file, 'x');
      for (const ms of [MTIME, 1, 0, -1, -1500, -86_400_000]) {
        await utimes(file, utimeValue(ms), utimeValue(ms));
        assert.equal(wholeMs((await lstat(file)).mtimeMs), ms);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test('withoutSetuid (--no-setuid): a regular file loses setuid and setgid, nothing else changes', () => {
  const base: Entry = { path: 'a', kind: 'file', size: 1, mtimeMs: 0, mode: 0o755, hash: '0000000000000000', target: null, owner: null };
  const cases: Array<[Entry['kind'], number, number]> = [
    ['file', 0o4755, 0o755], ['file', 0o2711, 0o711], ['file', 0o6755, 0o755], ['file', 0o7777, 0o1777],
    ['file', 0o1644, 0o1644], ['file', 0o644, 0o644], ['dir', 0o2775, 0o2775], ['special', 0o4644, 0o4644],
  ];
  for (const [kind, mode, expected] of cases) {
    const e: Entry = { ...base, kind, mode };
    assert.equal(withoutSetuid(e).mode, expected, `${kind} ${mode.toString(8)}`);
    if (mode === expected) assert.equal(withoutSetuid(e), e, 'unchanged entries are not copied');
  }
});
