/**
 * agent/mirror: the agent's copy of a standby's manifest in a temporary SQLite database. Rows
 * come back as they went in (owners shared), in tree order, the rows at and below a path are
 * exactly those isWithin says, and a full pass's merge (diffSortedTrees) over it plans what
 * diffTrees plans over the same rows held in memory.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Mirror } from '../../../src/agent/mirror.js';
import type { Entry, ManifestEntry } from '../../../src/entry.js';
import { TreeMerge, diffSortedTrees, diffTrees } from '../../../src/plan/diff.js';
import { WarmsyncError } from '../../../src/errors.js';
import { compareTreeOrder, isWithin } from '../../../src/relpath.js';

const T = 1_764_177_919_231;
const OWNER = { uid: 1000, gid: 1000, user: 'app', group: 'app' };
const row = (path: string, over: Partial<ManifestEntry> = {}): ManifestEntry => ({
  path, kind: 'file', size: 3, mtimeMs: T, mode: 0o644, hash: 'aaaaaaaaaaaaaaaa', target: null,
  bornMs: T, deletedAt: null, damaged: false, owner: OWNER, ...over,
});

function withMirror(fn: (m: Mirror) => void): void {
  const m = Mirror.open();
  try {
    fn(m);
  } finally {
    m.close();
  }
}

test('a row reads back field for field; a path set again is replaced; a manifest row without bornMs reads 0', () => {
  withMirror((m) => {
    const link = row('a/l', { kind: 'symlink', size: 5, hash: null, target: 'x/y/z', mode: 0o777, owner: null, deletedAt: T + 9, damaged: true });
    m.setAll([row('a', { kind: 'dir', size: 0, hash: null }), link, row('a/f')]);
    assert.deepEqual(m.get('a/l'), link);
    assert.deepEqual(m.get('a/f'), row('a/f'));
    assert.equal(m.get('a/f')?.owner, m.get('a')?.owner, 'one owner object for equal owners');
    // Same ids, other names (or none): each its own owner.
    const unnamed = { uid: 1000, gid: 1000, user: null, group: null };
    const renamed = { uid: 1000, gid: 1000, user: 'app', group: 'staff' };
    m.setAll([row('o/1', { owner: unnamed }), row('o/2', { owner: renamed }), row('o/3', { owner: { ...OWNER } })]);
    assert.deepEqual(m.get('o/1')?.owner, unnamed);
    assert.deepEqual(m.get('o/2')?.owner, renamed);
    assert.equal(m.get('o/3')?.owner, m.get('a')?.owner);
    assert.equal(m.get('nope'), undefined);
    assert.equal(m.has('a'), true);
    assert.equal(m.has('a/'), false);
    m.set(row('a/f', { size: 7, hash: 'bbbbbbbbbbbbbbbb' }));
    assert.equal(m.get('a/f')?.size, 7);
    const { bornMs: _, ...wire } = row('w');
    m.set(wire);
    assert.equal(m.get('w')?.bornMs, 0);
    assert.equal(m.liveFileCount(), 5, 'a/f, o/1-3 and w: a directory, a symlink and a tombstone are not live files');
  });
});

test('rows come back in tree order, whatever order they went in (names by code point, "/" first)', () => {
  const paths = ['b', 'a-x', 'a/b/c', 'a', 'a/b', 'a.y', 'a/c', 'a/\u{1F600}', 'a/\uE000', 'é'];
  withMirror((m) => {
    m.setAll(paths.map((p) => row(p)));
    assert.deepEqual([...m.inTreeOrder()].map((r) => r.path), [...paths].sort(compareTreeOrder));
  });
});

test('each path gets its own row and every row below it, and nothing that only shares a prefix', () => {
  withMirror((m) => {
    m.setAll(['a', 'a/b', 'a/b/f', 'a/b-x', 'a/b-x/g', 'a/c', 'ab', 'ab/h', 'z/y/x'].map((p) => row(p)));
    const found = m.rowsAtOrBelow(['a', 'a/b', 'z/y', 'missing', 'a']);
    const pathsOf = (p: string): string[] => (found.get(p) ?? []).map((r) => r.path);
    assert.deepEqual([...found.keys()], ['a', 'a/b', 'z/y', 'missing']);
    assert.deepEqual(pathsOf('a'), ['a', 'a/b', 'a/b/f', 'a/b-x', 'a/b-x/g', 'a/c']);
    assert.deepEqual(pathsOf('a/b'), ['a/b', 'a/b/f']);
    assert.deepEqual(pathsOf('z/y'), ['z/y/x'], 'rows below a path the standby has no row for');
    assert.deepEqual(pathsOf('missing'), []);
  });
});

// Names chosen to sit on each side of "/" and of each other in byte order, and high and astral characters.
const name = fc.constantFrom('a', 'b', 'a-b', 'a.b', 'ab', 'b0', ' ', '\u0001', 'é', '\uE000', '\u{1F600}');
const relPath = fc.array(name, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));

test('property: the rows at or below a path are those isWithin says, in tree order', () => {
  fc.assert(fc.property(fc.uniqueArray(relPath, { maxLength: 60 }), fc.array(relPath, { maxLength: 6 }), (paths, asked) => {
    withMirror((m) => {
      m.setAll(paths.map((p) => row(p)));
      const found = m.rowsAtOrBelow(asked);
      for (const dir of asked) {
        assert.deepEqual(found.get(dir)?.map((r) => r.path), paths.filter((p) => isWithin(p, dir)).sort(compareTreeOrder), dir);
      }
    });
  }), { numRuns: 200 });
});

test('property: rows set one at a time (written later, together) are what every read sees, the last one set for a path winning', () => {
  const kind = fc.constantFrom<Entry['kind']>('file', 'dir');
  // Few paths, so that one is often set again before a read.
  const spec = fc.record({ path: fc.constantFrom('a', 'a/b', 'a/b/c', 'a-b', 'a/c', 'b'), kind, size: fc.nat(9), deleted: fc.boolean() });
  const op = fc.oneof(
    fc.record({ op: fc.constant('set' as const), rows: spec.map((r) => [r]) }),
    fc.record({ op: fc.constant('setAll' as const), rows: fc.array(spec, { maxLength: 4 }) }),
    fc.record({ op: fc.constantFrom('get' as const, 'has' as const, 'below' as const, 'all' as const, 'count' as const), rows: spec.map((r) => [r]) }),
  );
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
    const model = new Map<string, ManifestEntry>();
    const inOrder = (): ManifestEntry[] => [...model.values()].sort((a, b) => compareTreeOrder(a.path, b.path));
    withMirror((m) => {
      for (const { op: what, rows: specs } of ops) {
        const rows = specs.map((r) => row(r.path, { kind: r.kind, size: r.size, hash: r.kind === 'dir' ? null : 'aaaaaaaaaaaaaaaa', deletedAt: r.deleted ? T + 1 : null }));
        const path = rows[0]?.path ?? '';
        if (what === 'set' || what === 'setAll') {
          if (what === 'set') m.set(rows[0] as ManifestEntry);
          else m.setAll(rows);
          for (const r of rows) model.set(r.path, r);
        } else if (what === 'get') assert.deepEqual(m.get(path), model.get(path));
        else if (what === 'has') assert.equal(m.has(path), model.has(path));
        else if (what === 'below') assert.deepEqual(m.rowsAtOrBelow([path]).get(path), inOrder().filter((r) => isWithin(r.path, path)));
        else if (what === 'all') assert.deepEqual([...m.inTreeOrder()], inOrder());
        else assert.equal(m.liveFileCount(), inOrder().filter((r) => r.kind === 'file' && r.deletedAt === null).length);
      }
      assert.deepEqual([...m.inTreeOrder()], inOrder());
    });
  }), { numRuns: 300 });
});

test('rows set one at a time past the number that may wait are all kept, in order, and a closed mirror refuses them', () => {
  withMirror((m) => {
    const paths = Array.from({ length: 10_000 }, (_, i) => `d${i % 7}/f${i}`);
    for (const p of paths) m.set(row(p, { size: 1 }));
    for (const p of paths.slice(0, 5_000)) m.set(row(p, { size: 2 }));
    const all = [...m.inTreeOrder()];
    assert.deepEqual(all.map((r) => r.path), [...paths].sort(compareTreeOrder));
    assert.equal(all.filter((r) => r.size === 2).length, 5_000);
    assert.equal(m.get('d0/f0')?.size, 2);
    assert.equal(m.get('d2/f9998')?.size, 1);
  });
  const closed = Mirror.open();
  closed.close();
  assert.throws(() => closed.set(row('a')), (err) => err instanceof WarmsyncError && err.code === 'MIRROR_FAILED');
});

test('property: a full pass\'s merge over the mirror plans exactly what diffTrees plans over the same rows in memory', () => {
  const kind = fc.constantFrom<Entry['kind']>('file', 'dir', 'symlink');
  const entry = fc.record({ path: relPath, kind, size: fc.nat(3), deleted: fc.boolean(), damaged: fc.boolean() });
  fc.assert(fc.property(fc.array(entry, { maxLength: 40 }), fc.array(entry, { maxLength: 40 }), (sourceSpec, rowSpec) => {
    const source: Entry[] = [...new Map(sourceSpec.map((s) => [s.path, row(s.path, { kind: s.kind, size: s.size })])).values()]
      .map(({ bornMs: _b, deletedAt: _d, damaged: _x, ...e }) => e);
    const rows = rowSpec.map((s) => row(s.path, { kind: s.kind, size: s.size, deletedAt: s.deleted ? T + 1 : null, damaged: s.damaged }));
    const options = { hides: (p: string): boolean => p.startsWith('b0'), unknown: source.length > 0 ? [(source[0] as Entry).path] : [] };
    withMirror((m) => {
      m.setAll(rows);
      const merged = diffSortedTrees([...source].sort((a, b) => compareTreeOrder(a.path, b.path)), m.inTreeOrder(), options);
      assert.deepEqual(merged, diffTrees(source, rows, options));
    });
  }), { numRuns: 300 });
});

test('diffSortedTrees refuses input out of tree order (a caller\'s bug), rather than planning deletions from it', () => {
  const files = ['a', 'b'].map((p) => row(p));
  assert.throws(() => diffSortedTrees([...files].reverse(), [], { hides: () => false }), /source is not in tree order/);
  assert.throws(() => diffSortedTrees([], [...files].reverse(), { hides: () => false }), /manifest is not in tree order/);
});

test('a merge stopped half-way (a scan failed) frees the mirror: it can be read again, and closed', () => {
  withMirror((m) => {
    m.setAll(['a', 'b', 'c'].map((p) => row(p)));
    const merge = new TreeMerge(m.inTreeOrder(), () => false);
    assert.equal(merge.rowAt('b')?.path, 'b');
    merge.close();
    assert.equal(m.get('c')?.path, 'c');
  });
});

test('rows set and read while inTreeOrder runs (a full pass recording what the receiver applied): written between its pages; rows behind it are not read again, rows ahead come in their turn', () => {
  withMirror((m) => {
    const paths = Array.from({ length: 5000 }, (_, i) => `p/${String(i).padStart(5, '0')}`);
    m.setAll(paths.map((p) => row(p)));
    const seen: string[] = [];
    let i = 0;
    for (const r of m.inTreeOrder()) {
      seen.push(r.path);
      // Behind: the row just read, replaced (past PENDING_MAX, so written mid-iteration). Ahead: a new path.
      m.set(row(r.path, { size: 4 }));
      if (i === 100) m.set(row('p/02500-new'));
      if (i % 1000 === 0) assert.equal(m.get(r.path)?.size, 4, 'a read mid-iteration sees the rows set');
      i++;
    }
    assert.deepEqual(seen, [...paths, 'p/02500-new'].sort(compareTreeOrder));
    assert.ok([...m.inTreeOrder()].every((r) => r.size === 4 || r.path === 'p/02500-new'));
  });
});

test('a failure of the database is MIRROR_FAILED, naming what failed and where SQLite keeps it', () => {
  const m = Mirror.open();
  m.close();
  assert.throws(() => m.get('a'), (err) => err instanceof WarmsyncError && err.code === 'MIRROR_FAILED'
    && /temporary SQLite file in \$SQLITE_TMPDIR, \$TMPDIR or \/var\/tmp\) failed: .*not open/.test(err.message));
  assert.throws(() => m.setAll([row('a')]), (err) => err instanceof WarmsyncError && err.code === 'MIRROR_FAILED');
});

test('after close, the mirror says so', () => {
  const m = Mirror.open();
  assert.equal(m.isOpen, true);
  m.close();
  assert.equal(m.isOpen, false);
  m.close(); // twice is harmless
});
