/**
 * Carrying out the gate's decisions on disk: applying the tombstones a snapshot time allows, and
 * promotion (quarantine or purge of what a DB promoted at T cannot reference), and undoing a
 * quarantine. Every removal happens under the manifest's write lock, re-reading the row first, so
 * the receiver can never be re-creating the same path at that moment; every removal is logged.
 */
import { copyFile, mkdir, open, readFile, readdir, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { EntryKind, ManifestEntry } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Manifest } from '../manifest/manifest.js';
import { PathGuard } from '../receiver/pathguard.js';
import { compareTreeOrder } from '../relpath.js';
import type { StateDir } from '../statedir.js';
import { formatTime } from '../time.js';
import { bornAfter, tombstonesAllowed, type GateTimes } from './policy.js';
import { splitByReferences } from './references.js';
import { lstatOrNull } from '../lstat.js';

export interface Removal { readonly path: string; readonly kind: EntryKind; readonly reason: string }

export interface SnapshotOutcome {
  /** The snapshot time now in force (never moves backwards). */
  readonly snapshotTime: number;
  /** False when the given time was older than the recorded one and was ignored. */
  readonly advanced: boolean;
  readonly previous: number | null;
  readonly removed: readonly Removal[];
  /** Tombstones still held after this snapshot. */
  readonly pending: number;
  /** Tombstones T allowed that could not be applied (e.g. a directory that still has content). */
  readonly held: readonly { path: string; why: string }[];
  /**
   * With `correct`: the files the gate removed under a recorded T later than the corrected one.
   * They are gone for good (a correction re-creates nothing); the agent re-sends those that still
   * exist on the source only if they change there.
   */
  readonly unrecoverable?: readonly { path: string; removedAt: number; snapshotTime: number }[];
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null);
  if (handle === null) return;
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class GateExecutor {
  private readonly guard: PathGuard;

  constructor(private readonly manifest: Manifest, private readonly root: string, private readonly stateDir: StateDir, private readonly log: Logger) {
    this.guard = new PathGuard(root, stateDir.relToRoot);
  }

  /**
   * Records snapshot time T (monotonic) and applies every tombstone it allows. With `correct`, T is
   * recorded even when it is older than the recorded one (an operator undoing a wrong T): from then
   * on the gate holds deletions against the corrected T; files already removed stay removed and are
   * listed in `unrecoverable`.
   */
  async applySnapshot(snapshotTime: number, times: GateTimes, options: { correct?: boolean } = {}): Promise<SnapshotOutcome> {
    return this.manifest.withWriteLock(async () => {
      // Read under the write lock: another snapshot (the receiver's poller, a second command) may
      // have recorded a newer T since this call was made, and T must never move backwards.
      const previous = this.manifest.getNumber('snapshotTime');
      const correct = options.correct ?? false;
      const advanced = correct || previous === null || snapshotTime >= previous;
      const effective = advanced ? snapshotTime : previous;
      if (advanced) this.manifest.setState('snapshotTime', effective);
      this.manifest.setState('skewMs', times.skewMs);
      this.manifest.setState('deleteGraceMs', times.deleteGraceMs);
      const removed: Removal[] = [];
      const held: { path: string; why: string }[] = [];
      const dirs = new Set<string>();
      const now = Date.now();
      for (const row of tombstonesAllowed(this.manifest.tombstones(), effective, times)) {
        const reason = `tombstone applied: deleted on the source at ${formatTime(row.deletedAt)}, DB snapshot ${formatTime(effective)}`;
        const why = await this.removeFromDisk(row);
        if (why !== null) {
          held.push({ path: row.path, why });
          continue;
        }
        dirs.add(dirname(join(this.root, row.path)));
        this.manifest.remove(row.path);
        this.manifest.logRemoval({ path: row.path, kind: row.kind, reason, at: now, snapshotTime: effective, quarantine: null });
        removed.push({ path: row.path, kind: row.kind, reason });
      }
      await Promise.all([...dirs].map(fsyncDir));
      for (const r of removed) this.log.info(`removed ${r.path}: ${r.reason}`);
      const outcome = { snapshotTime: effective, advanced, previous, removed, held, pending: this.manifest.counts().tombstones };
      if (!correct) return outcome;
      if (previous !== null && previous !== effective) {
        this.log.warn('SNAPSHOT_CORRECTED', `recorded snapshot time corrected from ${formatTime(previous)} to ${formatTime(effective)}`);
      }
      return { ...outcome, unrecoverable: this.manifest.removedUnder(effective) };
    });
  }

  /** Removes a row's path from disk; returns why it was kept instead, or null when it is gone. */
  private async removeFromDisk(row: ManifestEntry): Promise<string | null> {
    try {
      const abs = this.guard.resolve(row.path);
      if (!(await this.guard.parentsExist(row.path))) return null; // an ancestor is gone: so is the path
      const st = lstatOrNull(abs);
      if (st === null) return null;
      if (st.isDirectory()) {
        if (row.kind !== 'dir') return 'a directory now stands where a file was recorded';
        const children = await readdir(abs);
        if (children.length > 0) return `directory still holds ${children.length} entr${children.length === 1 ? 'y' : 'ies'}`;
        await rmdir(abs);
        return null;
      }
      await unlink(abs);
      return null;
    } catch (err) {
      return describeError(err);
    }
  }

  /** What a promotion at T would take off the standby, in tree order. */
  planPromotion(snapshotTime: number, times: GateTimes): Array<ManifestEntry & { reason: string }> {
    const rows = [...this.manifest.live(), ...this.manifest.tombstones()];
    const picked = new Map<string, ManifestEntry & { reason: string }>();
    for (const row of bornAfter(rows, snapshotTime, times.skewMs)) {
      picked.set(row.path, { ...row, reason: `born ${formatTime(row.bornMs)}, after the DB snapshot ${formatTime(snapshotTime)} + skew` });
    }
    for (const row of tombstonesAllowed(this.manifest.tombstones(), snapshotTime, times)) {
      if (row.kind === 'dir' || picked.has(row.path)) continue;
      picked.set(row.path, { ...row, reason: `deleted on the source at ${formatTime(row.deletedAt)}, before the DB snapshot ${formatTime(snapshotTime)} - skew - grace` });
    }
    return [...picked.values()].sort((a, b) => compareTreeOrder(a.path, b.path));
  }

  /**
   * Moves (or with purge, deletes) every path of the plan. Quarantine: STATE/quarantine/ID/ keeps
   * the same relative paths, plus report.json listing each entry; `restore` moves them back.
   * With `referenced` (file names the promoted DB references), a path of the plan whose name is in
   * it stays where it is and is listed in `kept`.
   */
  async promote(snapshotTime: number, times: GateTimes, purge: boolean, referenced: ReadonlySet<string> | null = null): Promise<{ id: string | null; removed: Removal[]; kept: string[]; failed: { path: string; why: string }[] }> {
    const id = purge ? null : new Date().toISOString().replace(/[:.]/g, '-');
    const quarantineDir = id === null ? null : join(this.stateDir.abs, 'quarantine', id);
    return this.manifest.withWriteLock(async () => {
      const { move: plan, keep } = splitByReferences(this.planPromotion(snapshotTime, times), referenced);
      for (const row of keep) this.log.info(`kept ${row.path}: the promoted DB references it (${row.reason})`);
      const removed: Removal[] = [];
      const failed: { path: string; why: string }[] = [];
      const report: object[] = [];
      const now = Date.now();
      for (const row of plan) {
        try {
          const abs = this.guard.resolve(row.path);
          const present = (await this.guard.parentsExist(row.path)) && (lstatOrNull(abs)) !== null;
          if (present) {
            if (quarantineDir === null) await unlink(abs);
            else await moveInto(abs, join(quarantineDir, row.path));
          }
          this.manifest.remove(row.path);
          this.manifest.logRemoval({ path: row.path, kind: row.kind, reason: `${purge ? 'purged' : 'quarantined'} at promotion: ${row.reason}`, at: now, snapshotTime, quarantine: id });
          removed.push({ path: row.path, kind: row.kind, reason: row.reason });
          const { path, kind, size, mtimeMs, mode, hash, target, bornMs, deletedAt } = row;
          report.push({ path, kind, size, mtimeMs, mode, hash, target, bornMs, deletedAt, reason: row.reason, wasPresent: present });
        } catch (err) {
          failed.push({ path: row.path, why: describeError(err) });
        }
      }
      if (quarantineDir !== null) {
        await mkdir(quarantineDir, { recursive: true, mode: 0o700 });
        const body = { id, createdAt: now, snapshotTime, skewMs: times.skewMs, deleteGraceMs: times.deleteGraceMs, root: this.root, entries: report };
        await writeFile(join(quarantineDir, REPORT_FILE), JSON.stringify(body, null, 2) + '\n');
      }
      return { id, removed, kept: keep.map((row) => row.path), failed };
    });
  }

  /** Moves a quarantine's files back and records them again; returns what was restored and what was in the way. */
  async restore(id: string): Promise<{ restored: string[]; skipped: { path: string; why: string }[] }> {
    const quarantineDir = join(this.stateDir.abs, 'quarantine', id);
    let report: QuarantineReport;
    try {
      report = JSON.parse(await readFile(join(quarantineDir, REPORT_FILE), 'utf8')) as QuarantineReport;
    } catch (err) {
      throw new WarmsyncError('NO_QUARANTINE', `no readable quarantine ${id} in ${join(this.stateDir.abs, 'quarantine')}: ${describeError(err)}`);
    }
    return this.manifest.withWriteLock(async () => {
      const restored: string[] = [];
      const skipped: { path: string; why: string }[] = [];
      const now = Date.now();
      for (const e of report.entries) {
        const from = join(quarantineDir, e.path);
        if (!e.wasPresent || (lstatOrNull(from)) === null) {
          skipped.push({ path: e.path, why: 'not in the quarantine (it was already absent at promotion)' });
          continue;
        }
        try {
          const abs = this.guard.resolve(e.path);
          if ((lstatOrNull(abs)) !== null || this.manifest.get(e.path) !== undefined) {
            skipped.push({ path: e.path, why: 'something is at that path again' });
            continue;
          }
          await this.guard.prepareParents(e.path);
          await moveInto(from, abs);
          this.manifest.restoreRow(e, now);
          this.manifest.markRestored(id, e.path, now);
          restored.push(e.path);
        } catch (err) {
          skipped.push({ path: e.path, why: describeError(err) });
        }
      }
      return { restored, skipped };
    });
  }

  /** Quarantine ids, oldest first. */
  async quarantines(): Promise<string[]> {
    return (await readdir(join(this.stateDir.abs, 'quarantine')).catch(() => [])).sort();
  }
}

export const REPORT_FILE = 'report.json';

interface QuarantineReport {
  id: string;
  entries: Array<ManifestEntry & { reason: string; wasPresent: boolean }>;
}

/** rename(), or copy + fsync + unlink when the destination is on another file system. */
async function moveInto(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true, mode: 0o700 });
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to);
    const handle = await open(to, 'r');
    await handle.sync().finally(() => handle.close());
    await unlink(from);
  }
}
