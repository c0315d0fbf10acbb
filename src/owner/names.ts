/**
 * User and group names, both ways, from /etc/passwd and /etc/group (Node has no getpwnam). The
 * agent sends names with the numeric ids; the receiver maps them back to its own ids, as rsync does.
 * Only the local files are read: users that exist only in LDAP or another NSS source have no name
 * here, so their files travel by number (rsync's own fallback for a name the other side lacks).
 *
 * The files are read again when they change (checked at most once a second), so a long-running
 * agent or receiver sees users added after it started.
 */
import { statSync, readFileSync } from 'node:fs';
import type { Owner } from '../entry.js';

export interface IdTable {
  readonly nameOf: ReadonlyMap<number, string>;
  readonly idOf: ReadonlyMap<string, number>;
}

/**
 * Parses passwd(5) or group(5) text: `name:x:id:...` per line. The first line for an id names it
 * (as getpwuid finds it); the first line for a name gives its id. Malformed lines are ignored.
 */
export function parseIdFile(text: string): IdTable {
  const nameOf = new Map<number, string>();
  const idOf = new Map<string, number>();
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 3) continue;
    const name = fields[0] as string;
    const idText = fields[2] as string;
    if (name === '' || name.startsWith('+') || name.startsWith('-') || !/^\d{1,10}$/.test(idText)) continue;
    const id = Number(idText);
    if (id > MAX_ID) continue;
    if (!nameOf.has(id)) nameOf.set(id, name);
    if (!idOf.has(name)) idOf.set(name, id);
  }
  return { nameOf, idOf };
}

/** The largest uid or gid (2^32 - 2: -1 means "unchanged" to chown). */
export const MAX_ID = 0xfffffffe;

const RECHECK_MS = 1000;

/** One of /etc/passwd or /etc/group, re-read when its size or mtime changes. */
class IdFile {
  private table: IdTable = { nameOf: new Map(), idOf: new Map() };
  private stamp = '';
  private checkedAt = -Infinity;

  constructor(private readonly file: string) {}

  get(): IdTable {
    const now = Date.now();
    if (now - this.checkedAt < RECHECK_MS) return this.table;
    this.checkedAt = now;
    let stamp: string;
    try {
      const st = statSync(this.file);
      stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    } catch {
      stamp = 'missing';
    }
    if (stamp !== this.stamp) {
      this.stamp = stamp;
      try {
        this.table = parseIdFile(readFileSync(this.file, 'utf8'));
      } catch {
        this.table = { nameOf: new Map(), idOf: new Map() };
      }
    }
    return this.table;
  }
}

/** Names of the local users and groups. */
export class IdNames {
  private readonly users: IdFile;
  private readonly groups: IdFile;

  constructor(passwdFile = '/etc/passwd', groupFile = '/etc/group') {
    this.users = new IdFile(passwdFile);
    this.groups = new IdFile(groupFile);
  }

  userName(uid: number): string | null {
    return this.users.get().nameOf.get(uid) ?? null;
  }

  groupName(gid: number): string | null {
    return this.groups.get().nameOf.get(gid) ?? null;
  }

  uidOf(name: string): number | null {
    return this.users.get().idOf.get(name) ?? null;
  }

  gidOf(name: string): number | null {
    return this.groups.get().idOf.get(name) ?? null;
  }
}

let shared: IdNames | null = null;

/** The process's one view of /etc/passwd and /etc/group. */
export function localNames(): IdNames {
  shared ??= new IdNames();
  return shared;
}

/** The Owner the agent sends for a file of these ids: with the source's names for them. */
export function ownerOf(uid: number, gid: number, names: IdNames = localNames()): Owner {
  const user = names.userName(uid);
  const group = names.groupName(gid);
  // The scan asks once per file: the last owner of these ids, while its names still hold, costs no key.
  const last = lastOwnerOf.get(uid)?.get(gid);
  if (last !== undefined && last.user === user && last.group === group) return last;
  const owner = sharedOwner({ uid, gid, user, group });
  const ofUid = lastOwnerOf.get(uid) ?? new Map<number, Owner>();
  if (ofUid.size === 0 && lastOwnerOf.size >= MAX_SHARED_OWNERS) return owner;
  lastOwnerOf.set(uid, ofUid.set(gid, owner));
  return owner;
}

/** uid -> gid -> the owner `ownerOf` last gave for them (at most MAX_SHARED_OWNERS uids). */
const lastOwnerOf = new Map<number, Map<number, Owner>>();

/** Every distinct owner seen, once: a tree has a handful, and its entries share them. */
const owners = new Map<string, Owner>();
/** Past this many distinct owners (a peer sending one per row, say), the rest are not kept. */
const MAX_SHARED_OWNERS = 4096;

/**
 * One object for every equal owner: the agent holds a row per file of the standby (its mirror),
 * and an owner object of its own in each (as parsed from the manifest pages) took 120 of the 389
 * bytes a row cost at 1,000,000 rows.
 */
export function sharedOwner(owner: Owner): Owner;
export function sharedOwner(owner: Owner | null | undefined): Owner | null;
export function sharedOwner(owner: Owner | null | undefined): Owner | null {
  if (owner === null || owner === undefined) return null;
  const key = JSON.stringify([owner.uid, owner.gid, owner.user, owner.group]);
  const seen = owners.get(key);
  if (seen !== undefined) return seen;
  // Only the four fields: a parsed object may carry more, and a kept one must not change.
  const kept = Object.freeze({ uid: owner.uid, gid: owner.gid, user: owner.user, group: owner.group });
  if (owners.size < MAX_SHARED_OWNERS) owners.set(key, kept);
  return kept;
}
