// cache.ts: schema and pragmas, lookup semantics, atomic bulk writes, forgetting, and rebuilding a
// corrupt or foreign cache file instead of stopping the agent.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { WarmsyncError } from '../../../src/errors.js';
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

  it('creates a WAL database with user_version 1 and a STRICT files table', () => {
    const file = freshFile();
    const cache = AgentCache.open(file);
    assert.equal(cache.movedAside, null);
    cache.close();
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), 1);
      const sql = db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'files'").pluck().get() as string;
      assert.match(sql, /STRICT/);
      const cols = db.prepare('SELECT name, type, pk FROM pragma_table_info(?)').all('files');
      assert.deepEqual(cols, [
        { name: 'path', type: 'TEXT', pk: 1 },
        { name: 'size', type: 'INTEGER', pk: 0 },
        { name: 'mtime_ms', type: 'INTEGER', pk: 0 },
        { name: 'ino', type: 'INTEGER', pk: 0 },
        { name: 'hash', type: 'TEXT', pk: 0 },
      ]);
    } finally {
      db.close();
    }
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

  it('readAll returns every row; claimIfSame answers like lookup; unclaimed lists the rest; forget drops rows', () => {
    const cache = AgentCache.open(freshFile());
    cache.remember([row('c', { size: 20, hash: 'fedcba9876543210' }), row('a'), row('b')]);
    const all = cache.readAll();
    assert.equal(all.size, 3);
    assert.deepEqual(all.unclaimed(), ['a', 'b', 'c']);
    for (const [p, size, mtime, ino] of [['a', 10, 1_700_000_000_123, 42], ['c', 20, 1_700_000_000_123, 42], ['c', 10, 1_700_000_000_123, 42], ['a', 10, 1_700_000_000_124, 42], ['a', 10, 1_700_000_000_123, 43], ['b', 11, 1_700_000_000_123, 42], ['zz', 10, 1_700_000_000_123, 42]] as const) {
      assert.equal(all.claimIfSame(p, size, mtime, ino), cache.lookup(p, size, mtime, ino), `${p} ${size} ${mtime} ${ino}`);
    }
    // Only a match claims: "b" was asked about with another size.
    assert.deepEqual(all.unclaimed(), ['b']);
    all.claim('zz');
    assert.deepEqual(all.unclaimed(), ['b']);
    all.claim('b');
    assert.deepEqual(all.unclaimed(), []);
    cache.forget(['b', 'not-cached']);
    assert.equal(cache.lookup('b', 10, 1_700_000_000_123, 42), null);
    assert.equal(cache.lookup('a', 10, 1_700_000_000_123, 42), '0123456789abcdef');
    assert.deepEqual(cache.readAll().unclaimed(), ['a', 'c']);
    cache.close();
  });

  it('reads a large snapshot with inode numbers above 2^32', () => {
    const cache = AgentCache.open(freshFile());
    cache.remember(Array.from({ length: 20_000 }, (_, i) => row(`d/${i}`, { ino: 2 ** 40 + i, hash: i.toString(16).padStart(16, '0') })));
    const all = cache.readAll();
    assert.equal(all.size, 20_000);
    for (const i of [0, 1, 9_999, 19_999]) {
      assert.equal(all.claimIfSame(`d/${i}`, 10, 1_700_000_000_123, 2 ** 40 + i), i.toString(16).padStart(16, '0'));
      assert.equal(all.claimIfSame(`d/${i}`, 10, 1_700_000_000_123, 2 ** 40 + i + 1), null);
    }
    assert.equal(all.unclaimed().length, 19_996);
    cache.close();
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
