import { buildStatus, formatStatus } from '../gate/status.js';
import { DEFAULT_SKEW_MS } from '../gate/policy.js';
import { lostStandbyRoot, recordedRoot } from '../gate/standby-root.js';
import { runningReceiver } from '../receiver/lock.js';
import { COMMON_HELP, parseFlags } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, print, withRoot } from './gate-options.js';

export const STATUS_HELP = `Usage: warmsync status --root DIR [--json]

Whether failing over to this standby now is safe, and why: SAFE when the agent's watermark W
(every change it observed before W is durable here) is at least the DB snapshot time T plus
the skew. Also: files and bytes, pending tombstones, the PostgreSQL recovery target (a WAL
position W covers, when the agent reads the DB primary with --db-primary; else W - skew: recover
the standby DB to at most this time), the skew in force and where it comes from (measured by the
agent against the DB primary, the receiver's --skew, or the default), last agent contact,
quarantined files.
Exit status 0 whether safe or not; 1 when the manifest cannot be read.

Options:
${ROOT_HELP}
${COMMON_HELP}`;

export async function statusCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('status', argv, ROOT_OPTIONS, STATUS_HELP);
  if (flags === null) return 0;
  return withRoot('status', flags, async ({ root, stateDir, manifest }) => {
    const counts = manifest.counts();
    const receiverPid = runningReceiver(stateDir.abs);
    const report = buildStatus({
      root, now: Date.now(), ...counts,
      snapshotTime: manifest.getNumber('snapshotTime'),
      watermark: manifest.getNumber('watermark'),
      skewMs: manifest.getNumber('skewMs') ?? DEFAULT_SKEW_MS,
      skewIsDefault: manifest.getNumber('skewMs') === null,
      dbPosition: manifest.dbPosition(),
      dbClock: manifest.dbClock(),
      lastContact: manifest.getNumber('lastContact'),
      agentConnected: receiverPid !== null && manifest.getNumber('agentConnected') === 1,
      receiverPid,
      quarantined: manifest.quarantinedCount(),
      feedGap: manifest.feedGap(),
      deletionsHeld: manifest.getNumber('deletionsHeld') ?? 0,
      // The root as the running receiver recorded it (gate/standby-root.ts standbyLack says why only then).
      rootLost: receiverPid === null ? null : lostStandbyRoot(root, recordedRoot(manifest)),
      verifyDamage: manifest.verifyDamage(),
    });
    print(flags.json, report, formatStatus(report));
    return 0;
  });
}
