/**
 * What the receiver keeps of an agent's --db-primary readings (issue 20): the newest WAL position
 * the heartbeat's watermark covers, and the measured clock offset. A position replaces the recorded
 * one only when it is newer (the agent's clock) or from another cluster; a heartbeat from another
 * cluster that covers nothing yet drops the recorded one, whose LSN means nothing there.
 */
import { coveredPosition } from '../gate/dbposition.js';
import type { Manifest } from '../manifest/manifest.js';
import type { HeartbeatDb } from '../protocol/messages.js';

/** Call inside the heartbeat's manifest transaction. */
export function recordDb(manifest: Manifest, db: HeartbeatDb, watermark: number | null): void {
  const covered = coveredPosition(db.positions, watermark);
  const stored = manifest.dbPosition();
  const otherCluster = stored !== null && stored.system !== db.system;
  if (covered !== null && (stored === null || otherCluster || covered.at > stored.at)) manifest.setDbPosition({ ...covered, system: db.system });
  else if (covered === null && otherCluster) manifest.setDbPosition(null);
  if (db.clock !== null) manifest.setDbClock(db.clock);
}
