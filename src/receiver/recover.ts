/**
 * Start-up recovery after a crash: a receiver that did not stop cleanly may have left temporary
 * files (never at a final path: invariant 2). They are found by their recognisable names and removed.
 * Manifest rows are only written after the rename and directory fsync, so the manifest needs no repair:
 * a file renamed but not yet recorded is simply sent again by the agent.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { WarmsyncError } from '../errors.js';
import { corruptMessage } from '../manifest/db.js';
import { MANIFEST_FILE } from '../manifest/manifest.js';
import { isTempName } from './staging.js';

/** Removes leftover temp files below `root`, skipping `skipDir` (the state dir); returns how many. */
export async function removeLeftoverTemps(root: string, skipDir: string | null): Promise<number> {
  let removed = 0;
  const pending = [root];
  while (pending.length > 0) {
    const dir = pending.pop() as string;
    const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const child of children) {
      const abs = join(dir, child.name);
      if (child.isDirectory()) {
        if (abs !== skipDir) pending.push(abs);
      } else if (isTempName(child.name)) {
        await unlink(abs).catch(() => undefined);
        removed++;
      }
    }
  }
  return removed;
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
