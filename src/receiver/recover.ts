/**
 * Start-up recovery after a crash: a receiver that did not stop cleanly may have left temporary
 * files (never at a final path: invariant 2). They are found by their recognisable names and removed,
 * through the confined layer (directories entered by descriptor, never through a symlink).
 * The manifest needs no repair: before a change reaches a final path its row is marked damaged
 * (Manifest.recordInstalling), and only the record after the rename and its sync clears the mark, so
 * a change made but not recorded leaves a damaged row, which the agent's next reconciliation sends
 * again, or deletes through a tombstone when the source no longer has it.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConfinedRoot } from '../confined/root.js';
import { isTempName } from '../confined/temp.js';
import { WarmsyncError } from '../errors.js';
import { corruptMessage } from '../manifest/db.js';
import { MANIFEST_FILE } from '../manifest/manifest.js';

/** Removes leftover temp files below `root`, skipping its state dir (`excludedRel`); returns how many. */
export function removeLeftoverTemps(root: ConfinedRoot): number {
  return root.sweep(isTempName, root.excludedRel);
}

/**
 * An empty manifest file is taken as a new manifest (SQLite sees an empty database), which is right
 * for a first start and wrong for a standby that holds data: a manifest truncated to 0 bytes would
 * start afresh and forget its tombstones. Refused then, with the recovery in the message.
 */
export async function refuseEmptiedManifest(root: string, stateDir: string): Promise<void> {
  const file = join(stateDir, MANIFEST_FILE);
  const st = await stat(file).catch(() => null);
  if (st === null || st.size > 0) return;
  const others = (await readdir(root)).filter((name) => join(root, name) !== stateDir);
  if (others.length > 0) throw new WarmsyncError('MANIFEST_CORRUPT', corruptMessage(file, 'the file is empty, but the root holds data'));
}
