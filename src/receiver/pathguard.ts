/**
 * Invariant 3, "Confined": every path from the peer is checked here before any other receiver code
 * touches the disk. Canonical relative paths only, never inside the state dir, and never through a
 * symlink or a non-directory: each ancestor is lstat'ed, so a symlink the agent itself created
 * (`a -> /etc`) cannot be used to write `a/passwd`.
 */
import { lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { lstatOrNull } from '../lstat.js';
import { ProtocolError } from '../errors.js';
import { ancestorsOf, checkRelPath, isWithin } from '../relpath.js';

export class PathGuard {
  /**
   * @param root absolute path of the receiver's root
   * @param stateDirRel the state dir relative to root when it lies inside it (e.g. ".warmsync"), else null
   */
  constructor(readonly root: string, readonly stateDirRel: string | null) {}

  /** Validates `rel` and returns its absolute path; throws ProtocolError BAD_PATH naming the problem. */
  resolve(rel: string): string {
    checkRelPath(rel);
    if (this.stateDirRel !== null && isWithin(rel, this.stateDirRel)) {
      throw new ProtocolError('BAD_PATH', `invalid path ${JSON.stringify(rel)}: inside the receiver's state dir`);
    }
    return join(this.root, rel);
  }

  /**
   * Makes sure every ancestor of `rel` is a real directory under the root, creating missing ones.
   * Throws ProtocolError UNSAFE_PATH when an ancestor is a symlink, a file or anything else.
   */
  async prepareParents(rel: string): Promise<void> {
    await this.checkParents(rel, true);
  }

  /**
   * For removals: true when every ancestor of `rel` is a real directory (so removing `rel` cannot
   * reach outside the root); false when one is missing. Throws UNSAFE_PATH like prepareParents.
   */
  async parentsExist(rel: string): Promise<boolean> {
    return this.checkParents(rel, false);
  }

  private async checkParents(rel: string, create: boolean): Promise<boolean> {
    this.resolve(rel);
    for (const dir of ancestorsOf(rel)) {
      const abs = join(this.root, dir);
      const st = lstatOrNull(abs);
      if (st === null) {
        if (!create) return false;
        try {
          mkdirSync(abs, { mode: 0o755 });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        // Re-check: whatever exists now must be a real directory.
        if (!lstatSync(abs).isDirectory()) throw unsafe(rel, dir);
      } else if (!st.isDirectory()) {
        throw unsafe(rel, dir);
      }
    }
    return true;
  }
}

function unsafe(rel: string, dir: string): ProtocolError {
  return new ProtocolError('UNSAFE_PATH', `refusing ${JSON.stringify(rel)}: ancestor ${JSON.stringify(dir)} is not a directory on the standby (a symlink is never written through)`);
}
