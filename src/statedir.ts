/**
 * Where warmsync keeps its own files: `ROOT/.warmsync/` unless --state-dir says otherwise. Inside the
 * root it is always excluded from sync and never pruned.
 */
import { mkdir } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { UsageError, WarmsyncError } from './errors.js';

export const DEFAULT_STATE_DIR = '.warmsync';

export interface StateDir {
  readonly abs: string;
  /** Its path relative to the root when it lies inside the root, else null. */
  readonly relToRoot: string | null;
}

export function resolveStateDir(root: string, flag: string | undefined): StateDir {
  const abs = flag === undefined ? resolve(root, DEFAULT_STATE_DIR) : resolve(flag);
  const rel = relative(root, abs);
  if (rel === '') throw new UsageError('BAD_STATE_DIR', `--state-dir ${abs} is the root itself; pick a directory inside or outside it`);
  const inside = !rel.startsWith('..') && !isAbsolute(rel);
  return { abs, relToRoot: inside ? rel.split(sep).join('/') : null };
}

/** Why a state directory could not be made, by the errno mkdir gave. */
const UNUSABLE_BECAUSE: Readonly<Record<string, string>> = {
  EEXIST: 'it exists and is not a directory',
  ENOTDIR: 'a component of its path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
  ENOSPC: 'the file system is full',
};

/** Creates the state directory (mode 0700) unless it exists; STATE_DIR_UNUSABLE, naming it and why, when it cannot. */
export async function ensureStateDir(stateDir: StateDir): Promise<void> {
  try {
    await mkdir(stateDir.abs, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    const why = UNUSABLE_BECAUSE[code] ?? code;
    throw new WarmsyncError('STATE_DIR_UNUSABLE', `cannot create the state directory ${stateDir.abs}: ${why}; fix it or pass another --state-dir`, { cause: err });
  }
}
