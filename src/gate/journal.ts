/**
 * The journals that make promote and restore crash-safe (shared/DESIGN.md, invariant 6), and the
 * pure decisions that finish them. Both commands write their journal (the full plan) durably before
 * they move anything; a run, first or after a kill, then looks at each planned path where it is now
 * (in the tree, in the quarantine, in the manifest) and one function below says what to do with it.
 * Running the same command again after a kill at any point therefore finishes the job.
 *
 * The promotion's journal is its quarantine's report.json, written with state "planned" before the
 * first move and rewritten "done" once the manifest change is committed ("undone" once a restore
 * undid an unfinished promotion, so that promote never resumes it). Restore's journal lists the
 * paths it moves back.
 */
import type { EntryKind, ManifestEntry } from '../entry.js';

export type PromotionState = 'planned' | 'done' | 'undone';

/** One planned path: its manifest row at planning time, why it goes, and whether it was on disk. */
export type JournalEntry = Omit<ManifestEntry, 'damaged'> & { readonly reason: string; readonly wasPresent: boolean };

export interface PromotionJournal {
  readonly id: string;
  /** Absent in reports written before journals existed: those are done. */
  readonly state?: PromotionState;
  readonly createdAt: number;
  readonly snapshotTime: number;
  readonly skewMs: number;
  readonly deleteGraceMs: number;
  readonly root: string;
  readonly entries: readonly JournalEntry[];
  /** Paths of the plan that could not be moved (in a done report). */
  readonly failed?: readonly { path: string; why: string }[];
}

export interface RestoreJournal {
  readonly id: string;
  /** Paths this restore moves (or moved) from the quarantine back into the tree. */
  readonly paths: readonly string[];
}

/** What is at a planned path now. */
export interface Observed {
  /** The tree: nothing; the planned entry (same kind, and for a file the same size); something else. */
  readonly tree: 'absent' | 'same' | 'other';
  readonly inQuarantine: boolean;
  /** The manifest row: none; the journal's row unchanged; a different row. */
  readonly row: 'absent' | 'same' | 'other';
}

export type PromoteStep =
  /** Move the file into the quarantine, then remove its row and log the removal. */
  | { readonly do: 'move' }
  /** The file is where it should be (or was never there): remove its row and log the removal. */
  | { readonly do: 'record' }
  /** Finished by an earlier run (the row is gone with its removal logged): nothing to do. */
  | { readonly do: 'done' }
  /** Something changed the path since the plan: leave everything as it is and say why. */
  | { readonly do: 'leave'; readonly why: string };

export function promoteStep(wasPresent: boolean, o: Observed): PromoteStep {
  if (o.row === 'other') return { do: 'leave', why: 'its manifest row changed since the promotion was planned' };
  if (o.inQuarantine) {
    if (o.tree !== 'absent') return { do: 'leave', why: 'it is both in the tree and in the quarantine' };
    return o.row === 'same' ? { do: 'record' } : { do: 'done' };
  }
  if (o.tree !== 'absent') {
    if (!wasPresent) return { do: 'leave', why: 'it appeared after the promotion was planned' };
    return o.row === 'same' ? { do: 'move' } : { do: 'leave', why: 'it is in the tree without its manifest row' };
  }
  // In neither place: absent at planning (or removed by someone else since): only the row goes.
  return o.row === 'same' ? { do: 'record' } : { do: 'done' };
}

export type RestoreStep =
  /** Move the file back, then record its row again (unless it is still there) and mark it restored. */
  | { readonly do: 'move-back' }
  /** An earlier restore moved it back before it was killed: record the row and mark it restored. */
  | { readonly do: 'record' }
  | { readonly do: 'skip'; readonly why: string };

/**
 * `movedByRestore`: the path is in this quarantine's restore journal, so a file of the planned kind
 * and size at its path without a manifest row is the one an interrupted restore put back.
 */
export function restoreStep(entry: { readonly wasPresent: boolean }, o: Observed, movedByRestore: boolean, promotionDone: boolean): RestoreStep {
  if (o.inQuarantine) {
    if (o.tree !== 'absent' || o.row === 'other') return { do: 'skip', why: 'something is at that path again' };
    return { do: 'move-back' };
  }
  if (movedByRestore && o.tree === 'same' && o.row !== 'other') return { do: 'record' };
  if (!entry.wasPresent) return { do: 'skip', why: 'not in the quarantine (it was already absent at promotion)' };
  if (!promotionDone && o.tree !== 'absent' && o.row === 'same') return { do: 'skip', why: 'never moved: the promotion stopped before it' };
  if (o.tree === 'absent') return { do: 'skip', why: 'not in the quarantine' };
  return { do: 'skip', why: movedByRestore ? 'already restored' : 'something is at that path again' };
}

/** The manifest row as the journal has it, against the one in the manifest now. */
export function sameRow(a: Omit<ManifestEntry, 'damaged'>, b: ManifestEntry | undefined): boolean {
  return b !== undefined && a.kind === b.kind && a.size === b.size && a.mtimeMs === b.mtimeMs && a.mode === b.mode
    && a.hash === b.hash && a.target === b.target && a.bornMs === b.bornMs && a.deletedAt === b.deletedAt;
}

/** A tree entry of `kind` (and for a file, `size`) stands for the planned entry. */
export function sameOnDisk(planned: { readonly kind: EntryKind; readonly size: number }, found: { readonly kind: EntryKind; readonly size: number } | null): Observed['tree'] {
  if (found === null) return 'absent';
  if (found.kind !== planned.kind) return 'other';
  return planned.kind !== 'file' || found.size === planned.size ? 'same' : 'other';
}
