/**
 * `warmsync verify`: re-reads the standby tree and compares it with the manifest. Every file is
 * hashed (a bit flip keeps size and mtime), in parallel; missing and corrupt entries are marked
 * damaged so the next agent reconciliation sends them again; paths the manifest does not know are
 * reported as strays. Owners are checked too when the receiver keeps them (its policy, recorded in
 * the manifest at start-up): a path owned otherwise than the mapping says is corrupt.
 */
import { join } from 'node:path';
import type { ManifestEntry } from '../entry.js';
import { describeError } from '../errors.js';
import type { Manifest } from '../manifest/manifest.js';
import { localNames } from '../owner/names.js';
import { policyFromText, targetIds } from '../owner/policy.js';
import { baseName, isWithin } from '../relpath.js';
import { createHasher, type FileHasher } from '../scan/hash.js';
import { SourceRoot } from '../scan/openfile.js';
import { walkTree } from '../scan/walk.js';
import { isTempName } from '../confined/temp.js';

export interface VerifyProblem { readonly path: string; readonly detail: string }

export interface VerifyReport {
  checked: number;
  bytesHashed: number;
  corrupt: VerifyProblem[];
  missing: VerifyProblem[];
  stray: VerifyProblem[];
  warnings: VerifyProblem[];
}

/**
 * The hasher `verify` and `verify --rebuild` read the standby with: each file opened beneath the
 * root's descriptor without following a symlink at any step (scan/openfile.ts), so a directory of
 * the standby swapped for a symlink between the walk and the read makes the file unreadable
 * (reported) instead of having a file outside the root read and judged.
 */
export function standbyHasher(root: string): Promise<FileHasher> {
  return createHasher({ source: new SourceRoot(root) });
}

export async function verifyTree(manifest: Manifest, root: string, stateDirRel: string | null, hasher: FileHasher, concurrency = 4): Promise<VerifyReport> {
  const rows = new Map<string, ManifestEntry>();
  for (const row of manifest.entries()) rows.set(row.path, row);
  const report: VerifyReport = { checked: 0, bytesHashed: 0, corrupt: [], missing: [], stray: [], warnings: [] };
  const seen = new Set<string>();
  const hashing = new Set<Promise<void>>();
  const policy = policyFromText(manifest.getString('ownerPolicy'));
  const names = localNames();
  /** Why the path's owner is not what the receiver would have set, or null. */
  const ownerProblem = (row: ManifestEntry, uid: number, gid: number): string | null => {
    const ids = policy === null ? null : targetIds(policy, row.owner, names);
    if (ids === null) return null;
    if ((ids.uid === -1 || ids.uid === uid) && (ids.gid === -1 || ids.gid === gid)) return null;
    const want = `${ids.uid === -1 ? '*' : ids.uid}:${ids.gid === -1 ? '*' : ids.gid}`;
    const source = row.owner === undefined || row.owner === null ? '' : ` for ${row.owner.user ?? row.owner.uid}:${row.owner.group ?? row.owner.gid} on the source`;
    return `owned by ${uid}:${gid}, expected ${want}${source}`;
  };

  const checkFile = async (row: ManifestEntry): Promise<void> => {
    try {
      const result = await hasher.hashFile(join(root, row.path));
      report.bytesHashed += result.size;
      if (result.hash !== row.hash || result.size !== row.size) {
        report.corrupt.push({ path: row.path, detail: `content hashes to ${result.hash} (${result.size} bytes), the manifest has ${row.hash} (${row.size} bytes)` });
      }
    } catch (err) {
      report.corrupt.push({ path: row.path, detail: `unreadable: ${describeError(err)}` });
    }
  };

  for await (const entry of walkTree(root, {
    isExcluded: (path) => (stateDirRel !== null && isWithin(path, stateDirRel)) || isTempName(baseName(path)),
    onWarning: (code, message, path) => report.warnings.push({ path: path ?? '', detail: `${code}: ${message}` }),
  })) {
    seen.add(entry.path);
    const row = rows.get(entry.path);
    if (row === undefined) {
      report.stray.push({ path: entry.path, detail: `${entry.kind} not in the manifest` });
      continue;
    }
    report.checked++;
    if (row.kind !== entry.kind) {
      report.corrupt.push({ path: entry.path, detail: `a ${entry.kind} on disk, a ${row.kind} in the manifest` });
    } else if (row.kind === 'symlink' && entry.target !== row.target) {
      report.corrupt.push({ path: entry.path, detail: `links to ${JSON.stringify(entry.target)}, the manifest has ${JSON.stringify(row.target)}` });
    } else if (row.kind === 'special' && entry.target !== row.target) {
      report.corrupt.push({ path: entry.path, detail: `a ${entry.target ?? 'special file'} on disk, a ${row.target ?? 'special file'} in the manifest` });
    } else if (row.deletedAt === null && ownerProblem(row, entry.uid, entry.gid) !== null) {
      report.corrupt.push({ path: entry.path, detail: ownerProblem(row, entry.uid, entry.gid) as string });
    } else if (row.kind === 'file') {
      const job: Promise<void> = checkFile(row).finally(() => hashing.delete(job));
      hashing.add(job);
      if (hashing.size >= concurrency) await Promise.race(hashing);
    }
  }
  await Promise.all(hashing);
  for (const row of rows.values()) {
    if (!seen.has(row.path)) report.missing.push({ path: row.path, detail: `${row.kind}${row.deletedAt !== null ? ' (tombstone: deleted on the source, but the standby DB may still reference it)' : ''} not on disk` });
  }
  for (const list of [report.corrupt, report.missing, report.stray]) list.sort((a, b) => (a.path < b.path ? -1 : 1));
  manifest.transaction(() => {
    for (const p of [...report.corrupt, ...report.missing]) manifest.markDamaged(p.path);
  });
  return report;
}
