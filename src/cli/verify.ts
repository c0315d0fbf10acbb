import { verifyTree } from '../receiver/verify.js';
import { countingHasher, createProgress, progressMode } from '../progress/progress.js';
import { createHasher } from '../scan/hash.js';
import { COMMON_HELP, parseFlags } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, print, withRoot } from './gate-options.js';

export const VERIFY_HELP = `Usage: warmsync verify --root DIR [--json]

Re-reads every file of the standby and hashes it (in parallel) against the manifest. Reports
corrupt files (content differs, even with the same size and mtime), missing ones and strays
(on disk, not in the manifest). Corrupt and missing entries are marked damaged, so the next
agent reconciliation sends them again. Exit status 1 when anything is reported.

Options:
${ROOT_HELP}
  --quiet              no progress (on a terminal a bar; otherwise a line every 5 s)
${COMMON_HELP}`;

export async function verifyCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('verify', argv, { ...ROOT_OPTIONS, quiet: { type: 'boolean' } }, VERIFY_HELP);
  if (flags === null) return 0;
  return withRoot('verify', flags, async ({ root, stateDir, manifest, log }) => {
    const progress = createProgress(progressMode(flags), log);
    let hasher = await createHasher();
    if (progress !== null) {
      // The total counts live files; tombstoned ones still on disk are hashed too, so the end may pass it.
      const { files, bytes } = manifest.counts();
      progress.phase('verifying', { files, bytes });
      hasher = countingHasher(hasher, (size) => progress.add(1, size));
    }
    const report = await verifyTree(manifest, root, stateDir.relToRoot, hasher).finally(() => progress?.done());
    const problems = report.corrupt.length + report.missing.length + report.stray.length;
    const lines = [
      ...report.corrupt.map((p) => `corrupt ${p.path}: ${p.detail}`),
      ...report.missing.map((p) => `missing ${p.path}: ${p.detail}`),
      ...report.stray.map((p) => `stray   ${p.path}: ${p.detail}`),
      ...report.warnings.map((p) => `warning ${p.path}: ${p.detail}`),
      `${problems === 0 ? 'OK' : 'DIFFERENCES'}: ${report.checked} entries checked, ${report.bytesHashed} bytes hashed; `
        + `${report.corrupt.length} corrupt, ${report.missing.length} missing, ${report.stray.length} stray`,
    ];
    print(flags.json, { ok: problems === 0, ...report }, lines.join('\n'));
    return problems === 0 ? 0 : 1;
  });
}
