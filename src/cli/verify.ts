import { resolve } from 'node:path';
import { mountedBelow, recordedRoot } from '../gate/standby-root.js';
import type { Manifest } from '../manifest/manifest.js';
import { runningReceiver } from '../receiver/lock.js';
import { rebuildManifest, type RebuildReport } from '../receiver/rebuild.js';
import { standbyHasher, verifyTree } from '../receiver/verify.js';
import { countingHasher, createProgress, progressMode } from '../progress/progress.js';
import { resolveStateDir } from '../statedir.js';
import { COMMON_HELP, parseFlags, required } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, print, withRoot } from './gate-options.js';

export const VERIFY_HELP = `Usage: warmsync verify --root DIR [--json] [--quiet] [--rebuild]

Re-reads every file of the standby and hashes it (in parallel) against the manifest. Reports
corrupt files (content differs, even with the same size and mtime), missing ones and strays
(on disk, not in the manifest). Corrupt and missing entries are marked damaged, so the next
agent reconciliation sends them again; \`status\` says UNSAFE until one has. Exit status 1 when
anything is reported. With the receiver stopped, it then records the file systems mounted below
the root as the ones to expect: \`status\` says UNSAFE while one a receiver found at its start is
not mounted.

With --rebuild (the receiver must be stopped): the recovery from a damaged manifest
(MANIFEST_CORRUPT). Moves the old manifest aside (kept, never deleted), hashes every file of
the tree and records it in a new one. Tombstones still readable from the old file are kept;
the others are lost: those files look live until the next agent run records their deletion
again, later than the first time (they are kept longer). Born times restart at 0, so
\`promote\` quarantines nothing older. Run \`agent --once\` afterwards.

Options:
${ROOT_HELP}
  --quiet              no progress (on a terminal a bar; otherwise a line every 5 s)
  --rebuild            rebuild the manifest from the tree (see above)
${COMMON_HELP}`;

export async function verifyCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('verify', argv, { ...ROOT_OPTIONS, quiet: { type: 'boolean' }, rebuild: { type: 'boolean' } }, VERIFY_HELP);
  if (flags === null) return 0;
  if (flags.rebuild) return rebuild(flags);
  return withRoot('verify', flags, async ({ root, stateDir, manifest, log }) => {
    const progress = createProgress(progressMode(flags), log);
    let hasher = await standbyHasher(root);
    if (progress !== null) {
      // The total counts live files; tombstoned ones still on disk are hashed too, so the end may pass it.
      const { files, bytes } = manifest.counts();
      progress.phase('verifying', { files, bytes });
      hasher = countingHasher(hasher, (size) => progress.add(1, size));
    }
    const report = await verifyTree(manifest, root, stateDir.relToRoot, hasher).finally(() => progress?.done());
    const problems = report.corrupt.length + report.missing.length + report.stray.length;
    // Marked damaged: the agent's next full pass sends them again; until then status says UNSAFE.
    const damaged = report.corrupt.length + report.missing.length;
    manifest.setVerifyDamage(damaged === 0 ? null : { files: damaged, at: Date.now() });
    const mounts = recordMounts(root, stateDir.abs, manifest);
    const lines = [
      ...(mounts === null ? [] : [mounts]),
      ...report.corrupt.map((p) => `corrupt ${p.path}: ${p.detail}`),
      ...report.missing.map((p) => `missing ${p.path}: ${p.detail}`),
      ...report.stray.map((p) => `stray   ${p.path}: ${p.detail}`),
      ...report.warnings.map((p) => `warning ${p.path}: ${p.detail}`),
      `${problems === 0 ? 'OK' : 'DIFFERENCES'}: ${report.checked} entries checked, ${report.bytesHashed} bytes hashed; `
        + `${report.corrupt.length} corrupt, ${report.missing.length} missing, ${report.stray.length} stray`,
      ...(damaged === 0 ? [] : ['status says UNSAFE until the agent\'s next full pass has sent the corrupt and missing files again (restarting the agent starts one)']),
    ];
    print(flags.json, { ok: problems === 0, ...report }, lines.join('\n'));
    return problems === 0 ? 0 : 1;
  });
}

/**
 * Every file checked, and what is missing marked damaged (the agent sends it again): the file
 * systems mounted below the root now are the ones to expect (gate/standby-root.ts), where a
 * receiver's start only adds to them. Not while a receiver runs: it writes through what it opened.
 * Returns the line to print when the record changed, else null.
 */
function recordMounts(root: string, stateDir: string, manifest: Manifest): string | null {
  const was = recordedRoot(manifest).mounts;
  const now = mountedBelow(root);
  if (JSON.stringify(was) === JSON.stringify(now)) return null;
  const list = (mounts: readonly string[]): string => (mounts.length === 0 ? 'none' : mounts.map((m) => (m === '' ? '(the root)' : m)).join(', '));
  if (runningReceiver(stateDir) !== null) return `note: file systems mounted below the root: ${list(now)}; the receiver expects ${list(was)} (stop it and verify again to record these)`;
  manifest.setState('rootMounts', JSON.stringify(now));
  return `recorded the file systems mounted below the root: ${list(now)} (was: ${list(was)})`;
}

async function rebuild(flags: { root?: string; 'state-dir'?: string; json?: boolean }): Promise<number> {
  const root = resolve(required('verify', 'root', flags.root));
  const stateDir = resolveStateDir(root, flags['state-dir']);
  const report = await rebuildManifest(root, stateDir, await standbyHasher(root));
  print(flags.json, report, rebuildSummary(report));
  return 0;
}

function rebuildSummary(r: RebuildReport): string {
  const tombstones = r.tombstonesKept === null
    ? 'the old manifest was unreadable: every tombstone is lost (files deleted on the source look live until the next agent run records their deletion again)'
    : `${r.tombstonesKept} tombstone(s) carried over from the old manifest, ${r.tombstonesDropped} dropped (their file changed or is gone)`;
  return [
    ...r.warnings.map((w) => `warning ${w.path}: ${w.detail}`),
    r.movedAside === null ? 'no manifest was there' : `old manifest kept as ${r.movedAside}`,
    `REBUILT: ${r.files} files (${r.bytesHashed} bytes hashed), ${r.dirs} dirs, ${r.symlinks} symlinks recorded; ${tombstones}; `
      + 'born times restart at 0. Run `warmsync agent --once` next.',
  ].join('\n');
}
