/**
 * `warmsync verify --rebuild`: the documented recovery from a damaged manifest. Never automatic: a
 * fresh manifest does not know which paths were deleted on the source (tombstones) or when each file
 * was born. The damaged file is kept beside the new one; whatever tombstones can still be read from
 * it are carried over when the file they describe is still on disk, unchanged.
 *
 * What a rebuild cannot restore is safe by construction: a tombstone it lost makes the file look
 * live, so the next agent run records the deletion again, later (the file is kept longer); born
 * times restart at 0, so `promote` quarantines nothing it cannot vouch for (it keeps more).
 */
import { rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ConfinedRoot } from '../confined/root.js';
import type { Entry } from '../entry.js';
import { describeError } from '../errors.js';
import { Manifest, MANIFEST_FILE } from '../manifest/manifest.js';
import { baseName, isWithin } from '../relpath.js';
import type { FileHasher } from '../scan/hash.js';
import { walkTree } from '../scan/walk.js';
import type { StateDir } from '../statedir.js';
import { acquireReceiverLock } from './lock.js';
import { removeLeftoverTemps } from './recover.js';
import { isTempName } from '../confined/temp.js';

export interface RebuildReport {
  /** Where the old manifest went (null when there was none). */
  movedAside: string | null;
  files: number;
  dirs: number;
  symlinks: number;
  bytesHashed: number;
  /** Tombstones read back from the old manifest and still valid, or null when it could not be read. */
  tombstonesKept: number | null;
  /** Tombstones in the old manifest whose path changed or vanished meanwhile (dropped). */
  tombstonesDropped: number;
  warnings: Array<{ path: string; detail: string }>;
}

interface OldTombstone { path: string; kind: string; hash: string | null; deleted_at: number }

/** Tombstones a damaged manifest still yields, or null when it cannot be read at all. */
function salvageTombstones(file: string): OldTombstone[] | null {
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT path, kind, hash, deleted_at FROM entries WHERE deleted_at IS NOT NULL').all() as OldTombstone[];
    } finally {
      db.close();
    }
  } catch {
    return null;
  }
}

export async function rebuildManifest(root: string, stateDir: StateDir, hasher: FileHasher): Promise<RebuildReport> {
  const lock = await acquireReceiverLock(root, stateDir.abs);
  try {
    if (lock.crashed) {
      const confined = ConfinedRoot.open(root, stateDir.relToRoot);
      try {
        removeLeftoverTemps(confined);
      } finally {
        confined.close();
      }
    }
    const file = join(stateDir.abs, MANIFEST_FILE);
    const report: RebuildReport = { movedAside: null, files: 0, dirs: 0, symlinks: 0, bytesHashed: 0, tombstonesKept: null, tombstonesDropped: 0, warnings: [] };
    let old: OldTombstone[] | null = null;
    if (await stat(file).then(() => true, () => false)) {
      old = salvageTombstones(file);
      report.movedAside = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      // The WAL and shared-memory files belong to the old database: they go with it.
      for (const suffix of ['-wal', '-shm', '']) await rename(file + suffix, report.movedAside + suffix).catch(() => undefined);
    }
    const manifest = Manifest.open(stateDir.abs);
    try {
      const recorded = new Map<string, Entry>();
      const now = Date.now();
      let batch: Entry[] = [];
      const flush = (): void => {
        const rows = batch;
        batch = [];
        manifest.transaction(() => {
          for (const e of rows) manifest.recordPresent(e, now);
        });
      };
      for await (const w of walkTree(root, {
        isExcluded: (path) => (stateDir.relToRoot !== null && isWithin(path, stateDir.relToRoot)) || isTempName(baseName(path)),
        onWarning: (code, message, path) => report.warnings.push({ path: path ?? '', detail: `${code}: ${message}` }),
      })) {
        let hash: string | null = null;
        if (w.kind === 'file') {
          try {
            const result = await hasher.hashFile(join(root, w.path), { size: w.size, mtimeMs: w.mtimeMs, ino: w.ino });
            hash = result.hash;
            report.bytesHashed += result.size;
          } catch (err) {
            // Not recorded: the agent sends it again, which is what an unknown file needs.
            report.warnings.push({ path: w.path, detail: `not recorded, cannot hash it: ${describeError(err)}` });
            continue;
          }
          report.files++;
        } else if (w.kind === 'dir') {
          report.dirs++;
        } else {
          report.symlinks++;
        }
        const entry: Entry = { path: w.path, kind: w.kind, size: w.size, mtimeMs: w.mtimeMs, mode: w.mode, hash, target: w.target };
        recorded.set(w.path, entry);
        batch.push(entry);
        if (batch.length >= 1000) flush();
      }
      flush();
      if (old !== null) {
        let kept = 0;
        manifest.transaction(() => {
          for (const t of old) {
            const current = recorded.get(t.path);
            if (current !== undefined && current.kind === t.kind && current.hash === t.hash) {
              manifest.recordTombstone(t.path, t.deleted_at, Date.now());
              kept++;
            } else {
              report.tombstonesDropped++;
            }
          }
        });
        report.tombstonesKept = kept;
      }
      return report;
    } finally {
      manifest.close();
    }
  } finally {
    lock.release();
  }
}
