/**
 * Safety halts (invariant 5): an unmounted or emptied source must never become a tombstone for every
 * file. Pure: decides from counts; the agent refuses to send anything when a halt is returned.
 */
import type { Change } from './diff.js';

export interface SafetyOptions {
  /** Halt when a run would tombstone more than this share (0..1] of the files the standby holds. */
  readonly maxDeleteShare: number;
  /** Runs that tombstone at most this many files are never halted by the share rule. */
  readonly minDeletesToHalt: number;
}

export const DEFAULT_SAFETY: SafetyOptions = { maxDeleteShare: 0.5, minDeletesToHalt: 10 };

export interface SafetyHalt {
  readonly code: 'SOURCE_EMPTY' | 'MASS_DELETE';
  /** What was found, without what to do about it (that depends on the mode). */
  readonly finding: string;
  /** The finding and, for `agent --once`, what to do about it. */
  readonly message: string;
}

/**
 * @param sourceEntries entries the scan found (after excludes)
 * @param standbyFiles live (non-tombstoned) files in the manifest
 */
export function checkSafety(changes: readonly Change[], sourceEntries: number, standbyFiles: number, options: SafetyOptions): SafetyHalt | null {
  const deletedFiles = changes.filter((c) => c.new === null && c.old?.kind === 'file').length;
  if (sourceEntries === 0 && standbyFiles > 0) {
    const finding = `the source root is empty but the standby holds ${standbyFiles} files`;
    return { code: 'SOURCE_EMPTY', finding, message: `${finding}; is its disk mounted? Nothing was changed` };
  }
  if (deletedFiles > options.minDeletesToHalt && deletedFiles > options.maxDeleteShare * standbyFiles) {
    const pct = Math.round((100 * deletedFiles) / standbyFiles);
    const finding = `this run would delete ${deletedFiles} of ${standbyFiles} files on the standby (${pct} %, above --max-delete ${Math.round(options.maxDeleteShare * 100)} %)`;
    return { code: 'MASS_DELETE', finding, message: `${finding}; no deletion was sent (creations and updates were). If this is intended, rerun with a higher --max-delete` };
  }
  return null;
}

/** A deletion (of a file, a directory or a link): what a halt holds back. */
export function isDeletion(change: Change): boolean {
  return change.new === null;
}

/**
 * The live agent's side of invariant 5. A live agent sees a mass deletion as a stream of small
 * batches, none of which would trip checkSafety alone, so file deletions are counted over a
 * sliding window against the standby's file count. Once the rule trips (here, or on a full pass's
 * checkSafety), every deletion is held, not sent, until the operator releases them or none is left
 * to hold; everything else keeps flowing. Pure: the clock is passed in.
 */
export class DeletionGuard {
  /** File deletions admitted within the window, oldest first. */
  private readonly admitted: Array<{ at: number; files: number }> = [];
  private tripped: SafetyHalt | null = null;

  constructor(private readonly options: SafetyOptions, private readonly windowMs: number) {}

  /** Why deletions are held now, or null while they flow. */
  get halt(): SafetyHalt | null {
    return this.tripped;
  }

  /**
   * May a deletion of `files` files (0 for a directory or a link) be sent at `now`, with the standby
   * holding `standbyFiles`? When it would take the window past the share, the guard trips.
   */
  admit(files: number, now: number, standbyFiles: number): boolean {
    if (this.tripped !== null) return false;
    while (this.admitted.length > 0 && (this.admitted[0] as { at: number }).at <= now - this.windowMs) this.admitted.shift();
    const inWindow = this.admitted.reduce((n, a) => n + a.files, 0) + files;
    const { minDeletesToHalt, maxDeleteShare } = this.options;
    // A share of 1 (--max-delete 100) allows everything, as it does for a pass: the window can count
    // more deletions than the standby holds files (a tree deleted and re-created, twice).
    if (maxDeleteShare < 1 && inWindow > minDeletesToHalt && inWindow > maxDeleteShare * standbyFiles) {
      const pct = Math.round((100 * inWindow) / Math.max(1, standbyFiles));
      const finding = `${inWindow} of the standby's ${standbyFiles} files deleted on the source within ${Math.round(this.windowMs / 1000)} s (${pct} %, above --max-delete ${Math.round(maxDeleteShare * 100)} %)`;
      this.tripped = { code: 'MASS_DELETE', finding, message: finding };
      return false;
    }
    if (files > 0) this.admitted.push({ at: now, files });
    return true;
  }

  /** Holds every deletion from now on, for `halt` (a full pass's checkSafety verdict). */
  trip(halt: SafetyHalt): void {
    this.tripped ??= halt;
  }

  /** Lets deletions flow again, with an empty window: the operator released them, or none is held. */
  release(): void {
    this.tripped = null;
    this.admitted.length = 0;
  }
}
