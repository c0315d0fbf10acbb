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

export interface SafetyHalt { readonly code: 'SOURCE_EMPTY' | 'MASS_DELETE'; readonly message: string }

/**
 * @param sourceEntries entries the scan found (after excludes)
 * @param standbyFiles live (non-tombstoned) files in the manifest
 */
export function checkSafety(changes: readonly Change[], sourceEntries: number, standbyFiles: number, options: SafetyOptions): SafetyHalt | null {
  const deletedFiles = changes.filter((c) => c.new === null && c.old?.kind === 'file').length;
  if (sourceEntries === 0 && standbyFiles > 0) {
    return {
      code: 'SOURCE_EMPTY',
      message: `the source root is empty but the standby holds ${standbyFiles} files; is its disk mounted? Nothing was changed`,
    };
  }
  if (deletedFiles > options.minDeletesToHalt && deletedFiles > options.maxDeleteShare * standbyFiles) {
    const pct = Math.round((100 * deletedFiles) / standbyFiles);
    return {
      code: 'MASS_DELETE',
      message: `this run would delete ${deletedFiles} of ${standbyFiles} files on the standby (${pct} %, above --max-delete ${Math.round(options.maxDeleteShare * 100)} %); nothing was changed. If this is intended, rerun with a higher --max-delete`,
    };
  }
  return null;
}
