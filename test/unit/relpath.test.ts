/**
 * relpath: which strings are canonical relative paths (and why the others are not), the helpers
 * that take them apart, and the tree order that puts every parent before its children.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import {
  MAX_SYNC_DEPTH, isTooDeep,
  ancestorsOf, baseName, checkRelPath, compareTreeOrder, isWithin, parentOf, relPathProblem, treeKey,
} from '../../src/relpath.js';

/** A path of exactly `bytes` bytes: 200-byte segments and a tail of 1..201 bytes. */
function pathOfBytes(bytes: number): string {
  const blocks = Math.floor((bytes - 1) / 201);
  const p = `${'x'.repeat(200)}/`.repeat(blocks) + 'x'.repeat(bytes - 201 * blocks);
  assert.equal(Buffer.byteLength(p), bytes, 'fixture length');
  return p;
}

describe('relPathProblem / checkRelPath: valid paths', () => {
  const valid: ReadonlyArray<[string, string]> = [
    ['one segment', 'a'],
    ['two segments', 'a/b'],
    ['non-ASCII and a space', 'café/x y'],
    ['hidden name', '.hidden'],
    ['name starting with ..', '..x'],
    ['name ending with ..', 'x..'],
    ['backslashes: ordinary bytes on Linux, as to rsync', 'a\\..\\b/back\\slash'],
    ['newline, leading dash, tab', '-rf/new\nline\tx'],
    ['dot inside a deeper segment', 'a/.b/c.'],
    ['255-byte segment', 'y'.repeat(255)],
    ['255-byte multibyte segment', 'é'.repeat(127) + 'z'],
    ['4096-byte path', pathOfBytes(4096)],
  ];
  for (const [name, p] of valid) {
    test(name, () => {
      assert.equal(relPathProblem(p), null);
      assert.equal(checkRelPath(p), p);
    });
  }
});

describe('relPathProblem / checkRelPath: invalid paths', () => {
  const invalid: ReadonlyArray<[string, string, string]> = [
    ['empty', '', 'empty path'],
    ['single dot', '.', '"." segment'],
    ['double dot', '..', '".." segment'],
    ['absolute', '/a', 'absolute path'],
    ['trailing slash', 'a/', 'empty segment (double or trailing slash)'],
    ['double slash', 'a//b', 'empty segment (double or trailing slash)'],
    ['dot segment inside', 'a/./b', '"." segment'],
    ['dot-dot segment inside', 'a/../b', '".." segment'],
    ['leading dot-dot', '../a', '".." segment'],
    ['trailing dot', 'a/.', '"." segment'],
    ['NUL', 'a\0b', 'contains NUL'],
    ['256-byte segment', 'a/' + 'y'.repeat(256), 'segment longer than 255 bytes'],
    ['256-byte multibyte segment (128 characters)', 'é'.repeat(128), 'segment longer than 255 bytes'],
    ['4097-byte path', pathOfBytes(4097), 'longer than 4096 bytes'],
  ];
  for (const [name, p, problem] of invalid) {
    test(`${name}: ${problem}`, () => {
      assert.equal(relPathProblem(p), problem);
      assert.throws(() => checkRelPath(p), (err: unknown) => {
        assert.ok(err instanceof ProtocolError);
        assert.equal(err.code, 'BAD_PATH');
        assert.equal(err.message, `invalid path ${JSON.stringify(p)}: ${problem}`);
        return true;
      });
    });
  }

  test('a non-string (from untyped input) is refused, not thrown on', () => {
    assert.equal(relPathProblem(42 as unknown as string), 'not a string');
  });

  test('random strings near every limit: the same verdict as the definition (split on "/", each segment judged)', () => {
    /** The definition, as plainly as it can be written: relPathProblem walks the string instead. */
    function byDefinition(p: string): string | null {
      if (p === '') return 'empty path';
      if (p.includes('\0')) return 'contains NUL';
      if (p.startsWith('/')) return 'absolute path';
      if (Buffer.byteLength(p) > 4096) return 'longer than 4096 bytes';
      for (const segment of p.split('/')) {
        if (segment === '') return 'empty segment (double or trailing slash)';
        if (segment === '.' || segment === '..') return `"${segment}" segment`;
        if (Buffer.byteLength(segment) > 255) return 'segment longer than 255 bytes';
      }
      return null;
    }
    // Runs of one unit reach the segment and path limits in 1-, 2-, 3- and 4-byte characters.
    const unit = fc.constantFrom('/', '.', 'a', 'é', '\u20ac', '\u{1F600}', '\0');
    const run = fc.tuple(unit, fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 60, max: 300 }))).map(([u, n]) => u.repeat(n));
    const candidate = fc.array(fc.oneof(unit, unit, run), { minLength: 0, maxLength: 40, size: 'max' }).map((parts) => parts.join(''));
    // Path-shaped: segments of up to 85 characters (255 bytes of a 3-byte one) joined, past 4,096 bytes.
    const segment = fc.tuple(fc.constantFrom('a', 'é', '\u20ac', '\u{1F600}'), fc.integer({ min: 1, max: 85 })).map(([u, n]) => u.repeat(n));
    const pathLike = fc.array(segment, { minLength: 1, maxLength: 60, size: 'max' }).map((segments) => segments.join('/'));
    fc.assert(fc.property(fc.oneof(candidate, pathLike), (p) => relPathProblem(p) === byDefinition(p)), { numRuns: 5000, seed: 19 });
  });
});

describe('parentOf / baseName', () => {
  const cases: ReadonlyArray<[string, string, string]> = [
    ['a', '', 'a'],
    ['a/b', 'a', 'b'],
    ['a/b/c', 'a/b', 'c'],
    ['café/x y', 'café', 'x y'],
    ['.hidden/..x', '.hidden', '..x'],
  ];
  for (const [p, parent, base] of cases) {
    test(`${JSON.stringify(p)} -> parent ${JSON.stringify(parent)}, base ${JSON.stringify(base)}`, () => {
      assert.equal(parentOf(p), parent);
      assert.equal(baseName(p), base);
    });
  }
});

describe('ancestorsOf', () => {
  const cases: ReadonlyArray<[string, string[]]> = [
    ['a', []],
    ['a/b', ['a']],
    ['a/b/c', ['a', 'a/b']],
    ['x/y y/é/z', ['x', 'x/y y', 'x/y y/é']],
  ];
  for (const [p, ancestors] of cases) {
    test(`${JSON.stringify(p)} -> ${JSON.stringify(ancestors)}`, () => {
      assert.deepEqual(ancestorsOf(p), ancestors);
    });
  }
});

describe('isWithin', () => {
  const cases: ReadonlyArray<[string, string, boolean]> = [
    ['a', 'a', true],
    ['a/b', 'a', true],
    ['a/b/c', 'a', true],
    ['a/b/c', 'a/b', true],
    ['ab', 'a', false],
    ['a-b', 'a', false],
    ['a', 'a/b', false],
    ['b/a', 'a', false],
    ['.warmsyncx', '.warmsync', false],
  ];
  for (const [p, dir, within] of cases) {
    test(`${JSON.stringify(p)} within ${JSON.stringify(dir)}: ${within}`, () => {
      assert.equal(isWithin(p, dir), within);
    });
  }
});

describe('compareTreeOrder', () => {
  const sign = (n: number): number => Math.sign(n);
  // Units below and above "/" ("-", ".", " ", control characters), high BMP and astral characters.
  const unit = fc.constantFrom('a', 'b', '-', '.', ' ', '\u0001', '0', 'Z', 'é', '\uFFFD', '\u{1F600}', '\uE000', '\u{10FFFF}', '\uD7FF');
  const anyRelPath = fc.array(fc.array(unit, { minLength: 1, maxLength: 4 }).map((u) => u.join('')), { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));
  const cases: ReadonlyArray<[string, string, string, -1 | 0 | 1]> = [
    ['equal', 'a/b', 'a/b', 0],
    ['parent before child', 'a', 'a/b', -1],
    ['child after parent', 'a/b', 'a', 1],
    ['grandparent before grandchild', 'a', 'a/b/c', -1],
    ['"a/b" before "a-x" (plain string order says the opposite)', 'a/b', 'a-x', -1],
    ['"a-x" after "a/b"', 'a-x', 'a/b', 1],
    ['"a/z" before "ab"', 'a/z', 'ab', -1],
    ['siblings in name order', 'a/b', 'a/c', -1],
    ['deeper child of earlier sibling first', 'a/b/z', 'a/c', -1],
  ];
  for (const [name, a, b, expected] of cases) {
    test(name, () => {
      assert.equal(sign(compareTreeOrder(a, b)), expected);
    });
  }

  test('sorts a small tree so "a/b" comes right after "a"', () => {
    const sorted = ['a-x', 'a/b/c', 'b', 'a', 'a/b', 'a.y', 'a/c'].sort(compareTreeOrder);
    assert.deepEqual(sorted, ['a', 'a/b', 'a/b/c', 'a/c', 'a-x', 'a.y', 'b']);
  });

  test('property: a sort of any shuffled tree puts every parent before its children', () => {
    const segment = fc.constantFrom('a', 'b', 'a-x', 'a.b', 'ab', 'é', 'Z', '0', '..x');
    const relPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));
    // Close the set under ancestors, as a real tree listing is.
    const tree = fc.uniqueArray(relPath, { minLength: 1, maxLength: 30 })
      .map((paths) => [...new Set(paths.flatMap((p) => [...ancestorsOf(p), p]))]);
    fc.assert(fc.property(tree.chain((paths) => fc.shuffledSubarray(paths, { minLength: paths.length })), (shuffled) => {
      const sorted = [...shuffled].sort(compareTreeOrder);
      const index = new Map(sorted.map((p, i) => [p, i]));
      for (const p of sorted) {
        for (const ancestor of ancestorsOf(p)) {
          assert.ok((index.get(ancestor) as number) < (index.get(p) as number), `${ancestor} before ${p} in ${JSON.stringify(sorted)}`);
        }
      }
      // A directory's subtree is contiguous: everything between a dir and its last descendant is inside it.
      for (let i = 0; i < sorted.length; i++) {
        const dir = sorted[i] as string;
        let j = i + 1;
        while (j < sorted.length && isWithin(sorted[j] as string, dir)) j++;
        for (let k = j; k < sorted.length; k++) assert.ok(!isWithin(sorted[k] as string, dir), `${sorted[k]} separated from ${dir}`);
      }
    }));
  });

  test('property: the same order as comparing segment by segment, for any segments', () => {
    // The definition, spelled out: compare the segments in turn, each by its UTF-8 bytes (code
    // points); a path that runs out first sorts first.
    const bySegments = (a: string, b: string): number => {
      const sa = a.split('/');
      const sb = b.split('/');
      for (let i = 0; i < Math.min(sa.length, sb.length); i++) {
        const x = sa[i] as string;
        const y = sb[i] as string;
        if (x !== y) return Buffer.compare(Buffer.from(x), Buffer.from(y));
      }
      return sa.length - sb.length;
    };
    fc.assert(fc.property(anyRelPath, anyRelPath, (a, b) => {
      assert.equal(Math.sign(compareTreeOrder(a, b)), Math.sign(bySegments(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }), { numRuns: 2000 });
  });

  test('property: treeKey\'s bytes sort in the same order (what SQLite orders the agent\'s mirror by)', () => {
    fc.assert(fc.property(anyRelPath, anyRelPath, (a, b) => {
      assert.equal(Math.sign(Buffer.compare(treeKey(a), treeKey(b))), Math.sign(compareTreeOrder(a, b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }), { numRuns: 2000 });
  });

  test('U+E000 and up sort before astral characters, as their UTF-8 bytes do (UTF-16 units say the opposite)', () => {
    assert.equal(Math.sign(compareTreeOrder('a/\uE000', 'a/\u{1F600}')), -1);
    assert.equal(Math.sign(compareTreeOrder('\u{1F600}', '\uFFFD')), 1);
    assert.deepEqual([...treeKey('a/é')], [0x61, 0, 0xc3, 0xa9]);
  });

  test('property: a total order (antisymmetric, and 0 only for equal paths)', () => {
    const relPath = fc.array(fc.constantFrom('a', 'b', 'a-x', 'a.b', 'ab'), { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
    fc.assert(fc.property(relPath, relPath, (a, b) => {
      assert.equal(Math.sign(compareTreeOrder(a, b)) + Math.sign(compareTreeOrder(b, a)), 0);
      assert.equal(compareTreeOrder(a, b) === 0, a === b);
    }));
  });
});

describe('isTooDeep', () => {
  const chain = (n: number, seg = 'd'): string => Array.from({ length: n }, () => seg).join('/');
  const cases: Array<[string, string, number, boolean]> = [
    ['one segment', 'a', 0, false],
    [`${MAX_SYNC_DEPTH} segments`, chain(MAX_SYNC_DEPTH), 0, false],
    [`${MAX_SYNC_DEPTH + 1} segments`, chain(MAX_SYNC_DEPTH + 1), 0, true],
    [`${MAX_SYNC_DEPTH + 1} long segments`, chain(MAX_SYNC_DEPTH + 1, 'xyz'), 0, true],
    [`a long path of few segments`, chain(10, 'x'.repeat(300)), 0, false],
    [`${MAX_SYNC_DEPTH - 1} segments 1 level down`, chain(MAX_SYNC_DEPTH - 1), 1, false],
    [`${MAX_SYNC_DEPTH} segments 1 level down`, chain(MAX_SYNC_DEPTH), 1, true],
    ['2,040 segments (4,079 bytes)', chain(2040), 0, true],
  ];
  for (const [what, p, above, expected] of cases) {
    test(`${what}: ${expected ? 'too deep' : 'fine'}`, () => assert.equal(isTooDeep(p, above), expected));
  }
});
