/**
 * Opening the manifest database: pragmas, identity check, numbered migrations from sql/NNN-*.sql.
 * A file that is not a warmsync manifest is refused with a clear error, never silently replaced:
 * a fresh manifest would forget tombstones (and with them, files the standby DB may reference).
 */
import { readdirSync, readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { WarmsyncError, describeError } from '../errors.js';

/** PRAGMA application_id of a warmsync manifest: "wsnc". */
const APPLICATION_ID = 0x77736e63;
const SQL_DIR = new URL('./sql/', import.meta.url);

interface Migration { readonly version: number; readonly name: string; readonly sql: string }

function loadMigrations(): Migration[] {
  return readdirSync(SQL_DIR)
    .filter((name) => /^\d{3}-.+\.sql$/.test(name))
    .sort()
    .map((name) => ({ version: Number(name.slice(0, 3)), name, sql: readFileSync(new URL(name, SQL_DIR), 'utf8') }));
}

export interface OpenOptions {
  readonly readonly?: boolean;
  /**
   * Run SQLite's quick_check first (reads every page: milliseconds per MB). A damaged page can hide
   * until a query reaches it; the receiver and `verify` find out before they act on the manifest.
   */
  readonly check?: boolean;
}

export function openDatabase(file: string, options: OpenOptions = {}): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (err) {
    throw new WarmsyncError('MANIFEST_OPEN', `cannot open manifest ${file}: ${describeError(err)}`, { cause: err });
  }
  try {
    // Another process (receiver vs. an operator command) may hold the write lock briefly.
    db.pragma('busy_timeout = 10000');
    const appId = db.pragma('application_id', { simple: true }) as number;
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number };
    if (appId !== APPLICATION_ID && !(appId === 0 && tables.n === 0)) {
      throw new WarmsyncError('MANIFEST_FOREIGN', `${file} is not a warmsync manifest (application_id ${appId}); move it aside or point --state-dir elsewhere`);
    }
    if (options.check) checkIntegrity(db, file);
    if (!options.readonly) {
      // Refuse a newer schema before changing anything in the file (journal mode included).
      const migrations = loadMigrations();
      checkVersion(db, file, migrations);
      db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode can lose the last transactions on power loss, never corrupt: a lost row only
      // makes the agent send a file again, a lost tombstone keeps a file longer. Both are safe.
      db.pragma('synchronous = NORMAL');
      migrate(db, migrations);
    }
    return db;
  } catch (err) {
    db.close();
    if (err instanceof WarmsyncError) throw err;
    throw new WarmsyncError('MANIFEST_CORRUPT', corruptMessage(file, describeError(err)), { cause: err });
  }
}

/** SQLite's quick_check: every page read, b-trees and records checked. Throws MANIFEST_CORRUPT. */
export function checkIntegrity(db: Database.Database, file: string): void {
  let first: string;
  try {
    first = (db.pragma('quick_check(1)', { simple: true }) as string | undefined) ?? 'no answer';
  } catch (err) {
    first = describeError(err);
  }
  if (first !== 'ok') throw new WarmsyncError('MANIFEST_CORRUPT', corruptMessage(file, first));
}

export function corruptMessage(file: string, problem: string): string {
  return `manifest ${file} is unreadable (${problem.replace(/\s*\n\s*/g, '; ')}); stop the receiver and run \`warmsync verify --root ROOT --rebuild\` `
    + '(it keeps the damaged file; see docs/reliability.md, "Manifest damage")';
}

function checkVersion(db: Database.Database, file: string, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new WarmsyncError('MANIFEST_NEWER', `manifest ${file} has schema version ${current}, newer than this warmsync understands (${latest}); upgrade warmsync`);
  }
}

function migrate(db: Database.Database, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.at(-1)?.version ?? 0;
  const pending = migrations.filter((m) => m.version > current);
  if (pending.length === 0) return;
  db.transaction(() => {
    for (const m of pending) db.exec(m.sql);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${latest}`);
  }).immediate();
}
