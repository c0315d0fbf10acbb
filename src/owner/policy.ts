/**
 * Who owns what the receiver writes: rsync -a's owner and group rules, as the receiving side of
 * rsync applies them.
 * - Running as root (or with CAP_CHOWN), the source's owner and group are kept: by name, mapped to
 *   the standby's id for that name, falling back to the source's number when the standby has no
 *   such name; ids 0 (root) always stay 0 (rsync never maps them by name).
 * - `--numeric-ids`: the source's numbers, names ignored.
 * - `--chown USER:GROUP` (either part may be left out): that user and/or group for everything.
 * - Without the privilege, every file keeps the receiver's own user and group, as rsync run by an
 *   ordinary user does; the receiver says so once at start-up.
 */
import { readFileSync } from 'node:fs';
import type { Owner } from '../entry.js';
import { UsageError } from '../errors.js';
import { MAX_ID, type IdNames } from './names.js';

export interface OwnerPolicy {
  /** May this process give files away (root, or CAP_CHOWN)? */
  readonly canChown: boolean;
  /** rsync --numeric-ids: map by number, never by name. */
  readonly numericIds: boolean;
  /** --chown: the uid everything gets, or null to keep the source's. */
  readonly forceUid: number | null;
  /** --chown: the gid everything gets, or null to keep the source's. */
  readonly forceGid: number | null;
}

/** The ids to give a path on the standby; -1 keeps that one as it is (as chown(2) reads it). */
export interface TargetIds { readonly uid: number; readonly gid: number }

/**
 * What to chown a path to for a source owner, or null to leave it as the receiver creates it (no
 * privilege, or neither the owner nor --chown says anything).
 */
export function targetIds(policy: OwnerPolicy, owner: Owner | null | undefined, names: IdNames): TargetIds | null {
  if (!policy.canChown) return null;
  const known = owner ?? null;
  const uid = policy.forceUid ?? (known === null ? -1 : mapId(known.uid, known.user, policy.numericIds, (n) => names.uidOf(n)));
  const gid = policy.forceGid ?? (known === null ? -1 : mapId(known.gid, known.group, policy.numericIds, (n) => names.gidOf(n)));
  return uid === -1 && gid === -1 ? null : { uid, gid };
}

function mapId(id: number, name: string | null, numericIds: boolean, lookup: (name: string) => number | null): number {
  if (numericIds || name === null || id === 0) return id;
  return lookup(name) ?? id;
}

/**
 * Parses `--chown USER:GROUP` (also `USER`, `USER:` and `:GROUP`): names or numbers, names looked
 * up in the standby's /etc/passwd and /etc/group. UsageError BAD_FLAG for an unknown name.
 */
export function parseChown(spec: string, names: IdNames): { uid: number | null; gid: number | null } {
  const colon = spec.indexOf(':');
  const user = colon < 0 ? spec : spec.slice(0, colon);
  const group = colon < 0 ? '' : spec.slice(colon + 1);
  if (user === '' && group === '') throw new UsageError('BAD_FLAG', `--chown ${JSON.stringify(spec)}: expected USER:GROUP, USER or :GROUP`);
  return {
    uid: user === '' ? null : resolveId(user, 'user', (n) => names.uidOf(n)),
    gid: group === '' ? null : resolveId(group, 'group', (n) => names.gidOf(n)),
  };
}

function resolveId(text: string, what: 'user' | 'group', lookup: (name: string) => number | null): number {
  if (/^\d{1,10}$/.test(text) && Number(text) <= MAX_ID) return Number(text);
  const id = lookup(text);
  if (id === null) throw new UsageError('BAD_FLAG', `--chown: no ${what} named ${JSON.stringify(text)} in /etc/${what === 'user' ? 'passwd' : 'group'} (give a name there or a number)`);
  return id;
}

/** The policy of this process: owners kept (by name unless `numericIds`) when it may chown, `force` ids from --chown. */
export function ownerPolicy(options: { numericIds?: boolean; forceUid?: number | null; forceGid?: number | null } = {}): OwnerPolicy {
  return {
    canChown: hasCapability(CAP_CHOWN), numericIds: options.numericIds ?? false,
    forceUid: options.forceUid ?? null, forceGid: options.forceGid ?? null,
  };
}

/** Linux capability numbers (linux/capability.h). */
export const CAP_CHOWN = 0;
export const CAP_MKNOD = 27;

/** Does this process hold capability `cap` in its effective set? Root without capabilities data counts as yes. */
export function hasCapability(cap: number): boolean {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    if (hex !== undefined) return ((BigInt(`0x${hex}`) >> BigInt(cap)) & 1n) === 1n;
  } catch {
    // No /proc: judge by the uid.
  }
  return process.geteuid?.() === 0;
}

/** The policy as stored in the manifest (state key `ownerPolicy`), for `verify`. */
export function policyToText(policy: OwnerPolicy): string {
  return JSON.stringify(policy);
}

/** The stored policy, or null when none (or an unreadable one) is stored. */
export function policyFromText(text: string | null): OwnerPolicy | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as Partial<OwnerPolicy>;
    const idOrNull = (x: unknown): x is number | null => x === null || (Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= MAX_ID);
    if (typeof v.canChown !== 'boolean' || typeof v.numericIds !== 'boolean' || !idOrNull(v.forceUid) || !idOrNull(v.forceGid)) return null;
    return { canChown: v.canChown, numericIds: v.numericIds, forceUid: v.forceUid, forceGid: v.forceGid };
  } catch {
    return null;
  }
}
