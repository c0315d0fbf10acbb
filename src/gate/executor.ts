/**
 * Carrying out the gate's decisions on disk: applying the tombstones a snapshot time allows, and
 * promotion (quarantine or purge of what a DB promoted at T cannot reference), and undoing a
 * quarantine. Every removal happens under the manifest's write lock, re-reading the row first, so
 * the receiver can never be re-creating the same path at that moment; every removal is logged.
 * Every operation on the tree and the quarantine goes through the confined layer
 * (../confined/root.ts): resolved beneath the root or the state dir, never through a symlink.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfinedRoot } from '../confined/root.js';
import type { EntryKind, ManifestEntry } from '../entry.js';
import { WarmsyncError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Manifest } from '../manifest/manifest.js';
import { compareTreeOrder, parentOf } from '../relpath.js';
import type { StateDir } from '../statedir.js';
import { formatTime } from '../time.js';
import { bornAfter, tombstonesAllowed, type GateTimes } from './policy.js';
import { splitByReferences } from './references.js';
import { faultPoint } from '../faultpoint.js';
import { promoteStep, restoreStep, sameOnDisk, sameRow, type JournalEntry, type Observed, type PromotionJournal, type RestoreJournal, type RestoreStep } from './journal.js';

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

/** The tree and the state dir, open for one operation (closed after it). */
interface Roots { readonly tree: ConfinedRoot; readonly state: ConfinedRoot }

export class GateExecutor {
  constructor(private readonly manifest: Manifest, private readonly root: string, private readonly stateDir: StateDir, private readonly log: Logger) {}

  private async withRoots<T>(fn: (roots: Roots) => Promise<T>): Promise<T> {
    const tree = ConfinedRoot.open(this.root, this.stateDir.relToRoot);
    let state: ConfinedRoot;
    try {
      state = ConfinedRoot.open(this.stateDir.abs);
    } catch (err) {
      tree.close();
      throw err;
    }
    try {
      return await fn({ tree, state });
    } finally {
      tree.close();
      state.close();
    }
  }

  /** Where path `rel` goes in quarantine `id`, relative to the state dir. */
  private quarantineRel(id: string, rel: string): string {
    return `quarantine/${id}/${rel}`;
  }

  /**
   * Records snapshot time T (monotonic) and applies every tombstone it allows. With `correct`, T is
   * recorded even when it is older than the recorded one (an operator undoing a wrong T): from then
   * on the gate holds deletions against the corrected T; files already removed stay removed and are
   * listed in `unrecoverable`.
   */
  async applySnapshot(snapshotTime: number, times: GateTimes, options: { correct?: boolean } = {}): Promise<SnapshotOutcome> {
    return this.manifest.withWriteLock(() => this.withRoots(async ({ tree }) => {
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
        const why = this.removeFromDisk(tree, row);
        if (why !== null) {
          held.push({ path: row.path, why });
          continue;
        }
        dirs.add(parentOf(row.path));
        this.manifest.remove(row.path);
        this.manifest.logRemoval({ path: row.path, kind: row.kind, reason, at: now, snapshotTime: effective, quarantine: null });
        removed.push({ path: row.path, kind: row.kind, reason });
      }
      await tree.fsyncDirs(dirs);
      for (const r of removed) this.log.info(`removed ${r.path}: ${r.reason}`);
      const outcome = { snapshotTime: effective, advanced, previous, removed, held, pending: this.manifest.counts().tombstones };
      if (!correct) return outcome;
      if (previous !== null && previous !== effective) {
        this.log.warn('SNAPSHOT_CORRECTED', `recorded snapshot time corrected from ${formatTime(previous)} to ${formatTime(effective)}`);
      }
      return { ...outcome, unrecoverable: this.manifest.removedUnder(effective) };
    }));
  }

  /** Removes a row's path from disk; returns why it was kept instead, or null when it is gone. */
  private removeFromDisk(tree: ConfinedRoot, row: ManifestEntry): string | null {
    try {
      tree.check(row.path);
      // Missing (or an ancestor is gone): so is the path. A symlink in its directory part: UNSAFE_PATH, held.
      const st = tree.lstat(row.path);
      if (st === null) return null;
      if (st.kind === 'dir') {
        if (row.kind !== 'dir') return 'a directory now stands where a file was recorded';
        const dir = tree.needDir(row.path);
        let children: number;
        try {
          children = dir.list().length;
        } finally {
          dir.release();
        }
        if (children > 0) return `directory still holds ${children} entr${children === 1 ? 'y' : 'ies'}`;
        tree.remove(row.path, true);
        return null;
      }
      tree.remove(row.path, false);
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
   *
   * Crash-safe (invariant 6): report.json is first written, durably, as the journal of the whole
   * plan (state "planned"), and only then does anything move; the manifest change is one
   * transaction committed after the moves (and their directories) are durable; then the report is
   * rewritten "done". A promotion killed at any point is finished by the next promote with the same
   * T (same quarantine id), or undone by `restore`.
   */
  async promote(snapshotTime: number, times: GateTimes, purge: boolean, referenced: ReadonlySet<string> | null = null): Promise<PromoteOutcome> {
    if (purge) return this.purge(snapshotTime, times, referenced);
    const step = faultPoint('promote');
    let journal: PromotionJournal | undefined;
    const result = await this.manifest.withWriteLock(() => this.withRoots(async ({ tree, state }) => {
      const pending = await this.unfinishedPromotion({ clean: true });
      let kept: string[] = [];
      let resumed = false;
      if (pending !== null) {
        if (pending.snapshotTime !== snapshotTime) {
          throw new WarmsyncError('PROMOTE_PENDING', `the promotion ${pending.id} at T ${formatTime(pending.snapshotTime)} was interrupted; rerun promote with --time ${formatTime(pending.snapshotTime)} to finish it, or \`warmsync restore --id ${pending.id}\` to undo it; nothing changed`);
        }
        if (existsSync(this.restoreJournalFile(pending.id))) {
          throw new WarmsyncError('RESTORE_PENDING', `a restore of the interrupted promotion ${pending.id} was itself interrupted; rerun \`warmsync restore --id ${pending.id}\` to finish it; nothing changed`);
        }
        journal = pending;
        resumed = true;
        this.log.warn('PROMOTE_RESUMED', `finishing the interrupted promotion ${pending.id} (planned ${formatTime(pending.createdAt)}, ${pending.entries.length} path(s) in its journal)`);
      } else {
        const { move: plan, keep } = splitByReferences(this.planPromotion(snapshotTime, times), referenced);
        for (const row of keep) this.log.info(`kept ${row.path}: the promoted DB references it (${row.reason})`);
        kept = keep.map((row) => row.path);
        const entries: JournalEntry[] = [];
        for (const row of plan) {
          const { path, kind, size, mtimeMs, mode, hash, target, bornMs, deletedAt, reason, owner } = row;
          let wasPresent = false;
          try {
            tree.check(path);
            wasPresent = tree.probe(path) !== null;
          } catch {
            // a bad path in the manifest: not on disk as far as promote goes
          }
          // The owner too: a restore puts the row back as it was, or the next agent run would send every owner again.
          entries.push({ path, kind, size, mtimeMs, mode, hash, target, bornMs, deletedAt, reason, wasPresent, owner: owner ?? null });
        }
        const id = new Date().toISOString().replace(/[:.]/g, '-');
        journal = { id, state: 'planned', createdAt: Date.now(), snapshotTime, skewMs: times.skewMs, deleteGraceMs: times.deleteGraceMs, root: this.root, entries };
        const dir = this.quarantineDir(id);
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await fsyncDir(dirname(dir));
        await fsyncDir(this.stateDir.abs);
        await this.writeDurable(join(dir, REPORT_FILE), journal);
      }
      step(0);
      const id = journal.id;
      const removed: Removal[] = [];
      const failed: { path: string; why: string }[] = [];
      const done: JournalEntry[] = [];
      const dirs = new Set<string>();
      const quarantineDirs = new Set<string>();
      const now = Date.now();
      let moved = 0;
      for (const e of journal.entries) {
        try {
          if (e.path === REPORT_FILE) {
            failed.push({ path: e.path, why: `its name is that of the quarantine's ${REPORT_FILE}; left in place` });
            continue;
          }
          const into = this.quarantineRel(id, e.path);
          const action = promoteStep(e.wasPresent, this.observe({ tree, state }, e, into));
          if (action.do === 'leave') {
            failed.push({ path: e.path, why: action.why });
            continue;
          }
          if (action.do === 'move') {
            tree.move(e.path, state, into, 0o700);
            dirs.add(parentOf(e.path));
            quarantineDirs.add(parentOf(into));
            step(++moved);
          }
          if (action.do !== 'done') {
            this.manifest.remove(e.path);
            this.manifest.logRemoval({ path: e.path, kind: e.kind, reason: `quarantined at promotion: ${e.reason}`, at: now, snapshotTime, quarantine: journal.id });
          }
          removed.push({ path: e.path, kind: e.kind, reason: e.reason });
          done.push({ ...e, wasPresent: state.probe(into) !== null });
        } catch (err) {
          failed.push({ path: e.path, why: describeError(err) });
        }
      }
      // Nothing is recorded before its rename is durable.
      await Promise.all([tree.fsyncDirs(dirs), state.fsyncDirs(quarantineDirs)]);
      return { moved, resumed, outcome: { id: journal.id, removed, kept, failed, resumed }, done };
    }));
    step(result.moved + 1);
    if (journal !== undefined) {
      await this.writeDurable(join(this.quarantineDir(journal.id), REPORT_FILE), { ...journal, state: 'done', entries: result.done, failed: result.outcome.failed });
    }
    return result.outcome;
  }

  /** promote --purge: deletes instead of quarantining. A rerun after a kill plans again from the manifest, which the kill left unchanged, and deletes the rest. */
  private async purge(snapshotTime: number, times: GateTimes, referenced: ReadonlySet<string> | null): Promise<PromoteOutcome> {
    return this.manifest.withWriteLock(() => this.withRoots(async ({ tree }) => {
      const pending = await this.unfinishedPromotion({ clean: true });
      if (pending !== null) {
        throw new WarmsyncError('PROMOTE_PENDING', `the promotion ${pending.id} at T ${formatTime(pending.snapshotTime)} was interrupted; finish it (promote --time ${formatTime(pending.snapshotTime)}, without --purge) or undo it (\`warmsync restore --id ${pending.id}\`) first; nothing changed`);
      }
      const { move: plan, keep } = splitByReferences(this.planPromotion(snapshotTime, times), referenced);
      for (const row of keep) this.log.info(`kept ${row.path}: the promoted DB references it (${row.reason})`);
      const removed: Removal[] = [];
      const failed: { path: string; why: string }[] = [];
      const dirs = new Set<string>();
      const now = Date.now();
      for (const row of plan) {
        try {
          tree.check(row.path);
          if (tree.lstat(row.path) !== null) {
            tree.remove(row.path, false);
            dirs.add(parentOf(row.path));
          }
          this.manifest.remove(row.path);
          this.manifest.logRemoval({ path: row.path, kind: row.kind, reason: `purged at promotion: ${row.reason}`, at: now, snapshotTime, quarantine: null });
          removed.push({ path: row.path, kind: row.kind, reason: row.reason });
        } catch (err) {
          failed.push({ path: row.path, why: describeError(err) });
        }
      }
      await tree.fsyncDirs(dirs);
      return { id: null, removed, kept: keep.map((row) => row.path), failed, resumed: false };
    }));
  }

  /**
   * Moves a quarantine's files back and records them again; returns what was restored and what was
   * in the way. Works on a finished promotion and on an interrupted one (then only what it moved
   * goes back, and promote will not resume it). Crash-safe like promote: the paths to move back are
   * journaled durably first, and a rerun after a kill finishes the restore.
   */
  async restore(id: string): Promise<{ restored: string[]; skipped: { path: string; why: string }[] }> {
    const dir = this.quarantineDir(id);
    const report = await this.readReport(id);
    if (report === null) throw new WarmsyncError('NO_QUARANTINE', `no readable quarantine ${id} in ${join(this.stateDir.abs, 'quarantine')}`);
    const journalFile = this.restoreJournalFile(id);
    const step = faultPoint('restore');
    const promotionDone = report.state !== 'planned';
    const result = await this.manifest.withWriteLock(() => this.withRoots(async ({ tree, state }) => {
      const earlier = await readJson<RestoreJournal>(journalFile);
      const movedBefore = new Set(earlier?.paths ?? []);
      const planned: Array<{ e: JournalEntry; o: Observed; action: RestoreStep }> = [];
      for (const e of report.entries) {
        let o: Observed;
        try {
          o = this.observe({ tree, state }, e, this.quarantineRel(id, e.path));
        } catch (err) {
          planned.push({ e, o: { tree: 'other', inQuarantine: false, row: 'other' }, action: { do: 'skip', why: describeError(err) } });
          continue;
        }
        planned.push({ e, o, action: restoreStep(e, o, movedBefore.has(e.path), promotionDone) });
      }
      const toMove = planned.filter((p) => p.action.do === 'move-back').map((p) => p.e.path);
      if (toMove.some((p) => !movedBefore.has(p))) await this.writeDurable(journalFile, { id, paths: [...new Set([...movedBefore, ...toMove])] } satisfies RestoreJournal);
      step(0);
      const restored: string[] = [];
      const skipped: { path: string; why: string }[] = [];
      const dirs = new Set<string>();
      const now = Date.now();
      let moved = 0;
      for (const { e, o, action } of planned) {
        if (action.do === 'skip') {
          skipped.push({ path: e.path, why: action.why });
          continue;
        }
        try {
          if (action.do === 'move-back') {
            tree.check(e.path);
            // Missing directories of the path are created (0755), never through a symlink.
            state.move(this.quarantineRel(id, e.path), tree, e.path, 0o755);
            dirs.add(parentOf(e.path));
            step(++moved);
          }
          if (o.row === 'absent') this.manifest.restoreRow({ ...e, damaged: false }, now);
          this.manifest.markRestored(id, e.path, now);
          restored.push(e.path);
        } catch (err) {
          skipped.push({ path: e.path, why: describeError(err) });
        }
      }
      await tree.fsyncDirs(dirs);
      return { moved, outcome: { restored, skipped } };
    }));
    step(result.moved + 1);
    // An interrupted promotion that was undone is never resumed by promote.
    if (!promotionDone) await this.writeDurable(join(dir, REPORT_FILE), { ...report, state: 'undone' });
    await unlink(journalFile).catch(() => undefined);
    return result.outcome;
  }

  /** Quarantine ids (those with a report), oldest first. */
  async quarantines(): Promise<string[]> {
    const names = (await readdir(join(this.stateDir.abs, 'quarantine')).catch(() => [])).sort();
    return names.filter((id) => existsSync(join(this.quarantineDir(id), REPORT_FILE)));
  }

  /**
   * The quarantine whose promotion was interrupted (its report still "planned"), if any. A
   * quarantine dir without a report is what a kill before the journal was durable leaves: nothing
   * was moved into it, and with `clean` it is removed.
   */
  async unfinishedPromotion(options: { clean?: boolean } = {}): Promise<PromotionJournal | null> {
    for (const id of (await readdir(join(this.stateDir.abs, 'quarantine')).catch(() => [])).sort()) {
      const report = await this.readReport(id);
      if (report === null) {
        if (options.clean === true && !existsSync(join(this.quarantineDir(id), REPORT_FILE))) await rmdir(this.quarantineDir(id)).catch(() => undefined);
        continue;
      }
      if (report.state === 'planned') return report;
    }
    return null;
  }

  private quarantineDir(id: string): string {
    return join(this.stateDir.abs, 'quarantine', id);
  }

  private restoreJournalFile(id: string): string {
    return join(this.stateDir.abs, JOURNAL_DIR, `restore-${id}.json`);
  }

  private async readReport(id: string): Promise<PromotionJournal | null> {
    return readJson<PromotionJournal>(join(this.quarantineDir(id), REPORT_FILE));
  }

  /**
   * Where a planned path is now: in the tree, in the quarantine (at `into`, relative to the state
   * dir), in the manifest. Throws BAD_PATH, or UNSAFE_PATH for a symlink in its directory part.
   */
  private observe({ tree, state }: Roots, e: JournalEntry, into: string): Observed {
    tree.check(e.path);
    const st = tree.lstat(e.path);
    const found = st === null ? null : { kind: (st.kind === 'file' ? 'file' : st.kind === 'symlink' ? 'symlink' : 'dir') as EntryKind, size: st.size };
    const row = this.manifest.get(e.path);
    return { tree: sameOnDisk(e, found), inQuarantine: state.probe(into) !== null, row: row === undefined ? 'absent' : sameRow(e, row) ? 'same' : 'other' };
  }

  /** Writes JSON durably: a temp file in STATE/journal, fsynced, renamed to `file`, its directory fsynced. */
  private async writeDurable(file: string, value: unknown): Promise<void> {
    const tmpDir = join(this.stateDir.abs, JOURNAL_DIR);
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const tmp = join(tmpDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(value, null, 1) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    await fsyncDir(dirname(file));
  }
}

export interface PromoteOutcome {
  readonly id: string | null;
  readonly removed: Removal[];
  readonly kept: string[];
  readonly failed: { path: string; why: string }[];
  /** This run finished a promotion an earlier, interrupted run had planned. */
  readonly resumed: boolean;
}

/** Where promote and restore keep their temp files and restore its journals. */
const JOURNAL_DIR = 'journal';

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

export const REPORT_FILE = 'report.json';
