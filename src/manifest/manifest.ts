/**
 * Typed queries over the manifest. The receiver records here only what is durable on disk;
 * operator commands read and update it (SQLite WAL + busy timeout keeps them from tearing it).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import type { Entry, EntryKind, FeedGap, ManifestEntry, Owner } from '../entry.js';
import { WarmsyncError } from '../errors.js';
import { openDatabase } from './db.js';

export const MANIFEST_FILE = 'manifest.sqlite';

interface EntryRow {
  path: string; kind: EntryKind; size: number; mtime_ms: number; mode: number; hash: string | null;
  target: string | null; born_ms: number; deleted_at: number | null; damaged: number;
  uid: number | null; gid: number | null; user_name: string | null; group_name: string | null;
}

function fromRow(r: EntryRow): ManifestEntry {
  const row: ManifestEntry = {
    path: r.path, kind: r.kind, size: r.size, mtimeMs: r.mtime_ms, mode: r.mode, hash: r.hash,
    target: r.target, bornMs: r.born_ms, deletedAt: r.deleted_at, damaged: r.damaged === 1,
  };
  // `owner` only when recorded (rows from before owners were kept have none).
  return r.uid === null || r.gid === null ? row : { ...row, owner: { uid: r.uid, gid: r.gid, user: r.user_name, group: r.group_name } };
}

/** The owner columns' parameters: all null when the owner is not known. */
function ownerParams(owner: Owner | null | undefined): { uid: number | null; gid: number | null; userName: string | null; groupName: string | null } {
  return owner === undefined || owner === null
    ? { uid: null, gid: null, userName: null, groupName: null }
    : { uid: owner.uid, gid: owner.gid, userName: owner.user, groupName: owner.group };
}

/**
 * The values of a row recorded (upsert, installing), in their statements' order: the mtime twice
 * (the column, and the born time's bound). Positional, not named: binding an object of named values
 * cost a receiver about 1.2 us more per statement, two statements a file (docs/benchmarks.md, session 19).
 */
type RowValues = [string, EntryKind, number, number, number, string | null, string | null, number, number, number | null, number | null, string | null, string | null];

function rowValues(e: Entry, now: number): RowValues {
  const o = e.owner ?? null;
  return [e.path, e.kind, e.size, e.mtimeMs, e.mode, e.hash, e.target, e.mtimeMs, now, o?.uid ?? null, o?.gid ?? null, o?.user ?? null, o?.group ?? null];
}

/** A row whose path was deleted on the source: its deletedAt is set. */
export type TombstoneEntry = ManifestEntry & { readonly deletedAt: number };

/** Keys of the `state` table. */
export type StateKey = 'snapshotTime' | 'watermark' | 'lastContact' | 'agentConnected' | 'receiverPid' | 'skewMs' | 'deleteGraceMs'
  | 'feedIncompleteSince' | 'feedIncompleteReason' | 'deletionsHeld' | 'ownerPolicy'
  | 'dbSystem' | 'dbPositionLsn' | 'dbPositionAt' | 'dbClockOffsetMs' | 'dbClockBoundMs' | 'dbClockAt' | 'rootIdentity' | 'rootMounts'
  | 'verifyDamageFiles' | 'verifyDamageAt';

/** Files `verify` found missing or corrupt (marked damaged), and when: gate/policy.ts's StandbyLack. */
export interface VerifyDamage { readonly files: number; readonly at: number }

/** The newest DB primary position the watermark covered (gate/dbposition.ts), and its cluster. */
export interface RecordedDbPosition { readonly lsn: string; readonly at: number; readonly system: string }
/** The clock offset the agent last measured against the DB primary. */
export interface RecordedDbClock { readonly offsetMs: number; readonly boundMs: number; readonly at: number }

export interface ManifestCounts {
  files: number; bytes: number; dirs: number; symlinks: number; tombstones: number; oldestTombstone: number | null;
}

export class Manifest {
  private readonly statements;
  private writeLock: Promise<void> = Promise.resolve();

  private constructor(readonly db: Database.Database, readonly file: string) {
    this.statements = {
      get: db.prepare<[string], EntryRow>('SELECT * FROM entries WHERE path = ?'),
      all: db.prepare<[], EntryRow>('SELECT * FROM entries ORDER BY path'),
      // Each row as its wire JSON (protocol/messages.ts toWireEntry: `owner` only when recorded,
      // `damaged` a boolean), built by SQLite; [path, json] for the next page's start.
      wireAfter: db.prepare<[string, number], [string, string]>(`SELECT path,
          CASE WHEN uid IS NULL OR gid IS NULL THEN entry
            ELSE json_set(entry, '$.owner', json_object('uid', uid, 'gid', gid, 'user', user_name, 'group', group_name)) END
        FROM (SELECT path, uid, gid, user_name, group_name, json_object('path', path, 'kind', kind, 'size', size,
            'mtimeMs', mtime_ms, 'mode', mode, 'hash', hash, 'target', target, 'deletedAt', deleted_at,
            'damaged', json(CASE damaged WHEN 1 THEN 'true' ELSE 'false' END)) AS entry
          FROM entries WHERE path > ? ORDER BY path LIMIT ?)
        ORDER BY path`).raw(true),
      // Born: the source mtime, but never later than the watermark the receiver held when it first
      // recorded the path. A file rewritten after the DB referenced it, and first seen only then,
      // has a late mtime; yet if it had existed before W the agent would have delivered it before W,
      // so a path first recorded now existed no earlier than W. Before any watermark (the first
      // sync) nothing is known: born 0, never quarantined. When in doubt, keep the file.
      // A path recorded again keeps its born time while the row exists (tombstone cancelled or
      // content updated): the file never left the standby. Only a removed row starts a new life.
      upsert: db.prepare<RowValues>(`INSERT INTO entries (path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged, recorded_at,
          uid, gid, user_name, group_name)
        VALUES (?, ?, ?, ?, ?, ?, ?, MIN(?, COALESCE((SELECT value FROM state WHERE key = 'watermark'), 0)), NULL, 0, ?, ?, ?, ?, ?)
        ON CONFLICT (path) DO UPDATE SET kind = excluded.kind, size = excluded.size, mtime_ms = excluded.mtime_ms,
          mode = excluded.mode, hash = excluded.hash, target = excluded.target, deleted_at = NULL, damaged = 0,
          uid = excluded.uid, gid = excluded.gid, user_name = excluded.user_name, group_name = excluded.group_name,
          recorded_at = excluded.recorded_at,
          born_ms = CASE WHEN entries.kind = excluded.kind THEN entries.born_ms ELSE excluded.born_ms END`),
      tombstone: db.prepare<[number, number, string]>('UPDATE entries SET deleted_at = ?, recorded_at = ? WHERE path = ? AND deleted_at IS NULL'),
      remove: db.prepare<[string]>('DELETE FROM entries WHERE path = ?'),
      removeTree: db.prepare<[string, string, string]>('DELETE FROM entries WHERE path = ? OR (path >= ? AND path < ?)'),
      markDamaged: db.prepare<[string]>('UPDATE entries SET damaged = 1 WHERE path = ?'),
      // Before a change reaches the disk at a path: its row (or, for a new path, the row it will
      // get) marked damaged, so a crash between the disk change and its record leaves a row the
      // agent acts on, never an unrecorded file at a final path.
      installing: db.prepare<RowValues>(`INSERT INTO entries (path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged, recorded_at,
          uid, gid, user_name, group_name)
        VALUES (?, ?, ?, ?, ?, ?, ?, MIN(?, COALESCE((SELECT value FROM state WHERE key = 'watermark'), 0)), NULL, 1, ?, ?, ?, ?, ?)
        ON CONFLICT (path) DO UPDATE SET damaged = 1`),
      getState: db.prepare<[string], { value: number | string | null }>('SELECT value FROM state WHERE key = ?'),
      setState: db.prepare<[string, number | string | null]>('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      tombstones: db.prepare<[], EntryRow>('SELECT * FROM entries WHERE deleted_at IS NOT NULL'),
      live: db.prepare<[], EntryRow>('SELECT * FROM entries WHERE deleted_at IS NULL'),
      logRemoval: db.prepare<[string, string, string, number, number | null, string | null]>(
        'INSERT INTO removals (path, kind, reason, removed_at, snapshot_time, quarantine) VALUES (?, ?, ?, ?, ?, ?)'),
      quarantined: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM removals WHERE quarantine IS NOT NULL AND restored_at IS NULL'),
      damagedLive: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM entries WHERE damaged = 1 AND deleted_at IS NULL'),
      restoreRow: db.prepare(`INSERT INTO entries (path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged, recorded_at,
          uid, gid, user_name, group_name)
        VALUES (@path, @kind, @size, @mtimeMs, @mode, @hash, @target, @bornMs, @deletedAt, 0, @now, @uid, @gid, @userName, @groupName)`),
      removedUnder: db.prepare<[number], { path: string; removed_at: number; snapshot_time: number }>(
        'SELECT path, removed_at, snapshot_time FROM removals WHERE quarantine IS NULL AND snapshot_time > ? ORDER BY id'),
      markRestored: db.prepare<[number, string, string]>('UPDATE removals SET restored_at = ? WHERE quarantine = ? AND path = ? AND restored_at IS NULL'),
      counts: db.prepare<[], ManifestCounts>(`SELECT
          coalesce(sum(kind = 'file' AND deleted_at IS NULL), 0) AS files,
          coalesce(sum(CASE WHEN kind = 'file' AND deleted_at IS NULL THEN size ELSE 0 END), 0) AS bytes,
          coalesce(sum(kind = 'dir' AND deleted_at IS NULL), 0) AS dirs,
          coalesce(sum(kind = 'symlink' AND deleted_at IS NULL), 0) AS symlinks,
          coalesce(sum(deleted_at IS NOT NULL), 0) AS tombstones,
          min(deleted_at) AS oldestTombstone
        FROM entries`),
    };
  }

  /** Opens (creating if needed) the manifest in `stateDir`; `check` runs SQLite's quick_check first. */
  static open(stateDir: string, options: { check?: boolean } = {}): Manifest {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const file = join(stateDir, MANIFEST_FILE);
    return new Manifest(openDatabase(file, options), file);
  }

  /**
   * Opens the manifest an earlier receiver created (operator commands never create one), after
   * SQLite's quick_check: an operator acting on a damaged manifest must hear so first.
   */
  static openExisting(stateDir: string): Manifest {
    const file = join(stateDir, MANIFEST_FILE);
    if (!existsSync(file)) {
      throw new WarmsyncError('NO_MANIFEST', `no manifest at ${file}: has a receiver run on this root? (or pass the receiver's --state-dir)`);
    }
    return new Manifest(openDatabase(file, { check: true }), file);
  }

  get(path: string): ManifestEntry | undefined {
    const row = this.statements.get.get(path);
    return row ? fromRow(row) : undefined;
  }

  /** Every row, tombstones included, in path order; streamed so memory stays flat. */
  *entries(): IterableIterator<ManifestEntry> {
    for (const row of this.statements.all.iterate()) yield fromRow(row);
  }

  /**
   * Every row's wire JSON in path order: what the receiver sends as its manifest, without a
   * JavaScript object per row. Read `batch` rows at a time with no statement left open in between:
   * a caller may await between rows (a send draining) while other code uses the database. Rows
   * changed meanwhile are seen as they are when their batch is read.
   */
  *wireEntriesJson(batch = 2000): IterableIterator<string> {
    let after = '';
    for (;;) {
      const rows = this.statements.wireAfter.all(after, batch);
      for (const row of rows) yield row[1];
      const last = rows.at(-1);
      if (last === undefined || rows.length < batch) return;
      after = last[0];
    }
  }

  recordPresent(entry: Entry, now: number): void {
    this.statements.upsert.run(...rowValues(entry, now));
  }

  /** Marks `path` deleted on the source at `deletedAt`; an existing tombstone keeps its first time. */
  recordTombstone(path: string, deletedAt: number, now: number): void {
    this.statements.tombstone.run(deletedAt, now, path);
  }

  remove(path: string): void {
    this.statements.remove.run(path);
  }

  /** Removes `dir` and every row below it. */
  removeTree(dir: string): void {
    // Rows below dir sort between "dir/" and "dir0" ("0" is the character after "/").
    this.statements.removeTree.run(dir, dir + '/', dir + '0');
  }

  /**
   * Marks paths about to change on disk (see the statement): their next record clears the mark.
   * Committed on its own, before the change, so a SIGKILL cannot roll it back.
   */
  async recordInstalling(entries: readonly Entry[], now: number): Promise<void> {
    if (entries.length === 0) return;
    await this.withWriteLock(async () => {
      for (const entry of entries) this.statements.installing.run(...rowValues(entry, now));
    });
  }

  markDamaged(path: string): void {
    this.statements.markDamaged.run(path);
  }

  /** Every tombstone (deleted on the source, still on disk). */
  tombstones(): TombstoneEntry[] {
    return this.statements.tombstones.all().map(fromRow) as TombstoneEntry[];
  }

  /** Every live (non-tombstoned) row. */
  live(): ManifestEntry[] {
    return this.statements.live.all().map(fromRow);
  }

  /** Invariant 6: records that `path` left the standby tree, why, and where it went. */
  logRemoval(removal: { path: string; kind: EntryKind; reason: string; at: number; snapshotTime: number | null; quarantine: string | null }): void {
    this.statements.logRemoval.run(removal.path, removal.kind, removal.reason, removal.at, removal.snapshotTime, removal.quarantine);
  }

  /** Puts back a row exactly as it was (born time and tombstone included): undoing a quarantine. */
  restoreRow(row: ManifestEntry, now: number): void {
    const { path, kind, size, mtimeMs, mode, hash, target, bornMs, deletedAt } = row;
    this.statements.restoreRow.run({ path, kind, size, mtimeMs, mode, hash, target, bornMs, deletedAt, now, ...ownerParams(row.owner) });
  }

  /** Removals applied by the gate (not quarantined) under a snapshot time later than `snapshotTime`. */
  removedUnder(snapshotTime: number): Array<{ path: string; removedAt: number; snapshotTime: number }> {
    return this.statements.removedUnder.all(snapshotTime).map((r) => ({ path: r.path, removedAt: r.removed_at, snapshotTime: r.snapshot_time }));
  }

  markRestored(quarantine: string, path: string, now: number): void {
    this.statements.markRestored.run(now, quarantine, path);
  }

  counts(): ManifestCounts {
    return this.statements.counts.get() as ManifestCounts;
  }

  getNumber(key: StateKey): number | null {
    const v = this.statements.getState.get(key)?.value;
    return typeof v === 'number' ? v : null;
  }

  getString(key: StateKey): string | null {
    const v = this.statements.getState.get(key)?.value;
    return typeof v === 'string' ? v : null;
  }

  /** What `verify` last found missing or corrupt here, and when, until a full pass has sent it again; or null. */
  verifyDamage(): VerifyDamage | null {
    const at = this.getNumber('verifyDamageAt');
    return at === null ? null : { files: this.getNumber('verifyDamageFiles') ?? 0, at };
  }

  setVerifyDamage(damage: VerifyDamage | null): void {
    this.transaction(() => {
      this.setState('verifyDamageFiles', damage?.files ?? null);
      this.setState('verifyDamageAt', damage?.at ?? null);
    });
  }

  /** What the agent last said of its change feed: since when it may be incomplete, and why. */
  feedGap(): FeedGap | null {
    const since = this.getNumber('feedIncompleteSince');
    return since === null ? null : { since, reason: this.getString('feedIncompleteReason') ?? 'unknown' };
  }

  dbPosition(): RecordedDbPosition | null {
    const lsn = this.getString('dbPositionLsn');
    const at = this.getNumber('dbPositionAt');
    return lsn === null || at === null ? null : { lsn, at, system: this.getString('dbSystem') ?? '0' };
  }

  setDbPosition(p: RecordedDbPosition | null): void {
    this.setState('dbPositionLsn', p?.lsn ?? null);
    this.setState('dbPositionAt', p?.at ?? null);
    this.setState('dbSystem', p?.system ?? null);
  }

  dbClock(): RecordedDbClock | null {
    const offsetMs = this.getNumber('dbClockOffsetMs');
    const boundMs = this.getNumber('dbClockBoundMs');
    const at = this.getNumber('dbClockAt');
    return offsetMs === null || boundMs === null || at === null ? null : { offsetMs, boundMs, at };
  }

  setDbClock(c: RecordedDbClock): void {
    this.setState('dbClockOffsetMs', c.offsetMs);
    this.setState('dbClockBoundMs', c.boundMs);
    this.setState('dbClockAt', c.at);
  }

  setState(key: StateKey, value: number | string | null): void {
    this.statements.setState.run(key, value);
  }

  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE: no lock upgrade deadlock with readers). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * A write transaction that spans asynchronous disk work. The receiver renames files into place and
   * the gate removes them only while holding the write lock, so a tombstone can never be applied to
   * a file that is being re-created at the same moment (the two would otherwise interleave).
   */
  withWriteLock<T>(fn: () => Promise<T>): Promise<T> {
    // Callers in one process queue here; other processes wait on SQLite's lock (busy_timeout).
    const run = this.writeLock.then(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn();
        this.db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    });
    this.writeLock = run.then(() => undefined, () => undefined);
    return run;
  }

  /** Files currently held in a quarantine (promoted away and not restored). */
  /** Live entries marked damaged (a full scan: asked once a pass, and only while verify's finding stands). */
  damagedLiveCount(): number {
    return this.statements.damagedLive.get()?.n ?? 0;
  }

  quarantinedCount(): number {
    return this.statements.quarantined.get()?.n ?? 0;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
