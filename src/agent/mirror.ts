/**
 * The agent's copy of one standby's manifest (its mirror): fetched at each full pass, kept up to
 * date with every change the receiver applies, and planned against by the live agent.
 *
 * Held in a private temporary SQLite database, not a Map of objects: at 1,000,000 files a Map of
 * rows held most of the agent's 0.9-1.2 GB. SQLite keeps a bounded page cache in memory and spills
 * the rest to a temporary file it deletes itself (the mirror is a copy, fetched again on every
 * reconnect, so nothing is lost with it). Rows are keyed by relpath.ts treeKey, so they come back
 * in tree order: a full pass plans by merging them with its sorted scan (plan/diff.ts), and the
 * rows below a directory are one range of the key.
 *
 * Rows set one at a time (the live agent records each change the receiver applied) wait in memory
 * and are written together, in one transaction, before the next read or once PENDING_MAX wait:
 * written one by one, each was a transaction of its own (~25 us): 1.6 s of the live agent's 8.1 s
 * of CPU while a 60,000-file restore streamed in (docs/benchmarks.md, session 19).
 */
import Database from 'better-sqlite3';
import type { EntryKind, ManifestEntry, Owner } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import { sharedOwner } from '../owner/names.js';
import { treeKey } from '../relpath.js';

const SCHEMA = `
CREATE TABLE rows (
  key      BLOB PRIMARY KEY,
  path     TEXT NOT NULL,
  kind     TEXT NOT NULL,
  size     INTEGER NOT NULL,
  mtime_ms INTEGER NOT NULL,
  mode     INTEGER NOT NULL,
  hash     TEXT,
  target   TEXT,
  born_ms  INTEGER NOT NULL,
  deleted  INTEGER,
  damaged  INTEGER NOT NULL,
  owner    INTEGER
) STRICT, WITHOUT ROWID;
`;
const COLUMNS = 'path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted, damaged, owner';

/** A row to record: a manifest page's rows come without bornMs (0 then; the agent plans nothing on it). */
export type MirrorRow = Omit<ManifestEntry, 'bornMs'> & { readonly bornMs?: number };

/** A row as SQLite returns it (`raw` mode): the columns of COLUMNS in order. */
type RawRow = [string, EntryKind, number, number, number, string | null, string | null, number, number | null, number, number | null];

/** A RawRow and its key, as inTreeOrder reads them. */
type PagedRow = [...RawRow, Buffer];

/** Rows inTreeOrder reads at once. */
const PAGE_ROWS = 1024;

/**
 * Pages SQLite keeps in memory (negative: KiB). Past it, rows live in the temporary file: a point
 * read of a cold row costs a page read from the OS's cache, a few microseconds.
 */
const CACHE_KIB = 8 * 1024;

/** Rows set one at a time that may wait for a read before they are written (a live batch's worth). */
const PENDING_MAX = 4096;

export class Mirror {
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[Buffer]>;
  readonly #upsert: Database.Statement<unknown[]>;
  readonly #range: Database.Statement<[Buffer, Buffer, Buffer]>;
  readonly #firstPage: Database.Statement<[]>;
  readonly #pageAfter: Database.Statement<[Buffer]>;
  readonly #liveFiles: Database.Statement<[]>;
  readonly #upsertAll: (rows: Iterable<MirrorRow>) => void;
  /** Owners by a small id: a tree has a handful, and each row stores its owner's id (this connection's own numbering). */
  readonly #owners: Owner[] = [];
  /** uid -> gid -> user -> group -> the owner's id. */
  readonly #ownerIds = new Map<number, Map<number, Map<string | null, Map<string | null, number>>>>();
  /** Rows `set` and not written yet, in the order set: every read writes them first. */
  #pending: MirrorRow[] = [];

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#db.pragma('journal_mode = OFF');
    this.#db.pragma('synchronous = OFF');
    this.#db.pragma(`cache_size = -${CACHE_KIB}`);
    this.#db.exec(SCHEMA);
    this.#get = this.#db.prepare(`SELECT ${COLUMNS} FROM rows WHERE key = ?`).raw();
    this.#upsert = this.#db.prepare(`INSERT OR REPLACE INTO rows (key, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#range = this.#db.prepare(`SELECT ${COLUMNS} FROM rows WHERE key = ? OR (key > ? AND key < ?) ORDER BY key`).raw();
    this.#firstPage = this.#db.prepare(`SELECT ${COLUMNS}, key FROM rows ORDER BY key LIMIT ${PAGE_ROWS}`).raw();
    this.#pageAfter = this.#db.prepare(`SELECT ${COLUMNS}, key FROM rows WHERE key > ? ORDER BY key LIMIT ${PAGE_ROWS}`).raw();
    this.#liveFiles = this.#db.prepare("SELECT count(*) FROM rows WHERE kind = 'file' AND deleted IS NULL").pluck();
    this.#upsertAll = this.#db.transaction((rows: Iterable<MirrorRow>) => {
      for (const row of rows) this.#write(row);
    });
  }

  /** An empty mirror. */
  static open(): Mirror {
    // An empty name: a temporary database, private to this connection, deleted when it closes.
    return guarded(() => new Mirror(new Database('')));
  }

  /** The row at `path`, or undefined. */
  get(path: string): ManifestEntry | undefined {
    this.#writePending();
    const raw = guarded(() => this.#get.get(treeKey(path)) as RawRow | undefined);
    return raw === undefined ? undefined : this.#row(raw);
  }

  has(path: string): boolean {
    return this.get(path) !== undefined;
  }

  /** False once closed (with its session): nothing is read or recorded after that. */
  get isOpen(): boolean {
    return this.#db.open;
  }

  /** Records (or replaces) the row at `row.path`: written with the next read, or with the rows set after it. */
  set(row: MirrorRow): void {
    this.#pending.push(row);
    // Closed: written at once, so that the caller hears of it (MIRROR_FAILED) as from any write.
    if (this.#pending.length >= PENDING_MAX || !this.#db.open) this.#writePending();
  }

  /** Records (or replaces) many rows, in one transaction. */
  setAll(rows: Iterable<MirrorRow>): void {
    this.#writePending();
    guarded(() => this.#upsertAll(rows));
  }

  /** Writes the rows `set` so far, in one transaction. */
  #writePending(): void {
    if (this.#pending.length === 0) return;
    const rows = this.#pending;
    this.#pending = [];
    guarded(() => this.#upsertAll(rows));
  }

  /**
   * Every row, in tree order (relpath.ts compareTreeOrder), read a page at a time: between pages
   * the database is free, so rows may be set while this runs (a full pass records each change the
   * receiver applies as it plans the rest). A row set at a key not reached yet comes in its turn.
   */
  *inTreeOrder(): Generator<ManifestEntry> {
    this.#writePending();
    let page = guarded(() => this.#firstPage.all() as PagedRow[]);
    while (page.length > 0) {
      for (const raw of page) yield this.#row(raw);
      if (page.length < PAGE_ROWS) return;
      const after = (page[page.length - 1] as PagedRow)[11];
      this.#writePending();
      page = guarded(() => this.#pageAfter.all(after) as PagedRow[]);
    }
  }

  /** The rows at or below each of `paths` (each list in tree order): one range of the key each. */
  rowsAtOrBelow(paths: Iterable<string>): Map<string, ManifestEntry[]> {
    this.#writePending();
    const found = new Map<string, ManifestEntry[]>();
    for (const path of paths) {
      if (found.has(path)) continue;
      const key = treeKey(path);
      // Below `path`: keys that start with its key and a 0x00 (the "/"), i.e. between key+00 and key+01.
      const rows = guarded(() => this.#range.all(key, Buffer.concat([key, ZERO]), Buffer.concat([key, ONE])) as RawRow[]);
      found.set(path, rows.map((raw) => this.#row(raw)));
    }
    return found;
  }

  /** How many live files (not tombstones) the standby holds: what a mass deletion's share is counted against. */
  liveFileCount(): number {
    this.#writePending();
    return guarded(() => this.#liveFiles.get() as number);
  }

  close(): void {
    this.#pending = []; // a copy: nothing is lost with it
    if (this.#db.open) this.#db.close();
  }

  #write(r: MirrorRow): void {
    this.#upsert.run(
      treeKey(r.path), r.path, r.kind, r.size, r.mtimeMs, r.mode, r.hash, r.target, r.bornMs ?? 0, r.deletedAt, r.damaged ? 1 : 0,
      this.#ownerId(r.owner ?? null),
    );
  }

  #ownerId(owner: Owner | null): number | null {
    if (owner === null) return null;
    // Field by field: no key string built per row (a manifest page parses an owner object per row).
    const byGid = mapIn(this.#ownerIds, owner.uid);
    const byUser = mapIn(byGid, owner.gid);
    const byGroup = mapIn(byUser, owner.user);
    let id = byGroup.get(owner.group);
    if (id === undefined) {
      id = this.#owners.length;
      this.#owners.push(sharedOwner(owner));
      byGroup.set(owner.group, id);
    }
    return id;
  }

  /** A row as a plain literal with its fields always in this order: the rows of a plan share one hidden class. */
  #row(raw: RawRow | PagedRow): ManifestEntry {
    const owner = raw[10];
    return {
      path: raw[0], kind: raw[1], size: raw[2], mtimeMs: raw[3], mode: raw[4], hash: raw[5], target: raw[6],
      bornMs: raw[7], deletedAt: raw[8], damaged: raw[9] === 1, owner: owner === null ? null : (this.#owners[owner] as Owner),
    };
  }
}

/**
 * Runs a call on the database, saying what failed in the operator's terms: the temporary file
 * SQLite spills to can be missing, full or unwritable (it picks the first writable directory).
 */
function guarded<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new WarmsyncError('MIRROR_FAILED', `the agent's copy of the standby's manifest (a temporary SQLite file in $SQLITE_TMPDIR, $TMPDIR or /var/tmp) failed: ${describeError(err)}`, { cause: err });
  }
}

/** The map at `key` in `outer`, made empty if there is none. */
function mapIn<K, V extends Map<unknown, unknown>>(outer: Map<K, V>, key: K): V {
  let inner = outer.get(key);
  if (inner === undefined) {
    inner = new Map() as V;
    outer.set(key, inner);
  }
  return inner;
}

const ZERO = Buffer.from([0]);
const ONE = Buffer.from([1]);
