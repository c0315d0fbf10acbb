/**
 * One receiver per root, held two ways:
 * - on the root itself: a Unix socket in the abstract namespace named after the root's device and
 *   inode, listened on for as long as the receiver runs. A second receiver on the same root, whatever
 *   its --state-dir, cannot bind the name (issue 17, item 11: it started, and both wrote the tree).
 *   The kernel drops the name when the process dies, so a crash leaves no stale lock to clear, and
 *   nothing is written in the standby tree. The name is per network namespace: receivers in two
 *   containers sharing the root through a bind mount do not see each other.
 *   Asked, it answers with its pid, root and state dir, which lets an agent refuse a source that is,
 *   holds or lies inside a running receiver's tree (runningReceivers).
 * - in the state dir: a pid file. One left behind by a process that is gone means the last receiver
 *   crashed, which tells start-up to run recovery.
 */
import { readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
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

const LOCK_PREFIX = 'warmsync-receiver-root:';

/** The abstract socket name for the directory `root` (by identity: any path to it gives the same name). */
function rootLockName(root: string): string | null {
  try {
    const st = statSync(root, { bigint: true });
    return `\0${LOCK_PREFIX}${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** What a running receiver answers on its root's lock socket. */
export interface ReceiverInfo {
  /** 0 when it did not answer in time. */
  readonly pid: number;
  /** Absolute paths, as the receiver was given them; null when it did not answer. */
  readonly root: string | null;
  readonly stateDir: string | null;
}

/** Asks the receiver holding the abstract socket `name`; null when nobody holds it. */
function ask(name: string): Promise<ReceiverInfo | null> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(name);
    const silent: ReceiverInfo = { pid: 0, root: null, stateDir: null };
    socket.setTimeout(2000, () => {
      socket.destroy();
      resolve(silent);
    });
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
    });
    socket.on('end', () => {
      try {
        const info = JSON.parse(answer) as ReceiverInfo;
        resolve(typeof info.pid === 'number' ? info : silent);
      } catch {
        resolve(silent);
      }
    });
    // ECONNREFUSED (nobody holds the name) or anything else: no receiver to name.
    socket.on('error', () => resolve(null));
  });
}

/** The receiver serving `root` (under any state dir), or null when none holds it. */
export function receiverOnRoot(root: string): Promise<ReceiverInfo | null> {
  const name = rootLockName(root);
  return name === null ? Promise.resolve(null) : ask(name);
}

/** Every receiver running on this host (in this network namespace), from /proc/net/unix. */
export async function runningReceivers(): Promise<ReceiverInfo[]> {
  const table = await readFile('/proc/net/unix', 'utf8').catch(() => '');
  const names = new Set<string>();
  for (const line of table.split('\n')) {
    const path = line.trim().split(/\s+/)[7];
    // NULs show as "@"; libuv binds the whole sun_path, so the name is followed by padding ones.
    if (path?.startsWith(`@${LOCK_PREFIX}`) === true) names.add(`\0${path.slice(1).replace(/@+$/, '')}`);
  }
  const found = await Promise.all([...names].map(ask));
  return found.filter((info): info is ReceiverInfo => info !== null);
}

/** Binds the root's lock name; null when another process holds it. */
function holdRoot(name: string, root: string, stateDir: string): Promise<Server | null> {
  return new Promise((resolve, reject) => {
    const answer = JSON.stringify({ pid: process.pid, root, stateDir } satisfies ReceiverInfo);
    const server = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end(answer);
    });
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(null) : reject(err)));
    server.listen(name, () => {
      // The lock must not keep the process alive by itself.
      server.unref();
      resolve(server);
    });
  });
}

export interface ReceiverLock {
  /** True when the previous receiver did not stop cleanly. */
  readonly crashed: boolean;
  release(): void;
}

export async function acquireReceiverLock(root: string, stateDir: string): Promise<ReceiverLock> {
  const file = join(stateDir, PID_FILE);
  const name = rootLockName(root);
  let held: Server | null = null;
  if (name !== null) {
    held = await holdRoot(name, root, stateDir);
    if (held === null) {
      const pid = (await receiverOnRoot(root))?.pid ?? 0;
      const who = pid === 0 ? 'another receiver' : `another receiver (pid ${pid})`;
      throw new WarmsyncError('RECEIVER_RUNNING', `${who} is running on this root (${root}), perhaps with another --state-dir; one receiver per root`);
    }
  }
  const other = runningReceiver(stateDir);
  if (other !== null) {
    held?.close();
    throw new WarmsyncError('RECEIVER_RUNNING', `another receiver (pid ${other}) is running on this root (${file})`);
  }
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
      held?.close();
      try {
        unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}
