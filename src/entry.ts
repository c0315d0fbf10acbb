/**
 * The shared vocabulary: what a path in the synced tree is, on either side.
 * Every stage (scan, plan, protocol, receiver, manifest, gate) speaks in these types.
 */

/** `special`: a FIFO, a socket or a device node (rsync -a's -D); `target` says which. */
export type EntryKind = 'file' | 'dir' | 'symlink' | 'special';

/**
 * Owner and group on the source: numeric ids, and their names there (null when the id has no
 * name in the source's /etc/passwd or /etc/group). The receiver maps names to its own ids, like
 * rsync; see src/owner/policy.ts.
 */
export interface Owner {
  readonly uid: number;
  readonly gid: number;
  readonly user: string | null;
  readonly group: string | null;
}

/**
 * What a special file is, as `Entry.target` spells it: "fifo", "socket", "char MAJOR:MINOR" or
 * "block MAJOR:MINOR". Never opened: the receiver re-creates it with mknod.
 */
export type SpecialNode =
  | { readonly type: 'fifo' | 'socket' }
  | { readonly type: 'char' | 'block'; readonly major: number; readonly minor: number };

const NODE_TEXT = /^(?:fifo|socket|(char|block) (\d{1,10}):(\d{1,10}))$/;

/** The SpecialNode of a `target` text, or null when it is not one. */
export function parseSpecialNode(text: string): SpecialNode | null {
  const m = NODE_TEXT.exec(text);
  if (m === null) return null;
  if (m[1] === undefined) return { type: text as 'fifo' | 'socket' };
  const major = Number(m[2]);
  const minor = Number(m[3]);
  if (major > 0xffffffff || minor > 0xffffffff) return null;
  return { type: m[1] as 'char' | 'block', major, minor };
}

export function specialNodeText(node: SpecialNode): string {
  return 'major' in node ? `${node.type} ${node.major}:${node.minor}` : node.type;
}

/** Linux's (glibc's) split of a dev_t (a stat's rdev) into major and minor numbers. */
export function splitDevice(rdev: number | bigint): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major & 0xffffffffn), minor: Number(minor & 0xffffffffn) };
}

/** Same owner? An unknown owner (null: a manifest row from before owners were kept) matches only another unknown one. */
export function sameOwner(a: Owner | null | undefined, b: Owner | null | undefined): boolean {
  if (a === undefined || a === null || b === undefined || b === null) return (a ?? null) === (b ?? null);
  return a.uid === b.uid && a.gid === b.gid && a.user === b.user && a.group === b.group;
}

/** One path as the agent saw it on the source (or as the receiver recorded it). */
export interface Entry {
  /** Canonical POSIX path relative to the root (see relpath.ts). */
  readonly path: string;
  readonly kind: EntryKind;
  /** Bytes for files; 0 for directories; the target's byte length for symlinks. */
  readonly size: number;
  /** Modification time, integer milliseconds since the epoch (sub-millisecond part dropped). */
  readonly mtimeMs: number;
  /** Permission bits only (mode & 0o7777). */
  readonly mode: number;
  /**
   * xxh64 of the content as 16 lowercase hex digits, for files; null otherwise. On the agent, also
   * null for a file the scan left for the sender to hash (ScanOptions.needsHash); a manifest row
   * always has it.
   */
  readonly hash: string | null;
  /**
   * Link target, for symlinks (stored verbatim, never followed); for special files the node, as
   * specialNodeText writes it; null otherwise.
   */
  readonly target: string | null;
  /**
   * Owner on the source. Absent or null: not known (entries built without it, manifest rows from
   * before owners were kept); the receiver then leaves the owner as it creates files.
   */
  readonly owner?: Owner | null;
}

/** What the receiver's manifest holds for a path: the entry plus its gate bookkeeping. */
export interface ManifestEntry extends Entry {
  /** Source mtime when the receiver first recorded this path in its current life (DESIGN.md, "Times"). */
  readonly bornMs: number;
  /** Tombstone: when the agent observed the deletion (agent clock), or null while the path is live. */
  readonly deletedAt: number | null;
  /** Set by `verify` when the file on disk no longer matches; the next reconciliation re-sends it. */
  readonly damaged: boolean;
}

/** Normalises a stat mtime (float ms) to the integer milliseconds warmsync records and compares. */
export function wholeMs(mtimeMs: number): number {
  return Math.trunc(mtimeMs);
}

/**
 * The time value for utimes() that reads back (wholeMs) as exactly `ms`. A plain ms / 1000 can land
 * a hair below (…230.999 ms), so aim at the middle of the millisecond wholeMs truncates to. Before
 * 1970 the value goes as a numeric string: Node replaces a negative number with the current time.
 */
export function utimeValue(ms: number): number | string {
  if (ms >= 0) {
    const seconds = Math.floor(ms / 1000);
    return seconds + (ms - seconds * 1000 + 0.5) / 1000;
  }
  const seconds = Math.ceil(ms / 1000);
  return String(seconds + (ms - seconds * 1000 - 0.5) / 1000);
}

/** Do two entries describe the same content and metadata (ignoring path)? */
export function sameEntry(a: Entry, b: Entry): boolean {
  return a.kind === b.kind && a.size === b.size && a.mtimeMs === b.mtimeMs && a.mode === b.mode
    && a.hash === b.hash && a.target === b.target && sameOwner(a.owner, b.owner);
}

/**
 * Since when the agent's change feed may have missed events (on the agent's clock), and why, in one
 * line for `status`: W is held at or below `since` until a rescan has covered what was missed.
 */
export interface FeedGap { readonly since: number; readonly reason: string }

/** The setuid and setgid bits. */
export const SETUID_BITS = 0o6000;

/**
 * --no-setuid: a regular file without its setuid and setgid bits (what a `nosuid` mount ignores);
 * anything else unchanged (a directory's setgid only makes new entries inherit its group). Applied
 * to the source's entries before planning, so what is sent, written, recorded in the manifest and
 * checked by `verify` all agree, and a run after it finds nothing to change.
 */
export function withoutSetuid<E extends Entry>(e: E): E {
  return e.kind === 'file' && (e.mode & SETUID_BITS) !== 0 ? { ...e, mode: e.mode & ~SETUID_BITS } : e;
}
