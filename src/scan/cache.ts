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

export const AGENT_CACHE_FILE = 'agent-cache.sqlite';
/** Bumped when the table changes; any other value in `PRAGMA user_version` means a rebuild. */
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  path     TEXT PRIMARY KEY,
  size     INTEGER NOT NULL,
  mtime_ms INTEGER NOT NULL,
  ino      INTEGER NOT NULL,
  hash     TEXT NOT NULL
) STRICT, WITHOUT ROWID;
`;

const COLUMNS = 'path,size,mtime_ms,ino,hash';

export interface CacheRow {
  path: string;
  size: number;
  /** Integer milliseconds (wholeMs). */
  mtimeMs: number;
  ino: number;
  hash: string;
}

/**
 * Every row of the cache, for a full scan, which asks about every file: one column at a time (plain
 * arrays of strings and numbers, indexed by a Map from path), not an object per row. For 100,000
 * rows: 0.32-0.52 s of CPU as objects, 0.18-0.30 s as columns (7 reads each, on a loaded box), and
 * 100,000 fewer objects for the GC to trace while the scan runs.
 *
 * The scan `claim`s each file it found; the rows never claimed are the files gone since (`unclaimed`),
 * for `AgentCache.forget`.
 */
export class CacheSnapshot {
  readonly #rowOf = new Map<string, number>();
  readonly #paths: readonly string[];
  readonly #sizes: readonly number[];
  readonly #mtimes: readonly number[];
  readonly #inos: readonly number[];
  readonly #hashes: readonly string[];
  readonly #claimed: Uint8Array;
  #claimedCount = 0;

  /** Columns of the same rows, in the same order. */
  constructor(paths: readonly string[], sizes: readonly number[], mtimes: readonly number[], inos: readonly number[], hashes: readonly string[]) {
    const n = paths.length;
    this.#paths = paths;
    this.#sizes = sizes;
    this.#mtimes = mtimes;
    this.#inos = inos;
    this.#hashes = hashes;
    this.#claimed = new Uint8Array(n);
    for (let i = 0; i < n; i++) this.#rowOf.set(paths[i] as string, i);
  }

  static empty(): CacheSnapshot {
    return new CacheSnapshot([], [], [], [], []);
  }

  get size(): number {
    return this.#paths.length;
  }

  /**
   * What `AgentCache.lookup` answers: the cached hash when size, mtime and inode all match the row of
   * `path`, else null. A match also claims the row (the file is still there, as recorded).
   */
  claimIfSame(path: string, size: number, mtimeMs: number, ino: number): string | null {
    const i = this.#rowOf.get(path);
    if (i === undefined || this.#sizes[i] !== size || this.#mtimes[i] !== mtimeMs || this.#inos[i] !== ino) return null;
    this.#claim(i);
    return this.#hashes[i] as string;
  }

  /** Claims the row of `path`, if there is one: a file of that path exists (hashed anew, say). */
  claim(path: string): void {
    const i = this.#rowOf.get(path);
    if (i !== undefined) this.#claim(i);
  }

  /** The paths of the rows not claimed, in the cache's order. */
  unclaimed(): string[] {
    if (this.#claimedCount === this.#paths.length) return [];
    return this.#paths.filter((_, i) => this.#claimed[i] === 0);
  }

  #claim(i: number): void {
    if (this.#claimed[i] === 0) {
      this.#claimed[i] = 1;
      this.#claimedCount++;
    }
  }
}

/** `<stateDir>/agent-cache.sqlite` */
export function agentCachePath(stateDir: string): string {
  return path.join(stateDir, AGENT_CACHE_FILE);
}

export class AgentCache {
  /** Where a corrupt or foreign cache file was moved by `open`, or null when none was. */
  readonly movedAside: string | null;
  readonly #db: Database.Database;
  readonly #lookup: Database.Statement<[string, number, number, number], string>;
  readonly #upsert: Database.Statement<[string, number, number, number, string]>;
  readonly #delete: Database.Statement<[string]>;
  readonly #readColumns: () => CacheSnapshot;
  readonly #upsertAll: (rows: readonly CacheRow[]) => void;
  readonly #deleteAll: (paths: readonly string[]) => void;

  private constructor(db: Database.Database, movedAside: string | null) {
    this.#db = db;
    this.movedAside = movedAside;
    this.#lookup = db.prepare<[string, number, number, number], string>(
      'SELECT hash FROM files WHERE path = ? AND size = ? AND mtime_ms = ? AND ino = ?').pluck();
    this.#upsert = db.prepare<[string, number, number, number, string]>(
      `INSERT INTO files (path, size, mtime_ms, ino, hash) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms,
         ino = excluded.ino, hash = excluded.hash`);
    this.#delete = db.prepare<[string]>('DELETE FROM files WHERE path = ?');
    // One plucked query per column, all in path order, in one read transaction: flat arrays cost a
    // fraction of an array per row (better-sqlite3's raw rows), let alone an object per row.
    const column = <T>(name: string): Database.Statement<[], T> => db.prepare<[], T>(`SELECT ${name} FROM files ORDER BY path`).pluck();
    const paths = column<string>('path');
    const sizes = column<number>('size');
    const mtimes = column<number>('mtime_ms');
    const inos = column<number>('ino');
    const hashes = column<string>('hash');
    this.#readColumns = db.transaction(() => new CacheSnapshot(paths.all(), sizes.all(), mtimes.all(), inos.all(), hashes.all()));
    this.#upsertAll = db.transaction((rows: readonly CacheRow[]) => {
      for (const r of rows) this.#upsert.run(r.path, r.size, r.mtimeMs, r.ino, r.hash);
    });
    this.#deleteAll = db.transaction((paths: readonly string[]) => {
      for (const p of paths) this.#delete.run(p);
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
      return new AgentCache(db, movedAside);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** The cached hash when size, mtime and inode all match what is recorded for `path`; else null. */
  lookup(path: string, size: number, mtimeMs: number, ino: number): string | null {
    return this.#guard('read', () => this.#lookup.get(path, size, mtimeMs, ino) ?? null);
  }

  /**
   * Every row at once, for a full scan: it asks about every file, and one read costs a fraction of
   * one lookup per file (100,000 lookups took ~1 s of CPU). `forget` then drops the rows the scan
   * did not claim.
   */
  readAll(): CacheSnapshot {
    return this.#guard('read', () => this.#readColumns());
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
    } else if (version !== SCHEMA_VERSION) {
      throw new ForeignCacheError(`${file} has cache schema version ${version}, expected ${SCHEMA_VERSION}`);
    } else {
      const columns = db.prepare("SELECT group_concat(name, ',') FROM pragma_table_info('files')").pluck().get();
      if (columns !== COLUMNS) throw new ForeignCacheError(`${file} has no files table with columns ${COLUMNS}`);
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
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
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
