/**
 * manifest/manifest + manifest/db (real SQLite in a temp dir): born times across re-records,
 * tombstones and kind changes; first deletedAt kept; remove and removeTree boundaries; counts;
 * state values; entries() order; and refusing a foreign or corrupt file instead of replacing it.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Entry, ManifestEntry } from '../../../src/entry.js';
import { WarmsyncError } from '../../../src/errors.js';
import { openDatabase } from '../../../src/manifest/db.js';
import { MANIFEST_FILE, Manifest } from '../../../src/manifest/manifest.js';
import { toWireEntry } from '../../../src/protocol/messages.js';

const T = 1_764_177_919_231;
/** The newest schema version: the highest numbered migration in src/manifest/sql/. */
const LATEST_SCHEMA = Math.max(...readdirSync(new URL('../../../src/manifest/sql/', import.meta.url))
  .filter((n) => /^\d{3}-.+\.sql$/.test(n)).map((n) => Number(n.slice(0, 3))));
const NOW = T + 3_600_000;

const file = (p: string, over: Partial<Entry> = {}): Entry =>
  ({ path: p, kind: 'file', size: 3, mtimeMs: T, mode: 0o644, hash: 'aaaaaaaaaaaaaaaa', target: null, ...over });
const dir = (p: string, over: Partial<Entry> = {}): Entry =>
  ({ path: p, kind: 'dir', size: 0, mtimeMs: T, mode: 0o755, hash: null, target: null, ...over });
const link = (p: string, target = 'x', over: Partial<Entry> = {}): Entry =>
  ({ path: p, kind: 'symlink', size: Buffer.byteLength(target), mtimeMs: T, mode: 0o777, hash: null, target, ...over });

let tmp: string;
let counter = 0;
const open: Manifest[] = [];
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-manifest-'));
});
after(async () => {
  for (const m of open) m.close();
  await rm(tmp, { recursive: true, force: true });
});

function freshStateDir(): string {
  return path.join(tmp, `state-${counter++}`);
}

/**
 * A manifest whose receiver already holds a watermark far ahead, so born = the entry mtime (the
 * watermark bound on born times has its own cases below).
 */
function freshManifest(): Manifest {
  const m = Manifest.open(freshStateDir());
  m.setState('watermark', Number.MAX_SAFE_INTEGER);
  open.push(m);
  return m;
}

/** Records `entries` with `now` and returns the manifest. */
function manifestWith(entries: readonly Entry[]): Manifest {
  const m = freshManifest();
  for (const e of entries) m.recordPresent(e, NOW);
  return m;
}

const paths = (m: Manifest): string[] => [...m.entries()].map((e) => e.path);

describe('Manifest: opening', () => {
  test(`creates the state dir and ${MANIFEST_FILE} with the warmsync identity, WAL and the latest schema`, () => {
    const stateDir = path.join(freshStateDir(), 'nested');
    const m = Manifest.open(stateDir);
    m.close();
    assert.equal(m.file, path.join(stateDir, MANIFEST_FILE));
    const db = new Database(m.file, { readonly: true });
    try {
      assert.equal(db.pragma('application_id', { simple: true }), 0x77736e63);
      assert.equal(db.pragma('user_version', { simple: true }), LATEST_SCHEMA);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
      assert.ok(tables.includes('entries') && tables.includes('state'), JSON.stringify(tables));
      const sql = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'entries'").pluck().get() as string;
      assert.match(sql, /STRICT, WITHOUT ROWID/);
    } finally {
      db.close();
    }
  });

  test('reopening keeps the rows', () => {
    const stateDir = freshStateDir();
    const a = Manifest.open(stateDir);
    a.recordPresent(file('f'), NOW);
    a.close();
    const b = Manifest.open(stateDir);
    open.push(b);
    assert.equal(b.get('f')?.hash, 'aaaaaaaaaaaaaaaa');
  });

  test('an empty (0-byte) file is taken as a new manifest', async () => {
    const stateDir = freshStateDir();
    await mkdir(stateDir);
    writeFileSync(path.join(stateDir, MANIFEST_FILE), '');
    const m = Manifest.open(stateDir);
    open.push(m);
    assert.deepEqual(paths(m), []);
  });

  const refused: ReadonlyArray<[string, string, (file: string) => void, RegExp]> = [
    [
      'a foreign SQLite file (another table, application_id 0)', 'MANIFEST_FOREIGN',
      (f) => {
        const db = new Database(f);
        db.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES (\'alice\')');
        db.close();
      },
      /is not a warmsync manifest \(application_id 0\)/,
    ],
    [
      'a foreign SQLite file with another application_id and no tables', 'MANIFEST_FOREIGN',
      (f) => {
        const db = new Database(f);
        db.pragma('application_id = 1234');
        db.close();
      },
      /application_id 1234/,
    ],
    [
      'a garbage file', 'MANIFEST_CORRUPT',
      (f) => writeFileSync(f, Buffer.alloc(8192, 'this is not a database\n')),
      /is unreadable/,
    ],
    [
      'a manifest with a newer schema', 'MANIFEST_NEWER',
      (f) => {
        const db = new Database(f);
        db.pragma('application_id = 2004053603');
        db.pragma('user_version = 99');
        db.exec('CREATE TABLE entries (path TEXT)');
        db.close();
      },
      new RegExp(`schema version 99, newer than this warmsync understands \\(${LATEST_SCHEMA}\\)`),
    ],
  ];
  for (const [name, code, setup, message] of refused) {
    test(`${name}: WarmsyncError ${code}, the file left as it was`, async () => {
      const stateDir = freshStateDir();
      await mkdir(stateDir);
      const f = path.join(stateDir, MANIFEST_FILE);
      setup(f);
      const bytes = readFileSync(f);
      assert.throws(() => Manifest.open(stateDir), (err: unknown) => {
        assert.ok(err instanceof WarmsyncError);
        assert.equal(err.code, code);
        assert.match(err.message, message);
        assert.ok(err.message.includes(f), err.message);
        return true;
      });
      assert.equal(existsSync(`${f}-wal`), false, 'no WAL left behind');
      if (code === 'MANIFEST_NEWER') {
        // Ours, so the journal mode may be switched to WAL before the version check; the schema is kept.
        const db = new Database(f, { readonly: true });
        try {
          assert.equal(db.pragma('user_version', { simple: true }), 99);
        } finally {
          db.close();
        }
      } else {
        assert.deepEqual(readFileSync(f), bytes, 'not modified');
      }
    });
  }

  test('the foreign file keeps its table and gains none of ours', async () => {
    const stateDir = freshStateDir();
    await mkdir(stateDir);
    const f = path.join(stateDir, MANIFEST_FILE);
    const db = new Database(f);
    db.exec('CREATE TABLE other (x)');
    db.close();
    assert.throws(() => Manifest.open(stateDir), { code: 'MANIFEST_FOREIGN' });
    const check = new Database(f, { readonly: true });
    try {
      assert.deepEqual(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all(), ['other']);
    } finally {
      check.close();
    }
  });

  test('readonly open of a missing file: MANIFEST_OPEN, nothing created', () => {
    const f = path.join(freshStateDir(), MANIFEST_FILE);
    assert.throws(() => openDatabase(f, { readonly: true }), { name: 'WarmsyncError', code: 'MANIFEST_OPEN' });
    assert.equal(existsSync(f), false);
  });
});

describe('Manifest: born is bounded by the watermark held at first record', () => {
  const cases: ReadonlyArray<[string, number | null, number]> = [
    ['no watermark yet (first sync): born 0, never born-after', null, 0],
    ['watermark before the mtime: born = the watermark', T - 1000, T - 1000],
    ['watermark after the mtime: born = the mtime', T + 1000, T],
  ];
  for (const [name, watermark, born] of cases) {
    test(name, () => {
      const m = Manifest.open(freshStateDir());
      open.push(m);
      if (watermark !== null) m.setState('watermark', watermark);
      m.recordPresent(file('p', { mtimeMs: T }), NOW);
      assert.equal(m.get('p')?.bornMs, born);
      m.setState('watermark', T + 5000);
      m.recordPresent(file('p', { mtimeMs: T + 10 }), NOW);
      assert.equal(m.get('p')?.bornMs, born, 'a re-record keeps born');
    });
  }
});

describe('Manifest: recordPresent and born times', () => {
  test('a new row: born = the entry mtime, live, not damaged, all fields kept', () => {
    const m = freshManifest();
    const cases: Entry[] = [file('f', { mode: 0o600, size: 12 }), dir('d', { mtimeMs: T - 5 }), link('l', '../target', { mtimeMs: T + 5 })];
    for (const e of cases) {
      m.recordPresent(e, NOW);
      assert.deepEqual(m.get(e.path), { ...e, bornMs: e.mtimeMs, deletedAt: null, damaged: false } satisfies ManifestEntry);
    }
  });

  interface BornCase {
    readonly name: string;
    /** Steps applied in order to path "p"; each record uses its own entry. */
    readonly steps: ReadonlyArray<{ record: Entry } | { tombstone: number } | { remove: true } | { damage: true }>;
    readonly bornMs: number;
    readonly deletedAt?: number | null;
  }
  const cases: readonly BornCase[] = [
    { name: 'first record', steps: [{ record: file('p') }], bornMs: T },
    { name: 're-record, same kind, new content: born kept', steps: [{ record: file('p') }, { record: file('p', { mtimeMs: T + 10, hash: 'bbbbbbbbbbbbbbbb' }) }], bornMs: T },
    { name: 're-record, older mtime: born kept', steps: [{ record: file('p') }, { record: file('p', { mtimeMs: T - 10 }) }], bornMs: T },
    {
      name: 'tombstone then re-record (cancelled tombstone): born kept, live again',
      steps: [{ record: file('p') }, { tombstone: NOW }, { record: file('p', { mtimeMs: T + 20 }) }],
      bornMs: T,
      deletedAt: null,
    },
    { name: 'damaged then re-record: born kept', steps: [{ record: file('p') }, { damage: true }, { record: file('p', { mtimeMs: T + 20 }) }], bornMs: T },
    { name: 'file -> dir: born reset', steps: [{ record: file('p') }, { record: dir('p', { mtimeMs: T + 30 }) }], bornMs: T + 30 },
    { name: 'dir -> symlink: born reset', steps: [{ record: dir('p') }, { record: link('p', 'x', { mtimeMs: T + 40 }) }], bornMs: T + 40 },
    {
      name: 'tombstoned file comes back as a dir: born reset',
      steps: [{ record: file('p') }, { tombstone: NOW }, { record: dir('p', { mtimeMs: T + 50 }) }],
      bornMs: T + 50,
      deletedAt: null,
    },
    { name: 'removed then recorded: a new life', steps: [{ record: file('p') }, { remove: true }, { record: file('p', { mtimeMs: T + 60 }) }], bornMs: T + 60 },
  ];
  for (const c of cases) {
    test(`${c.name}: born ${c.bornMs - T >= 0 ? '+' : ''}${c.bornMs - T} ms`, () => {
      const m = freshManifest();
      let last: Entry | undefined;
      for (const step of c.steps) {
        if ('record' in step) {
          m.recordPresent(step.record, NOW);
          last = step.record;
        } else if ('tombstone' in step) {
          m.recordTombstone('p', step.tombstone, NOW);
        } else if ('remove' in step) {
          m.remove('p');
        } else {
          m.markDamaged('p');
        }
      }
      const row = m.get('p');
      assert.ok(row && last);
      assert.equal(row.bornMs, c.bornMs);
      assert.equal(row.deletedAt, c.deletedAt ?? null);
      assert.equal(row.damaged, false, 'a record clears damaged');
      assert.deepEqual({ ...row, bornMs: 0 }, { ...last, bornMs: 0, deletedAt: null, damaged: false });
    });
  }
});

describe('Manifest: tombstones, damage and removal', () => {
  test('recordTombstone sets deletedAt and keeps the first one', () => {
    const m = manifestWith([file('f')]);
    m.recordTombstone('f', NOW + 1, NOW + 1);
    m.recordTombstone('f', NOW + 2, NOW + 2);
    const row = m.get('f');
    assert.equal(row?.deletedAt, NOW + 1);
    assert.equal(row?.bornMs, T);
    assert.equal(row?.hash, 'aaaaaaaaaaaaaaaa', 'the row is otherwise kept');
  });

  test('recordTombstone of an unknown path records nothing', () => {
    const m = freshManifest();
    m.recordTombstone('ghost', NOW, NOW);
    assert.equal(m.get('ghost'), undefined);
    assert.deepEqual(paths(m), []);
  });

  test('markDamaged flags one row', () => {
    const m = manifestWith([file('f'), file('g')]);
    m.markDamaged('f');
    assert.equal(m.get('f')?.damaged, true);
    assert.equal(m.get('g')?.damaged, false);
  });

  test('remove drops one row only (not its children)', () => {
    const m = manifestWith([dir('a'), file('a/b')]);
    m.remove('a');
    assert.deepEqual(paths(m), ['a/b']);
  });

  const treeRows = ['a', 'a/b', 'a/b/c', 'a-b', 'a.b', 'ab', 'a0', 'b', 'b/a', '%', '%/x', '%x', '_', 'x_y', 'xay'];
  const treeCases: ReadonlyArray<[string, string[]]> = [
    ['a', ['a', 'a/b', 'a/b/c']],
    ['a/b', ['a/b', 'a/b/c']],
    ['a/b/c', ['a/b/c']],
    ['b', ['b', 'b/a']],
    ['%', ['%', '%/x']],
    ['_', ['_']],
    ['x_y', ['x_y']],
    ['missing', []],
  ];
  for (const [dirPath, removed] of treeCases) {
    test(`removeTree(${JSON.stringify(dirPath)}) removes ${JSON.stringify(removed)} and nothing else`, () => {
      const m = manifestWith(treeRows.map((p) => file(p)));
      m.removeTree(dirPath);
      assert.deepEqual(paths(m), treeRows.filter((p) => !removed.includes(p)).sort());
    });
  }

  test('removeTree removes tombstones below the dir too', () => {
    const m = manifestWith([dir('a'), file('a/b')]);
    m.recordTombstone('a/b', NOW, NOW);
    m.removeTree('a');
    assert.deepEqual(paths(m), []);
  });
});

describe('Manifest: recordInstalling (before a change reaches the disk)', () => {
  test('an existing row is only marked damaged; a new path gets the entry it will have, damaged; the record clears the mark', async () => {
    const m = manifestWith([file('f')]);
    m.recordTombstone('f', NOW, NOW);
    await m.recordInstalling([file('f', { size: 9, hash: 'bbbbbbbbbbbbbbbb' }), file('new', { size: 5 })], NOW + 1);
    const old = m.get('f');
    assert.deepEqual([old?.damaged, old?.size, old?.hash, old?.deletedAt], [true, 3, 'aaaaaaaaaaaaaaaa', NOW], 'the row keeps what is recorded, marked');
    const fresh = m.get('new');
    assert.deepEqual([fresh?.damaged, fresh?.size, fresh?.deletedAt, fresh?.bornMs], [true, 5, null, T]);
    m.recordPresent(file('new', { size: 5 }), NOW + 2);
    assert.equal(m.get('new')?.damaged, false);
  });
});

describe('Manifest: wireEntriesJson (the manifest as the receiver sends it)', () => {
  test('each row is exactly toWireEntry of the row, in path order, across batches, owners and odd paths included', () => {
    const m = manifestWith([
      file('a/\u0001\t"quote\\back'), file('a/é/日本/🙂'), dir('a'), link('a/l', '../x y'),
      { path: 'fifo', kind: 'special', size: 0, mtimeMs: T, mode: 0o600, hash: null, target: 'fifo' },
      file('owned', { owner: { uid: 1000, gid: 1001, user: 'alice', group: null } }),
      file('numeric', { owner: { uid: 0, gid: 0, user: null, group: null } }),
      ...Array.from({ length: 7 }, (_, i) => file(`z/${i}`)),
    ]);
    m.recordTombstone('z/3', NOW, NOW);
    m.markDamaged('z/4');
    const rows = [...m.entries()];
    const fromSql = [...m.wireEntriesJson(3)].map((json) => JSON.parse(json) as unknown);
    assert.deepEqual(fromSql, rows.map((e) => toWireEntry(e)));
    assert.equal(fromSql.length, 14);
  });
});

describe('Manifest: counts', () => {
  test('an empty manifest', () => {
    assert.deepEqual(freshManifest().counts(), { files: 0, bytes: 0, dirs: 0, symlinks: 0, tombstones: 0, oldestTombstone: null });
  });

  test('live rows by kind, bytes of live files, tombstones and the oldest deletedAt', () => {
    const m = manifestWith([
      dir('d'), file('d/a', { size: 10 }), file('d/b', { size: 32 }), file('d/gone', { size: 1000 }), file('d/gone2', { size: 7 }),
      link('l'), link('gone-link'), dir('gone-dir'),
    ]);
    m.recordTombstone('d/gone', NOW + 300, NOW);
    m.recordTombstone('d/gone2', NOW + 100, NOW);
    m.recordTombstone('gone-link', NOW + 200, NOW);
    m.recordTombstone('gone-dir', NOW + 400, NOW);
    m.markDamaged('d/a');
    assert.deepEqual(m.counts(), { files: 2, bytes: 42, dirs: 1, symlinks: 1, tombstones: 4, oldestTombstone: NOW + 100 });
  });
});

describe('Manifest: state', () => {
  test('missing keys read as null; numbers round-trip; strings and null read as null; set overwrites', () => {
    const m = freshManifest();
    assert.equal(m.getNumber('snapshotTime'), null);
    m.setState('snapshotTime', T);
    assert.equal(m.getNumber('snapshotTime'), T);
    m.setState('snapshotTime', T + 1);
    assert.equal(m.getNumber('snapshotTime'), T + 1);
    m.setState('watermark', 'not a number');
    assert.equal(m.getNumber('watermark'), null);
    m.setState('lastContact', null);
    assert.equal(m.getNumber('lastContact'), null);
    m.setState('receiverPid', 0);
    assert.equal(m.getNumber('receiverPid'), 0);
    assert.equal(m.getNumber('snapshotTime'), T + 1, 'keys are independent');
  });

  test('state survives reopening', () => {
    const stateDir = freshStateDir();
    const a = Manifest.open(stateDir);
    a.setState('watermark', T);
    a.close();
    const b = Manifest.open(stateDir);
    open.push(b);
    assert.equal(b.getNumber('watermark'), T);
  });
});

describe('Manifest: entries()', () => {
  test('every row, tombstones included, in path (UTF-8 byte) order, whatever the insert order', () => {
    const inserted = ['b', 'a/b', 'a-x', 'a', 'ab', 'é', 'Z', 'a/b/c', '😀', '\uFFFD', '.h'];
    const m = manifestWith(inserted.map((p) => file(p)));
    m.recordTombstone('a-x', NOW, NOW);
    const byteOrder = [...inserted].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual(paths(m), byteOrder);
    assert.deepEqual(paths(m), ['.h', 'Z', 'a', 'a-x', 'a/b', 'a/b/c', 'ab', 'b', 'é', '\uFFFD', '😀']);
    assert.equal([...m.entries()].find((e) => e.path === 'a-x')?.deletedAt, NOW);
  });

  test('rows come back as ManifestEntry objects', () => {
    const m = manifestWith([link('l', 't')]);
    assert.deepEqual([...m.entries()], [{ ...link('l', 't'), bornMs: T, deletedAt: null, damaged: false }]);
  });
});

describe('Manifest: owners and special files (migration 003)', () => {
  test('an owner and a special file round-trip; a row without owner has none', () => {
    const owner = { uid: 1234, gid: 4321, user: 'artifactory', group: null };
    const m = manifestWith([
      file('f', { owner }),
      { path: 'p', kind: 'special', size: 0, mtimeMs: T, mode: 0o620, hash: null, target: 'char 136:70000', owner: { uid: 0, gid: 0, user: 'root', group: 'root' } },
      dir('d'),
    ]);
    assert.deepEqual(m.get('f')?.owner, owner);
    assert.deepEqual([m.get('p')?.kind, m.get('p')?.target, m.get('p')?.owner?.group], ['special', 'char 136:70000', 'root']);
    assert.equal(m.get('d')?.owner, undefined);
    m.recordPresent(file('f', { owner: null }), NOW);
    assert.equal(m.get('f')?.owner, undefined, 'recorded again without an owner: none');
    m.logRemoval({ path: 'p', kind: 'special', reason: 'test', at: NOW, snapshotTime: null, quarantine: null });
  });

  test('a version-2 manifest keeps its rows (owner unknown) and tombstones across the migration', () => {
    const stateDir = freshStateDir();
    const old = Manifest.open(stateDir);
    old.recordPresent(file('keep'), NOW);
    old.recordPresent(file('gone'), NOW);
    old.recordTombstone('gone', T, NOW);
    old.close();
    // Back to schema 2, as a receiver of the previous release left it.
    const db = new Database(path.join(stateDir, MANIFEST_FILE));
    db.exec(`CREATE TABLE e2 AS SELECT path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged, recorded_at FROM entries;
      DROP TABLE entries; ALTER TABLE e2 RENAME TO entries;`);
    db.pragma('user_version = 2');
    db.close();
    const m = Manifest.open(stateDir);
    open.push(m);
    assert.equal(m.db.pragma('user_version', { simple: true }), LATEST_SCHEMA);
    assert.deepEqual([m.get('keep')?.hash, m.get('keep')?.owner], ['aaaaaaaaaaaaaaaa', undefined]);
    assert.equal(m.get('gone')?.deletedAt, T);
  });
});
