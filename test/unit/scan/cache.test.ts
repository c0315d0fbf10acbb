// cache.ts: schema and pragmas, lookup semantics, the cursor a full scan reads in tree order, atomic
// bulk writes, forgetting, re-keying a version 1 cache, and rebuilding a corrupt or foreign cache
// file instead of stopping the agent.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { WarmsyncError } from '../../../src/errors.js';
import { compareTreeOrder } from '../../../src/relpath.js';
import { AgentCache, agentCachePath, type CacheRow } from '../../../src/scan/cache.js';

let tmp: string;
let counter = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-cache-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function freshFile(): string {
  return path.join(tmp, `cache-${counter++}.sqlite`);
}

const row = (p: string, over: Partial<CacheRow> = {}): CacheRow =>
  ({ path: p, size: 10, mtimeMs: 1_700_000_000_123, ino: 42, hash: '0123456789abcdef', ...over });

describe('AgentCache: schema', () => {
  it('lives at <stateDir>/agent-cache.sqlite', () => {
    assert.equal(agentCachePath('/srv/root/.warmsync'), '/srv/root/.warmsync/agent-cache.sqlite');
  });

  it('creates a WAL database with user_version 2 and a STRICT files table keyed in tree order', () => {
    const file = freshFile();
    const cache = AgentCache.open(file);
    assert.equal(cache.movedAside, null);
    cache.close();
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), 2);
      const sql = db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'files'").pluck().get() as string;
      assert.match(sql, /STRICT/);
      const cols = db.prepare('SELECT name, type, pk FROM pragma_table_info(?)').all('files');
      assert.deepEqual(cols, [
        { name: 'key', type: 'BLOB', pk: 1 },
        { name: 'path', type: 'TEXT', pk: 0 },
        { name: 'size', type: 'INTEGER', pk: 0 },
        { name: 'mtime_ms', type: 'INTEGER', pk: 0 },
        { name: 'ino', type: 'INTEGER', pk: 0 },
        { name: 'hash', type: 'TEXT', pk: 0 },
      ]);
    } finally {
      db.close();
    }
  });

  it('a version 1 cache (keyed by path) is re-keyed with its hashes kept, not rebuilt', () => {
    const file = freshFile();
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ms INTEGER NOT NULL, ino INTEGER NOT NULL, hash TEXT NOT NULL) STRICT, WITHOUT ROWID');
    const insert = db.prepare('INSERT INTO files VALUES (?, ?, ?, ?, ?)');
    for (const p of ['a-x', 'a/b', 'a', 'z']) insert.run(p, 10, 1_700_000_000_123, 42, '0123456789abcdef');
    db.pragma('user_version = 1');
    db.close();
    const cache = AgentCache.open(file);
    try {
      assert.equal(cache.movedAside, null);
      assert.equal(cache.lookup('a/b', 10, 1_700_000_000_123, 42), '0123456789abcdef');
      const cursor = cache.readInTreeOrder();
      assert.deepEqual(cursor.unclaimed(), ['a', 'a/b', 'a-x', 'z'], 'read back in tree order');
    } finally {
      cache.close();
    }
    const again = new Database(file, { readonly: true });
    assert.equal(again.pragma('user_version', { simple: true }), 2);
    again.close();
  });

  it('keeps its rows across close and reopen', () => {
    const file = freshFile();
    const a = AgentCache.open(file);
    a.remember([row('x')]);
    a.close();
    const b = AgentCache.open(file);
    assert.equal(b.lookup('x', 10, 1_700_000_000_123, 42), '0123456789abcdef');
    assert.equal(b.movedAside, null);
    b.close();
  });
});

describe('AgentCache: lookup and remember', () => {
  it('returns the hash only when size, mtime and inode all match', () => {
    const cache = AgentCache.open(freshFile());
    cache.remember([row('a/b')]);
    const cases: [string, number, number, number, string | null][] = [
      ['a/b', 10, 1_700_000_000_123, 42, '0123456789abcdef'],
      ['a/b', 11, 1_700_000_000_123, 42, null],
      ['a/b', 10, 1_700_000_000_124, 42, null],
      ['a/b', 10, 1_700_000_000_123, 43, null],
      ['a/c', 10, 1_700_000_000_123, 42, null],
    ];
    for (const [p, size, mtime, ino, expected] of cases) {
      assert.equal(cache.lookup(p, size, mtime, ino), expected, `${p} ${size} ${mtime} ${ino}`);
    }
    cache.close();
  });

  it('replaces a row for the same path', () => {
    const cache = AgentCache.open(freshFile());
    cache.remember([row('f')]);
    cache.remember([row('f', { size: 20, hash: 'fedcba9876543210' })]);
    assert.equal(cache.lookup('f', 10, 1_700_000_000_123, 42), null);
    assert.equal(cache.lookup('f', 20, 1_700_000_000_123, 42), 'fedcba9876543210');
    cache.close();
  });

  it('writes a batch in one transaction: a bad row leaves none of the batch behind', () => {
    const cache = AgentCache.open(freshFile());
    const bad = row('bad', { size: 'ten' as unknown as number }); // STRICT rejects a TEXT size
    assert.throws(() => cache.remember([row('good'), bad]), (err) => err instanceof WarmsyncError && err.code === 'CACHE_FAILED');
    assert.equal(cache.lookup('good', 10, 1_700_000_000_123, 42), null);
    cache.close();
  });

  it('remembers a large batch and inode numbers above 2^32', () => {
    const cache = AgentCache.open(freshFile());
    const rows = Array.from({ length: 20_000 }, (_, i) => row(`d/${i}`, { ino: 2 ** 40 + i }));
    cache.remember(rows);
    assert.equal(cache.lookup('d/19999', 10, 1_700_000_000_123, 2 ** 40 + 19_999), '0123456789abcdef');
    cache.close();
  });

  it('a cursor answers like lookup, asked in tree order; a row asked about is claimed, a row passed is not; forget drops rows', () => {
    const cache = AgentCache.open(freshFile());
    cache.remember([row('c', { size: 20, hash: 'fedcba9876543210' }), row('a/b'), row('a'), row('a-x'), row('b')]);
    const cursor = cache.readInTreeOrder();
    // "a" as recorded; "a/b" with another size (claimed, not answered); "a-x" never asked (passed);
    // "b" with another inode; "bb" has no row; "c" as recorded.
    for (const [p, size, ino] of [['a', 10, 42], ['a/b', 11, 42], ['b', 10, 43], ['bb', 10, 42], ['c', 20, 42]] as const) {
      assert.equal(cursor.claimIfSame(p, size, 1_700_000_000_123, ino), cache.lookup(p, size, 1_700_000_000_123, ino), p);
    }
    assert.deepEqual(cursor.unclaimed(), ['a-x']);
    cache.forget(['a-x', 'not-cached']);
    assert.equal(cache.lookup('a-x', 10, 1_700_000_000_123, 42), null);
    assert.equal(cache.lookup('a', 10, 1_700_000_000_123, 42), '0123456789abcdef');
    assert.deepEqual(cache.readInTreeOrder().unclaimed(), ['a', 'a/b', 'b', 'c']);
    cache.close();
  });

  it('a cursor reads on a connection of its own: writes on the cache go on while it is open', () => {
    const cache = AgentCache.open(freshFile());
    cache.remember(Array.from({ length: 20_000 }, (_, i) => row(`d/${String(i).padStart(5, '0')}`, { ino: 2 ** 40 + i, hash: i.toString(16).padStart(16, '0') })));
    const cursor = cache.readInTreeOrder();
    for (const i of [0, 1, 9_999]) {
      assert.equal(cursor.claimIfSame(`d/${String(i).padStart(5, '0')}`, 10, 1_700_000_000_123, 2 ** 40 + i), i.toString(16).padStart(16, '0'));
    }
    cache.remember([row('e/new')]);
    assert.equal(cache.lookup('e/new', 10, 1_700_000_000_123, 42), '0123456789abcdef');
    assert.equal(cursor.claimIfSame('d/19999', 10, 1_700_000_000_123, 2 ** 40 + 19_999 + 1), null, 'other inode');
    // Passed: d/00002..d/09998 and d/10000..d/19998; the cursor reads as of its start (no e/new).
    assert.equal(cursor.unclaimed().length, 19_996);
    cursor.close(); // twice is harmless
    cache.close();
  });

  it('property: over any rows and any files asked about in tree order, a cursor claims exactly the rows asked about', () => {
    const name = fc.constantFrom('a', 'b', 'a-b', 'a.b', 'é', '\uE000', '\u{1F600}');
    const relPath = fc.array(name, { minLength: 1, maxLength: 3 }).map((p) => p.join('/'));
    fc.assert(fc.property(fc.uniqueArray(relPath, { maxLength: 30 }), fc.uniqueArray(relPath, { maxLength: 30 }), (cached, asked) => {
      const cache = AgentCache.open(freshFile());
      try {
        cache.remember(cached.map((p) => row(p)));
        const cursor = cache.readInTreeOrder();
        for (const p of [...asked].sort(compareTreeOrder)) {
          assert.equal(cursor.claimIfSame(p, 10, 1_700_000_000_123, 42), cached.includes(p) ? '0123456789abcdef' : null, p);
        }
        assert.deepEqual(cursor.unclaimed(), cached.filter((p) => !asked.includes(p)).sort(compareTreeOrder));
      } finally {
        cache.close();
      }
    }), { numRuns: 100 });
  });
});

describe('AgentCache: a bad cache file is moved aside, never fatal', () => {
  function expectRebuilt(file: string, originalBytes: Buffer): void {
    const cache = AgentCache.open(file);
    try {
      assert.ok(cache.movedAside !== null);
      assert.match(cache.movedAside, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.corrupt-\\d+$`));
      assert.deepEqual(readFileSync(cache.movedAside), originalBytes, 'the old file is kept, untouched');
      cache.remember([row('x')]);
      assert.equal(cache.lookup('x', 10, 1_700_000_000_123, 42), '0123456789abcdef');
    } finally {
      cache.close();
    }
    const again = AgentCache.open(file);
    assert.equal(again.movedAside, null, 'the rebuilt cache opens cleanly');
    again.close();
  }

  it('garbage bytes (not SQLite)', () => {
    const file = freshFile();
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    expectRebuilt(file, readFileSync(file));
  });

  it('a valid cache whose pages were damaged', () => {
    const file = freshFile();
    const c = AgentCache.open(file);
    c.remember(Array.from({ length: 2000 }, (_, i) => row(`p/${i}`)));
    c.close();
    const bytes = readFileSync(file);
    bytes.fill(0xa5, 4096, bytes.length - 4096); // keep the header page, wreck the b-tree
    writeFileSync(file, bytes);
    expectRebuilt(file, bytes);
  });

  it('another program\'s SQLite database (tables, no version)', () => {
    const file = freshFile();
    const db = new Database(file);
    db.exec('CREATE TABLE manifest (path TEXT PRIMARY KEY)');
    db.close();
    expectRebuilt(file, readFileSync(file));
  });

  it('another schema version, or our version with other columns', () => {
    const v2 = freshFile();
    let db = new Database(v2);
    db.pragma('user_version = 2');
    db.exec('CREATE TABLE files (path TEXT PRIMARY KEY, hash BLOB)');
    db.close();
    expectRebuilt(v2, readFileSync(v2));

    const v3 = freshFile();
    db = new Database(v3);
    db.pragma('user_version = 3');
    db.exec('CREATE TABLE files (key BLOB PRIMARY KEY)');
    db.close();
    expectRebuilt(v3, readFileSync(v3));

    const odd = freshFile();
    db = new Database(odd);
    db.pragma('user_version = 1');
    db.exec('CREATE TABLE files (path TEXT PRIMARY KEY, digest TEXT)');
    db.close();
    expectRebuilt(odd, readFileSync(odd));
  });

  it('a stale -wal beside a corrupt file does not leak into the new cache', () => {
    const file = freshFile();
    writeFileSync(file, Buffer.alloc(4096, 1));
    writeFileSync(`${file}-wal`, 'stale wal');
    const cache = AgentCache.open(file);
    assert.ok(cache.movedAside !== null);
    cache.remember([row('x')]);
    assert.equal(cache.lookup('x', 10, 1_700_000_000_123, 42), '0123456789abcdef');
    assert.notEqual(existsSync(`${file}-wal`) ? readFileSync(`${file}-wal`, 'utf8') : '', 'stale wal');
    cache.close();
  });

  it('CACHE_FAILED (not a rebuild) when the directory does not exist', () => {
    const file = path.join(tmp, 'no-such-dir', 'agent-cache.sqlite');
    assert.throws(() => AgentCache.open(file), (err) => err instanceof WarmsyncError && err.code === 'CACHE_FAILED');
    assert.equal(existsSync(path.dirname(file)), false);
    assert.ok(!readdirSync(tmp).some((n) => n.includes('no-such-dir')));
  });
});
