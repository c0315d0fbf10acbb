/**
 * plan/diff: source entries vs. the receiver's manifest -> changes and the action each one sends.
 * Cases: new, unchanged, content, metadata-only, cancelled tombstones, damaged rows, deletions
 * (and what is never deleted: tombstones, excluded and unknown paths), kind changes, and the order
 * the result is applied in.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Entry, ManifestEntry } from '../../../src/entry.js';
import { TreeMerge, actionOf, diffTrees, replacesDirectory, type Change, type DiffOptions } from '../../../src/plan/diff.js';
import { ancestorsOf, compareTreeOrder, isWithin } from '../../../src/relpath.js';

const T = 1_764_177_919_231;
const HASH_A = 'aaaaaaaaaaaaaaaa';
const HASH_B = 'bbbbbbbbbbbbbbbb';

// Source entries.
const file = (path: string, over: Partial<Entry> = {}): Entry =>
  ({ path, kind: 'file', size: 3, mtimeMs: T, mode: 0o644, hash: HASH_A, target: null, ...over });
const dir = (path: string, over: Partial<Entry> = {}): Entry =>
  ({ path, kind: 'dir', size: 0, mtimeMs: T, mode: 0o755, hash: null, target: null, ...over });
const link = (path: string, target = 'elsewhere', over: Partial<Entry> = {}): Entry =>
  ({ path, kind: 'symlink', size: Buffer.byteLength(target), mtimeMs: T, mode: 0o777, hash: null, target, ...over });

// Manifest rows made from an entry.
const live = (entry: Entry): ManifestEntry => ({ ...entry, bornMs: entry.mtimeMs, deletedAt: null, damaged: false });
const tombstoned = (entry: Entry, deletedAt = T + 5000): ManifestEntry => ({ ...live(entry), deletedAt });
const damaged = (entry: Entry): ManifestEntry => ({ ...live(entry), damaged: true });

const keepAll: DiffOptions = { hides: () => false };

/** "action path" per change, in result order. */
const summary = (changes: readonly Change[]): string[] => changes.map((c) => `${actionOf(c)} ${c.path}`);

interface Case {
  readonly name: string;
  readonly source: readonly Entry[];
  readonly manifest: readonly ManifestEntry[];
  readonly options?: DiffOptions;
  readonly expected: readonly string[];
}

function runCases(cases: readonly Case[]): void {
  for (const c of cases) {
    test(c.name, () => {
      const changes = diffTrees(c.source, c.manifest, c.options ?? keepAll);
      assert.deepEqual(summary(changes), c.expected);
      // Every change carries the manifest row planned against (or null) and the source entry (or null).
      const rows = new Map(c.manifest.map((m) => [m.path, m]));
      const entries = new Map(c.source.map((e) => [e.path, e]));
      for (const change of changes) {
        assert.equal(change.old, rows.get(change.path) ?? null, `old of ${change.path}`);
        assert.equal(change.new, entries.get(change.path) ?? null, `new of ${change.path}`);
      }
    });
  }
}

describe('diffTrees: new and unchanged', () => {
  runCases([
    { name: 'empty source and manifest: nothing', source: [], manifest: [], expected: [] },
    { name: 'new file: transfer', source: [file('f')], manifest: [], expected: ['transfer f'] },
    { name: 'new empty file: transfer', source: [file('f', { size: 0, hash: 'ef46db3751d8e999' })], manifest: [], expected: ['transfer f'] },
    { name: 'new dir with a file: mkdir then transfer', source: [file('d/f'), dir('d')], manifest: [], expected: ['mkdir d', 'transfer d/f'] },
    { name: 'new symlink: symlink', source: [link('l')], manifest: [], expected: ['symlink l'] },
    {
      name: 'unchanged file, dir and symlink: no change',
      source: [dir('d'), file('d/f'), link('d/l')],
      manifest: [live(dir('d')), live(file('d/f')), live(link('d/l'))],
      expected: [],
    },
    {
      name: 'unchanged row with another born time: still no change (bornMs is not compared)',
      source: [file('f')],
      manifest: [{ ...live(file('f')), bornMs: T - 99_000 }],
      expected: [],
    },
  ]);
});

describe('diffTrees: changes to live rows', () => {
  runCases([
    { name: 'content change (hash and size): transfer', source: [file('f', { hash: HASH_B, size: 4 })], manifest: [live(file('f'))], expected: ['transfer f'] },
    { name: 'content change, same size: transfer', source: [file('f', { hash: HASH_B })], manifest: [live(file('f'))], expected: ['transfer f'] },
    { name: 'content change, same hash, other size: transfer', source: [file('f', { size: 4 })], manifest: [live(file('f'))], expected: ['transfer f'] },
    { name: 'content and mtime change: transfer', source: [file('f', { hash: HASH_B, mtimeMs: T + 1 })], manifest: [live(file('f'))], expected: ['transfer f'] },
    { name: 'mode-only change, same hash: setMeta', source: [file('f', { mode: 0o600 })], manifest: [live(file('f'))], expected: ['setMeta f'] },
    { name: 'mtime-only change (1 ms), same hash: setMeta', source: [file('f', { mtimeMs: T + 1 })], manifest: [live(file('f'))], expected: ['setMeta f'] },
    { name: 'mode and mtime change, same hash: setMeta', source: [file('f', { mode: 0o755, mtimeMs: T - 1 })], manifest: [live(file('f'))], expected: ['setMeta f'] },
    { name: 'dir mtime change: mkdir', source: [dir('d', { mtimeMs: T + 1 })], manifest: [live(dir('d'))], expected: ['mkdir d'] },
    { name: 'dir mode change: mkdir', source: [dir('d', { mode: 0o700 })], manifest: [live(dir('d'))], expected: ['mkdir d'] },
    { name: 'symlink target change: symlink', source: [link('l', 'other')], manifest: [live(link('l'))], expected: ['symlink l'] },
    { name: 'symlink mtime change: symlink', source: [link('l', 'elsewhere', { mtimeMs: T + 1 })], manifest: [live(link('l'))], expected: ['symlink l'] },
  ]);
});

describe('diffTrees: tombstoned and damaged rows', () => {
  runCases([
    {
      name: 'tombstoned file reappears unchanged: setMeta (the tombstone is cancelled)',
      source: [file('f')],
      manifest: [tombstoned(file('f'))],
      expected: ['setMeta f'],
    },
    {
      name: 'tombstoned file reappears with a new mtime, same hash: setMeta',
      source: [file('f', { mtimeMs: T + 7 })],
      manifest: [tombstoned(file('f'))],
      expected: ['setMeta f'],
    },
    {
      name: 'tombstoned file reappears with other content: transfer',
      source: [file('f', { hash: HASH_B })],
      manifest: [tombstoned(file('f'))],
      expected: ['transfer f'],
    },
    { name: 'tombstoned dir reappears: mkdir', source: [dir('d')], manifest: [tombstoned(dir('d'))], expected: ['mkdir d'] },
    { name: 'tombstoned symlink reappears: symlink', source: [link('l')], manifest: [tombstoned(link('l'))], expected: ['symlink l'] },
    { name: 'damaged row, source unchanged: transfer', source: [file('f')], manifest: [damaged(file('f'))], expected: ['transfer f'] },
    { name: 'damaged row, mode changed: transfer (never setMeta)', source: [file('f', { mode: 0o600 })], manifest: [damaged(file('f'))], expected: ['transfer f'] },
    { name: 'tombstoned row missing from the source: no change', source: [], manifest: [tombstoned(file('f'))], expected: [] },
    {
      name: 'tombstoned subtree missing from the source: no change',
      source: [],
      manifest: [tombstoned(dir('d')), tombstoned(file('d/f')), tombstoned(link('d/l'))],
      expected: [],
    },
  ]);

  test('the change for a cancelled tombstone carries the tombstone as its precondition', () => {
    const row = tombstoned(file('f'), T + 42);
    const [change] = diffTrees([file('f')], [row], keepAll);
    assert.equal(change?.old, row);
    assert.equal(change?.old?.deletedAt, T + 42);
  });
});

describe('diffTrees: deletions', () => {
  runCases([
    { name: 'live file missing from the source: delete', source: [], manifest: [live(file('f'))], expected: ['delete f'] },
    {
      name: 'live subtree missing from the source: delete, children first',
      source: [],
      manifest: [live(dir('d')), live(file('d/f')), live(dir('d/e')), live(link('d/e/l'))],
      expected: ['delete d/f', 'delete d/e/l', 'delete d/e', 'delete d'],
    },
    {
      name: 'only the missing sibling is deleted',
      source: [dir('d'), file('d/keep')],
      manifest: [live(dir('d')), live(file('d/keep')), live(file('d/gone'))],
      expected: ['delete d/gone'],
    },
    {
      name: 'excluded (hidden) rows are not deleted',
      source: [dir('d')],
      manifest: [live(dir('d')), live(dir('d/cache')), live(file('d/cache/x')), live(file('d/x.tmp')), live(file('d/y'))],
      options: { hides: (p) => isWithin(p, 'd/cache') || p.endsWith('.tmp') },
      expected: ['delete d/y'],
    },
    {
      name: 'rows at or below an unknown path are not deleted',
      source: [dir('d')],
      manifest: [
        live(dir('d')), live(dir('d/u')), live(file('d/u/x')), live(file('d/u/e/y')),
        live(file('d/uv')), live(file('d/u-x')), live(file('v')),
      ],
      options: { hides: () => false, unknown: ['d/u'] },
      expected: ['delete v', 'delete d/uv', 'delete d/u-x'],
    },
    {
      name: 'an unknown file itself is not deleted',
      source: [],
      manifest: [live(file('f')), live(file('g'))],
      options: { hides: () => false, unknown: ['f'] },
      expected: ['delete g'],
    },
    {
      name: 'an empty unknown list protects nothing',
      source: [],
      manifest: [live(file('f'))],
      options: { hides: () => false, unknown: [] },
      expected: ['delete f'],
    },
  ]);

  test('hides is asked with isDir true for directory rows only', () => {
    const calls: Array<[string, boolean]> = [];
    diffTrees([], [live(dir('d')), live(file('f')), live(link('l')), tombstoned(file('t'))], {
      hides: (p, isDir) => {
        calls.push([p, isDir]);
        return true;
      },
    });
    assert.deepEqual(calls.sort(), [['d', true], ['f', false], ['l', false]]);
  });

  test('a hidden path present in the source is still planned (hides only guards deletions)', () => {
    const changes = diffTrees([file('x.tmp')], [], { hides: () => true });
    assert.deepEqual(summary(changes), ['transfer x.tmp']);
  });
});

describe('diffTrees: kind changes', () => {
  runCases([
    { name: 'file -> dir: mkdir', source: [dir('a')], manifest: [live(file('a'))], expected: ['mkdir a'] },
    {
      name: 'dir -> file: children deleted first, then transfer',
      source: [file('a')],
      manifest: [live(dir('a')), live(file('a/x')), live(dir('a/y'))],
      expected: ['delete a/y', 'delete a/x', 'transfer a'],
    },
    {
      name: 'dir -> file whose hash matches nothing: transfer, never setMeta',
      source: [file('a', { size: 0 })],
      manifest: [live(dir('a'))],
      expected: ['transfer a'],
    },
    { name: 'symlink -> dir: mkdir, then its new children', source: [file('a/b'), dir('a')], manifest: [live(link('a'))], expected: ['mkdir a', 'transfer a/b'] },
    { name: 'symlink -> file: transfer', source: [file('a')], manifest: [live(link('a'))], expected: ['transfer a'] },
    { name: 'file -> symlink: symlink', source: [link('a')], manifest: [live(file('a'))], expected: ['symlink a'] },
    {
      name: 'dir -> symlink: children deleted first, then symlink',
      source: [link('a', 'x')],
      manifest: [live(dir('a')), live(file('a/x'))],
      expected: ['delete a/x', 'symlink a'],
    },
    { name: 'tombstoned file -> dir: mkdir', source: [dir('a')], manifest: [tombstoned(file('a'))], expected: ['mkdir a'] },
  ]);
});

describe('diffTrees: order', () => {
  test('all deletions first (children before parents), then upserts (parents before children), whatever the input order', () => {
    const source = [file('n/b/c'), file('m'), dir('n'), file('n-x'), dir('n/b'), file('a/keep'), dir('a')];
    const manifest = [
      live(file('a/gone')), live(dir('a')), live(file('a/keep')), live(file('a-x')), live(dir('a/b')), live(file('a/b/c')), live(file('z')),
    ];
    const expected = [
      'delete z', 'delete a-x', 'delete a/gone', 'delete a/b/c', 'delete a/b',
      'transfer m', 'mkdir n', 'mkdir n/b', 'transfer n/b/c', 'transfer n-x',
    ];
    assert.deepEqual(summary(diffTrees(source, manifest, keepAll)), expected);
    assert.deepEqual(summary(diffTrees([...source].reverse(), [...manifest].reverse(), keepAll)), expected);
  });

  test('accepts any iterables (generators), read once', () => {
    function* gen<T>(items: T[]): Generator<T> {
      yield* items;
    }
    const changes = diffTrees(gen([file('b')]), gen([live(file('a'))]), keepAll);
    assert.deepEqual(summary(changes), ['delete a', 'transfer b']);
  });

  test('a manifest listing a path twice is planned against the later row, and that path is not deleted', () => {
    const stale = live(file('a', { hash: 'ffffffffffffffff' }));
    assert.deepEqual(diffTrees([file('a')], [stale, live(file('a'))], keepAll), []);
    const changes = diffTrees([file('a')], [live(file('a')), stale], keepAll);
    assert.deepEqual(changes, [{ path: 'a', old: stale, new: file('a') }]);
  });

  test('property: deletions precede upserts; deletions children-first, upserts parents-first; input order is irrelevant', () => {
    const segment = fc.constantFrom('a', 'b', 'a-x', 'ab', 'é');
    const pathArb = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
    const treeArb = fc.uniqueArray(pathArb, { maxLength: 15 }).map((paths) => {
      // A consistent tree: every ancestor is a dir, leaves are files.
      const all = new Set(paths.flatMap((p) => [...ancestorsOf(p), p]));
      return [...all].map((p) => ([...all].some((q) => q.startsWith(p + '/')) ? dir(p) : file(p)));
    });
    fc.assert(fc.property(treeArb, treeArb, fc.context(), (src, old, ctx) => {
      const manifest = old.map(live);
      const changes = diffTrees(src, manifest, keepAll);
      ctx.log(JSON.stringify(summary(changes)));
      const firstUpsert = changes.findIndex((c) => c.new !== null);
      if (firstUpsert >= 0) assert.ok(changes.slice(firstUpsert).every((c) => c.new !== null), 'deletions first');
      const pos = new Map(changes.map((c, i) => [c.path, i]));
      for (const c of changes) {
        for (const a of ancestorsOf(c.path)) {
          const ai = pos.get(a);
          if (ai === undefined) continue;
          const parentDeleted = (changes[ai] as Change).new === null;
          if (c.new === null && parentDeleted) assert.ok(ai > (pos.get(c.path) as number), `delete ${c.path} before delete ${a}`);
          if (c.new !== null && !parentDeleted) assert.ok(ai < (pos.get(c.path) as number), `upsert ${a} before upsert ${c.path}`);
        }
      }
      const reversed = diffTrees([...src].reverse(), [...manifest].reverse(), keepAll);
      assert.deepEqual(summary(reversed), summary(changes));
      const planned = new Set(changes.map((c) => c.path));
      // Exactly the paths that differ are planned (same path and kind means the same entry here).
      const srcKinds = new Map(src.map((e) => [e.path, e.kind]));
      const oldKinds = new Map(manifest.map((m) => [m.path, m.kind]));
      const differing = [...new Set([...srcKinds.keys(), ...oldKinds.keys()])].filter((p) => srcKinds.get(p) !== oldKinds.get(p));
      assert.deepEqual([...planned].sort(), differing.sort());
    }));
  });
});

describe('TreeMerge: planning as a scan goes', () => {
  test('property: rowAt asked ahead of the entries added (as a scan asks before a hash ends) finds each row, and the plan is diffTrees\'s', () => {
    const segment = fc.constantFrom('a', 'b', 'a-x', 'ab', 'é');
    const pathArb = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
    const spec = fc.record({ path: pathArb, kind: fc.constantFrom<'file' | 'dir'>('file', 'dir'), hash: fc.constantFrom(HASH_A, HASH_B), tomb: fc.boolean() });
    fc.assert(fc.property(fc.array(spec, { maxLength: 25 }), fc.array(spec, { maxLength: 25 }), fc.array(fc.nat(4), { maxLength: 25 }), (srcSpec, rowSpec, lags) => {
      const bySpec = (s: { path: string; kind: 'file' | 'dir'; hash: string }): Entry => (s.kind === 'dir' ? dir(s.path) : file(s.path, { hash: s.hash }));
      const source = [...new Map(srcSpec.map((s) => [s.path, bySpec(s)])).values()].sort((a, b) => compareTreeOrder(a.path, b.path));
      const manifest = [...new Map(rowSpec.map((s) => [s.path, s.tomb ? tombstoned(bySpec(s)) : live(bySpec(s))])).values()]
        .sort((a, b) => compareTreeOrder(a.path, b.path));
      const rowOf = new Map(manifest.map((m) => [m.path, m]));
      const merge = new TreeMerge(manifest, (p) => p.startsWith('b/'));
      // Each entry is asked about when the walk reaches it; added once `lag` later entries have been asked about.
      const waiting: Entry[] = [];
      source.forEach((entry, i) => {
        assert.equal(merge.rowAt(entry.path), rowOf.get(entry.path), `rowAt ${entry.path}`);
        waiting.push(entry);
        while (waiting.length > (lags[i] ?? 0)) merge.add(waiting.shift() as Entry);
      });
      for (const entry of waiting) merge.add(entry);
      const unknown = source.length > 2 ? [(source[2] as Entry).path] : [];
      assert.deepEqual(merge.finish(unknown), diffTrees(source, manifest, { hides: (p) => p.startsWith('b/'), unknown }));
    }), { numRuns: 500 });
  });

  test('property: with onUpsert, upserts come as their entries are added and finish holds only the deletions; sent as a pass sends them (upserts, deletions, then those that replace a directory), every path below a replaced directory is tombstoned first', () => {
    const segment = fc.constantFrom('a', 'b', 'a-x', 'é');
    const pathArb = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
    const treeArb = fc.uniqueArray(fc.record({ path: pathArb, leaf: fc.constantFrom<'file' | 'link'>('file', 'link') }), { maxLength: 15, selector: (r) => r.path }).map((specs) => {
      const all = new Set(specs.flatMap((r) => [...ancestorsOf(r.path), r.path]));
      const leafOf = new Map(specs.map((r) => [r.path, r.leaf]));
      return [...all].sort(compareTreeOrder).map((p) => ([...all].some((q) => q.startsWith(p + '/')) ? dir(p) : leafOf.get(p) === 'link' ? link(p) : file(p)));
    });
    fc.assert(fc.property(treeArb, treeArb, (source, old) => {
      const manifest = old.map(live);
      const streamed: Change[] = [];
      const merge = new TreeMerge(manifest, () => false, (change) => streamed.push(change));
      for (const entry of source) {
        const before = streamed.length;
        merge.add(entry);
        assert.ok(streamed.slice(before).every((c) => c.path === entry.path), 'an upsert comes with its own entry');
      }
      const deletions = merge.finish([]);
      assert.ok(deletions.every((c) => c.new === null), 'finish: deletions only');
      const sent = [...streamed.filter((c) => !replacesDirectory(c)), ...deletions, ...streamed.filter(replacesDirectory)];
      assert.deepEqual([...sent].sort((a, b) => compareTreeOrder(a.path, b.path)), diffTrees(source, manifest, keepAll).sort((a, b) => compareTreeOrder(a.path, b.path)));
      const at = new Map(sent.map((c, i) => [c.path, i]));
      for (const [i, c] of sent.entries()) {
        if (!replacesDirectory(c)) continue;
        for (const row of manifest) {
          if (isWithin(row.path, c.path) && row.path !== c.path) assert.ok((at.get(row.path) ?? -1) < i, `${row.path} tombstoned before ${c.path} replaces its directory`);
        }
      }
    }), { numRuns: 500 });
  });

  test('replacesDirectory: a live directory becoming anything else', () => {
    const cases: Array<[string, Change, boolean]> = [
      ['dir -> file', { path: 'a', old: live(dir('a')), new: file('a') }, true],
      ['dir -> symlink', { path: 'a', old: live(dir('a')), new: link('a') }, true],
      ['dir -> dir', { path: 'a', old: live(dir('a')), new: dir('a') }, false],
      ['tombstoned dir -> file', { path: 'a', old: tombstoned(dir('a')), new: file('a') }, false],
      ['file -> dir', { path: 'a', old: live(file('a')), new: dir('a') }, false],
      ['new file', { path: 'a', old: null, new: file('a') }, false],
      ['dir deleted', { path: 'a', old: live(dir('a')), new: null }, false],
    ];
    for (const [what, change, expected] of cases) assert.equal(replacesDirectory(change), expected, what);
  });

  test('close stops reading the manifest (a stream over a database must be closed)', () => {
    let closed = false;
    function* rows(): Generator<ManifestEntry> {
      try {
        yield live(file('a'));
        yield live(file('b'));
      } finally {
        closed = true;
      }
    }
    const merge = new TreeMerge(rows(), () => false);
    merge.rowAt('a');
    merge.close();
    assert.equal(closed, true);
  });
});

describe('actionOf', () => {
  const cases: ReadonlyArray<[string, Change, ReturnType<typeof actionOf>]> = [
    ['deleted on the source', { path: 'f', old: live(file('f')), new: null }, 'delete'],
    ['new dir', { path: 'd', old: null, new: dir('d') }, 'mkdir'],
    ['dir over a file', { path: 'd', old: live(file('d')), new: dir('d') }, 'mkdir'],
    ['new symlink', { path: 'l', old: null, new: link('l') }, 'symlink'],
    ['symlink over a dir', { path: 'l', old: live(dir('l')), new: link('l') }, 'symlink'],
    ['new file', { path: 'f', old: null, new: file('f') }, 'transfer'],
    ['same hash and size', { path: 'f', old: live(file('f')), new: file('f', { mode: 0o600 }) }, 'setMeta'],
    ['same hash and size over a tombstone', { path: 'f', old: tombstoned(file('f')), new: file('f') }, 'setMeta'],
    ['same hash and size but damaged', { path: 'f', old: damaged(file('f')), new: file('f', { mode: 0o600 }) }, 'transfer'],
    ['other hash', { path: 'f', old: live(file('f')), new: file('f', { hash: HASH_B }) }, 'transfer'],
    ['same hash, other size', { path: 'f', old: live(file('f')), new: file('f', { size: 9 }) }, 'transfer'],
    ['file over a dir', { path: 'f', old: live(dir('f')), new: file('f') }, 'transfer'],
    ['file over a symlink', { path: 'f', old: live(link('f')), new: file('f') }, 'transfer'],
  ];
  for (const [name, change, action] of cases) {
    test(`${name}: ${action}`, () => {
      assert.equal(actionOf(change), action);
    });
  }
});
