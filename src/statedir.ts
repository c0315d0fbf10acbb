/**
 * Where warmsync keeps its own files: `ROOT/.warmsync/` unless --state-dir says otherwise. Inside the
 * root it is always excluded from sync and never pruned.
 */
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { UsageError } from './errors.js';

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
