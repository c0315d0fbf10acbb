/**
 * The agent refuses a source that is a standby (issue 17, item 11: an agent pointed at the receiver's
 * own root adopted the receiver's files and wrote its hash cache into the receiver's state dir):
 * - its state dir holds a receiver's manifest: always refused, the agent never writes there;
 * - its root is, lies inside, or holds the root or state dir of a receiver running on this host
 *   (each receiver holds a lock socket naming its root and state dir: src/receiver/lock.ts): the
 *   root itself or a root inside a standby is always refused; a standby below the root is refused
 *   unless the excludes hide it;
 * - its root holds a stopped receiver's default state dir (ROOT/.warmsync/manifest.sqlite) that is
 *   not the agent's own state dir: refused unless the excludes hide it.
 * A stopped receiver whose state dir is outside its root leaves nothing in the root to recognise.
 */
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { ExcludeMatcher, type FilterRule } from '../config/excludes.js';
import { UsageError } from '../errors.js';
import { MANIFEST_FILE } from '../manifest/manifest.js';
import { runningReceivers } from '../receiver/lock.js';
import { DEFAULT_STATE_DIR, type StateDir } from '../statedir.js';

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** `inner` relative to `outer` ('' when equal, '/'-separated), or null when it is not inside. */
function within(outer: string, inner: string): string | null {
  const rel = relative(outer, inner);
  if (rel.startsWith('..') || isAbsolute(rel)) return null;
  return rel.split(sep).join('/');
}

function refuse(message: string): never {
  throw new UsageError('SOURCE_IS_STANDBY', `agent: ${message}`);
}

export async function refuseStandbySource(root: string, stateDir: StateDir, rules: readonly FilterRule[]): Promise<void> {
  if (existsSync(join(stateDir.abs, MANIFEST_FILE))) {
    refuse(`${stateDir.abs} holds a receiver's manifest (${MANIFEST_FILE}): --root ${root} looks like a standby, not a source, `
      + 'and the agent does not write its cache into a receiver\'s state dir (give the agent a source and its own --state-dir)');
  }
  const matcher = new ExcludeMatcher(rules);
  const source = real(root);
  const ownState = real(stateDir.abs);
  const hidden = (rel: string): boolean => within(ownState, join(source, rel)) !== null || matcher.hides(rel, true);
  for (const receiver of await runningReceivers()) {
    if (receiver.root === null || receiver.stateDir === null) continue;
    const who = `a receiver (pid ${receiver.pid})`;
    const standby = real(receiver.root);
    if (within(standby, source) !== null) refuse(`--root ${root} is ${within(standby, source) === '' ? 'the root' : 'inside the root'} of ${who} running on ${receiver.root}: the agent's source must not be a standby`);
    for (const [what, dir] of [['root', standby], ['state dir', real(receiver.stateDir)]] as const) {
      const rel = within(source, dir);
      if (rel === null || hidden(rel)) continue;
      refuse(`--root ${root} holds the ${what} of ${who} at ${rel}: exclude it (--exclude /${rel}/) or pick another source`);
    }
  }
  const defaultState = join(source, DEFAULT_STATE_DIR);
  if (existsSync(join(defaultState, MANIFEST_FILE)) && !hidden(DEFAULT_STATE_DIR)) {
    refuse(`--root ${root} holds a receiver's state dir (${DEFAULT_STATE_DIR}/${MANIFEST_FILE}): it looks like a standby root; `
      + `if it is a source, exclude it (--exclude /${DEFAULT_STATE_DIR}/)`);
  }
}
