/**
 * One receiver per root: a pid file in the state dir. A pid file whose process is gone means the
 * last receiver crashed, which tells start-up to run recovery.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WarmsyncError } from '../errors.js';

const PID_FILE = 'receiver.pid';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of a live receiver on this state dir, or null. */
export function runningReceiver(stateDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(stateDir, PID_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid) ? pid : null;
  } catch {
    return null;
  }
}

export interface ReceiverLock {
  /** True when the previous receiver did not stop cleanly. */
  readonly crashed: boolean;
  release(): void;
}

export function acquireReceiverLock(stateDir: string): ReceiverLock {
  const file = join(stateDir, PID_FILE);
  const other = runningReceiver(stateDir);
  if (other !== null) throw new WarmsyncError('RECEIVER_RUNNING', `another receiver (pid ${other}) is running on this root (${file})`);
  let crashed = false;
  try {
    readFileSync(file);
    crashed = true;
  } catch {
    crashed = false;
  }
  writeFileSync(file, `${process.pid}\n`);
  return {
    crashed,
    release: () => {
      try {
        unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}
