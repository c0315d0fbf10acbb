/**
 * The agent's hash cache: (path, size, mtime, inode) -> xxh64, so a restart does not re-hash
 * unchanged files. SQLite via better-sqlite3, WAL, one STRICT table.
 *
 * A cache is disposable. When the file is corrupt, is not SQLite, or holds a schema this code does
 * not know (another version, another program's tables), `open` moves it aside to
 * `<file>.corrupt-<epoch ms>` (with whatever -wal/-shm companions SQLite left) and starts an empty
 * cache, without writing to the old file first: the cost is
 * one full re-hash, never a stopped agent. Errors that rebuilding cannot fix (missing directory,
 * permissions, disk full) throw WarmsyncError CACHE_FAILED and the caller decides (the scanner runs
 * without a cache). Nothing here logs; `open` reports a rebuild through `movedAside`.
 */
import { existsSync, renameSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describeError, WarmsyncError } from '../errors.js';
import { compareTreeOrder, treeKey } from '../relpath.js';

export const AGENT_CACHE_FILE = 'agent-cache.sqlite';
/** Bumped when the table changes; any other value in `PRAGMA user_version` means a rebuild (1: migrated, see V1). */
const SCHEMA_VERSION = 2;

/** Keyed by relpath.ts treeKey, so a full scan reads it in its own (tree) order. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  key      BLOB PRIMARY KEY,
  path     TEXT NOT NULL,
  size     INTEGER NOT NULL,
  mtime_ms INTEGER NOT NULL,
  ino      INTEGER NOT NULL,
  hash     TEXT NOT NULL
) STRICT, WITHOUT ROWID;
`;

const COLUMNS = 'key,path,size,mtime_ms,ino,hash';

/** Version 1 (to session 17): keyed by path, so read in plain string order. Its rows are kept, re-keyed. */
const V1 = { version: 1, columns: 'path,size,mtime_ms,ino,hash' } as const;

export interface CacheRow {
  path: string;
  size: number;
  /** Integer milliseconds (wholeMs). */
  mtimeMs: number;
  ino: number;
  hash: string;
}

/** A cache row as the cursor reads it (`raw`): path, size, mtime_ms, ino, hash. */
type RawRow = [string, number, number, number, string];

/**
 * The cache's rows, read in tree order alongside a full scan's walk, which asks about every file
 * in that order: no row is held beyond the one the walk has reached, whatever the tree's size (a
 * snapshot of every row was ~200 bytes a file in the agent's heap).
 *
 * Read on a connection of its own, in one read transaction: the scan awaits between files, and the
 * live agent's lookups and writes go on meanwhile on the cache's own connection (WAL lets both).
 * The rows the walk passed without finding their file are the files gone since (`unclaimed`), for
 * `AgentCache.forget`.
 */
export class CacheCursor {
  readonly #db: Database.Database | null;
  readonly #rows: IterableIterator<RawRow>;
  #row: RawRow | undefined;
  readonly #unclaimed: string[] = [];

  /** `file` null: an empty cursor (no cache). */
  constructor(file: string | null) {
    this.#db = file === null ? null : new Database(file, { readonly: true, fileMustExist: true });
    try {
      this.#rows = this.#db === null ? [][Symbol.iterator]() : (this.#db.prepare('SELECT path, size, mtime_ms, ino, hash FROM files ORDER BY key').raw().iterate() as IterableIterator<RawRow>);
      this.#row = this.#next();
    } catch (err) {
      this.#db?.close();
      throw err;
    }
  }

  static empty(): CacheCursor {
    return new CacheCursor(null);
  }

  /**
   * What `AgentCache.lookup` answers: the cached hash when size, mtime and inode all match the row of
   * `path`, else null. Asked in tree order; a row of `path` is claimed either way (its file exists:
   * a stale row is replaced when the file is hashed), and the rows before it that no one asked
   * about are unclaimed.
   */
  claimIfSame(path: string, size: number, mtimeMs: number, ino: number): string | null {
    for (let row = this.#row; row !== undefined; row = this.#row) {
      const order = compareTreeOrder(row[0], path);
      if (order > 0) return null;
      this.#row = this.#next();
      if (order < 0) {
        this.#unclaimed.push(row[0]);
        continue;
      }
      return row[1] === size && row[2] === mtimeMs && row[3] === ino ? row[4] : null;
    }
    return null;
  }

  /** The paths of the rows not claimed, in tree order: the rest of the cache is read, then the cursor closed. */
  unclaimed(): string[] {
    for (let row = this.#row; row !== undefined; row = this.#next()) this.#unclaimed.push(row[0]);
    this.#row = undefined;
    this.close();
    return this.#unclaimed;
  }

  /** Ends the read (a scan that failed); `unclaimed` then lists only the rows passed so far. */
  close(): void {
    this.#rows.return?.();
    if (this.#db?.open === true) this.#db.close();
  }

  #next(): RawRow | undefined {
    const next = this.#rows.next();
    return next.done === true ? undefined : next.value;
  }
}

/** `<stateDir>/agent-cache.sqlite` */
export function agentCachePath(stateDir: string): string {
  return path.join(stateDir, AGENT_CACHE_FILE);
}

export class AgentCache {
  /** Where a corrupt or foreign cache file was moved by `open`, or null when none was. */
  readonly movedAside: string | null;
  readonly #file: string;
  readonly #db: Database.Database;
  readonly #lookup: Database.Statement<[Buffer, number, number, number], string>;
  readonly #upsert: Database.Statement<[Buffer, string, number, number, number, string]>;
  readonly #delete: Database.Statement<[Buffer]>;
  readonly #upsertAll: (rows: readonly CacheRow[]) => void;
  readonly #deleteAll: (paths: readonly string[]) => void;

  private constructor(file: string, db: Database.Database, movedAside: string | null) {
    this.#file = file;
    this.#db = db;
    this.movedAside = movedAside;
    this.#lookup = db.prepare<[Buffer, number, number, number], string>(
      'SELECT hash FROM files WHERE key = ? AND size = ? AND mtime_ms = ? AND ino = ?').pluck();
    this.#upsert = db.prepare<[Buffer, string, number, number, number, string]>(
      `INSERT INTO files (key, path, size, mtime_ms, ino, hash) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms,
         ino = excluded.ino, hash = excluded.hash`);
    this.#delete = db.prepare<[Buffer]>('DELETE FROM files WHERE key = ?');
    this.#upsertAll = db.transaction((rows: readonly CacheRow[]) => {
      for (const r of rows) this.#upsert.run(treeKey(r.path), r.path, r.size, r.mtimeMs, r.ino, r.hash);
    });
    this.#deleteAll = db.transaction((paths: readonly string[]) => {
      for (const p of paths) this.#delete.run(treeKey(p));
    });
  }

  /** Opens (creating if needed) the cache at `file`; rebuilds it when corrupt or foreign. */
  static open(file: string): AgentCache {
    try {
      return AgentCache.#build(file, null);
    } catch (err) {
      if (!isDisposable(err)) {
        throw new WarmsyncError('CACHE_FAILED', `cannot open the agent cache ${file}: ${describeError(err)}`, { cause: err });
      }
    }
    const aside = `${file}.corrupt-${Date.now()}`;
    try {
      for (const suffix of ['', '-wal', '-shm']) {
        if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
      }
      return AgentCache.#build(file, aside);
    } catch (err) {
      throw new WarmsyncError('CACHE_FAILED', `cannot rebuild the agent cache ${file}: ${describeError(err)}`, { cause: err });
    }
  }

  static #build(file: string, movedAside: string | null): AgentCache {
    const db = openDatabase(file);
    try {
      return new AgentCache(file, db, movedAside);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** The cached hash when size, mtime and inode all match what is recorded for `path`; else null. */
  lookup(path: string, size: number, mtimeMs: number, ino: number): string | null {
    return this.#guard('read', () => this.#lookup.get(treeKey(path), size, mtimeMs, ino) ?? null);
  }

  /**
   * Every row, in tree order, for a full scan: it asks about every file, and one read in order
   * costs a fraction of one lookup per file (100,000 lookups took ~1 s of CPU). `forget` then drops
   * the rows the scan did not claim. A failure to read later on throws from the cursor's calls.
   */
  readInTreeOrder(): CacheCursor {
    return this.#guard('read', () => new CacheCursor(this.#file));
  }

  /** Drops the rows of `paths`, in one transaction. */
  forget(paths: readonly string[]): void {
    if (paths.length > 0) this.#guard('write', () => this.#deleteAll(paths));
  }

  /** Records (or replaces) rows, all in one transaction. */
  remember(rows: readonly CacheRow[]): void {
    if (rows.length === 0) return;
    this.#guard('write', () => this.#upsertAll(rows));
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  #guard<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      const code = isDisposable(err) ? 'CACHE_CORRUPT' : 'CACHE_FAILED';
      throw new WarmsyncError(code, `agent cache ${what} failed: ${describeError(err)}`, { cause: err });
    }
  }
}

/** Thrown when the file is valid SQLite but not our cache. */
class ForeignCacheError extends Error {}

function openDatabase(file: string): Database.Database {
  const db = new Database(file);
  try {
    // Identify the file before writing anything to it: a foreign file is moved aside untouched.
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === 0) {
      const tables = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").pluck().get() as number;
      if (tables !== 0) throw new ForeignCacheError(`${file} holds tables but no warmsync cache version`);
    } else if (version !== SCHEMA_VERSION && version !== V1.version) {
      throw new ForeignCacheError(`${file} has cache schema version ${version}, expected ${SCHEMA_VERSION}`);
    } else {
      const expected = version === V1.version ? V1.columns : COLUMNS;
      const columns = db.prepare("SELECT group_concat(name, ',') FROM pragma_table_info('files')").pluck().get();
      if (columns !== expected) throw new ForeignCacheError(`${file} has no files table with columns ${expected}`);
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new ForeignCacheError(`${file} failed quick_check: ${String(check)}`);
    }
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL'); // losing the last writes on power loss only costs re-hashing
    if (version === 0) {
      db.transaction(() => {
        db.exec(SCHEMA);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } else if (version === V1.version) {
      rekeyVersion1(db);
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A version 1 cache re-keyed in tree order, in one transaction: its hashes are kept (rebuilding
 * would read every file of the tree again). The key is computed in SQL, as treeKey does: the
 * path's UTF-8 with each "/" made 0x00.
 */
function rekeyVersion1(db: Database.Database): void {
  db.transaction(() => {
    db.exec('ALTER TABLE files RENAME TO files_v1');
    db.exec(SCHEMA);
    db.exec(`INSERT INTO files (${COLUMNS}) SELECT CAST(replace(path, '/', char(0)) AS BLOB), ${V1.columns} FROM files_v1`);
    db.exec('DROP TABLE files_v1');
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}

/** Errors that moving the file aside and starting over will cure. */
function isDisposable(err: unknown): boolean {
  if (err instanceof ForeignCacheError) return true;
  if (err instanceof Database.SqliteError) {
    return err.code === 'SQLITE_NOTADB' || err.code.startsWith('SQLITE_CORRUPT')
      // a table with our name but other columns: prepare() fails
      || (err.code === 'SQLITE_ERROR' && /no such (column|table)/.test(err.message));
  }
  return false;
}
