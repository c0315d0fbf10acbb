/** Flags and set-up shared by the operator commands (snapshot, promote, status, verify, restore). */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { WarmsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { DEFAULT_DELETE_GRACE_MS, DEFAULT_SKEW_MS, type GateTimes } from '../gate/policy.js';
import { Manifest } from '../manifest/manifest.js';
import { receiverOnRoot } from '../receiver/lock.js';
import { resolveStateDir, type StateDir } from '../statedir.js';
import { commandLogger, parseInteger, required } from './args.js';

export const ROOT_OPTIONS = { root: { type: 'string' }, 'state-dir': { type: 'string' }, json: { type: 'boolean' } } as const;
export const TIME_OPTIONS = { skew: { type: 'string' }, 'delete-grace': { type: 'string' } } as const;

export const TIME_HELP = `  --skew MS            margin for clock differences between the DB primary and the agent
                       host (default ${DEFAULT_SKEW_MS})
  --delete-grace MS    how much longer a deletion waits, for the transaction that made it
                       to commit (default ${DEFAULT_DELETE_GRACE_MS}, ten minutes)`;

export const ROOT_HELP = `  --root DIR           the standby tree (the receiver's --root)
  --state-dir DIR      the receiver's state dir (default: ROOT/.warmsync)
  --json               machine-readable output (documented in docs/operations.md)`;

export interface Opened { root: string; stateDir: StateDir; manifest: Manifest; log: Logger }

/** Opens the receiver's manifest for `--root` (and `--state-dir`), runs `fn`, and closes it again. */
export async function withRoot<T>(command: string, flags: { root?: string; 'state-dir'?: string; 'log-level'?: string; 'log-format'?: string }, fn: (opened: Opened) => Promise<T>): Promise<T> {
  const log = commandLogger(flags);
  const root = resolve(required(command, 'root', flags.root));
  const stateDir = resolveStateDir(root, flags['state-dir']);
  await refuseStaleStateDir(root, stateDir);
  const manifest = Manifest.openExisting(stateDir.abs);
  try {
    return await fn({ root, stateDir, manifest, log });
  } finally {
    manifest.close();
  }
}

/**
 * A receiver running on `root` keeps its manifest in its own state dir: a command given another
 * one would read, or change, a manifest nobody keeps current (status would judge a stale W, promote
 * would move files under a receiver still writing the tree). Found through the root's lock, so a
 * receiver started with any --state-dir is seen.
 */
async function refuseStaleStateDir(root: string, stateDir: StateDir): Promise<void> {
  const live = await receiverOnRoot(root);
  if (live === null || live.stateDir === null || sameDir(live.stateDir, stateDir.abs)) return;
  throw new WarmsyncError('STATE_DIR_NOT_LIVE', `the receiver running on ${root} (pid ${live.pid}) keeps its state in ${live.stateDir}, not in ${stateDir.abs}: `
    + `this manifest is not the one it keeps current; give --state-dir ${live.stateDir}`);
}

function sameDir(a: string, b: string): boolean {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  return real(a) === real(b);
}

/** --skew / --delete-grace, or their defaults. */
export function gateTimes(flags: { skew?: string; 'delete-grace'?: string }): GateTimes {
  return {
    skewMs: parseInteger('skew', flags.skew, DEFAULT_SKEW_MS, 0, 86_400_000),
    deleteGraceMs: parseInteger('delete-grace', flags['delete-grace'], DEFAULT_DELETE_GRACE_MS, 0, 30 * 86_400_000),
  };
}

export function print(json: boolean | undefined, value: unknown, human: string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : human + '\n');
}
