/**
 * Control messages of protocol version 4 (and 3, which lacks `welcome.windowMax`): the TypeScript type of each message, its check
 * (check.ts), and which side may send each type. docs/protocol.md describes every field.
 *
 * All objects are strict (an unknown key is an error: a new field needs a new protocol version).
 * Every problem is written as "expected X" so that validate.ts can prefix it with the field's
 * location, e.g. `fileBegin.size: expected a non-negative safe integer, got -1`.
 */
import { parseSpecialNode, type EntryKind, type FeedGap, type ManifestEntry, type Owner } from '../entry.js';
import { relPathProblem } from '../relpath.js';
import {
  arrayOf, fieldIssue, intIn, issue, leaf, matching, optional, orNull, stringWith, strictObject,
  type Check, type Issue, type Shape,
} from './check.js';
import { clip, describeValue } from './describe.js';
import { MAX_ERROR_MESSAGE_CHARS, MAX_PAGE_ENTRIES, MAX_TARGET_BYTES } from './limits.js';

/** An unpaired UTF-16 surrogate: it has no UTF-8 form and would reach the disk as U+FFFD. */
const LONE_SURROGATE = /\p{Cs}/u;

// ---- field types --------------------------------------------------------------------------------

const safeInt = intIn('a safe integer', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
const nullableSafeInt = orNull(intIn('null or a safe integer', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
const size = intIn('a non-negative safe integer', 0, Number.MAX_SAFE_INTEGER);
const positive = intIn('a positive safe integer', 1, Number.MAX_SAFE_INTEGER);
/** Op numbers, transfer ids and flush ids. */
const uint32 = intIn('an integer 0..4294967295', 0, 0xffffffff);
const mode = intIn('an integer 0..0o7777 (permission bits)', 0, 0o7777);
const bool = leaf<boolean>('true or false', (v) => typeof v === 'boolean');
const kind = leaf<EntryKind>('"file", "dir", "symlink" or "special"', (v) => v === 'file' || v === 'dir' || v === 'symlink' || v === 'special');
/** A uid or gid: 0..2^32-2 (2^32-1 is chown's "leave unchanged"). */
const id = intIn('an integer 0..4294967294 (a uid or gid)', 0, 0xfffffffe);
/** A user or group name as /etc/passwd and /etc/group hold it: no ":", no control character. */
// eslint-disable-next-line no-control-regex -- control characters are what this rejects
const NAME = /^[^:\u0000-\u001f\u007f]{1,256}$/;
const nullableName = orNull(matching('null or a user or group name (1..256 characters, no ":" or control character)', NAME));
const owner = strictObject<Owner>({ uid: id, gid: id, user: nullableName, group: nullableName }, 'an owner object {uid, gid, user, group}');
const optionalOwner = optional(orNull(owner));
/** A special file's node: "fifo", "socket", "char MAJOR:MINOR" or "block MAJOR:MINOR" (src/entry.ts). */
const specialNode = matching('"fifo", "socket", "char MAJOR:MINOR" or "block MAJOR:MINOR"', /^(?:fifo|socket|(?:char|block) \d{1,10}:\d{1,10})$/);

const HASH = /^[0-9a-f]{16}$/;
const hash = matching('an xxh64 hash (16 lowercase hex digits)', HASH);
const nullableHash = orNull(matching('null or an xxh64 hash (16 lowercase hex digits)', HASH));
const mac = matching('an HMAC-SHA256 (64 lowercase hex digits)', /^[0-9a-f]{64}$/);
/** Canonical base64 of exactly 32 bytes: 43 characters, the last one carrying 2 bits, then "=". */
const nonce = matching('a base64 nonce of 32 bytes', /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/);
const errorCode = matching('an error code ([A-Z_], 1..64 characters)', /^[A-Z_]{1,64}$/);
const errorText = leaf<string>(`a string of at most ${MAX_ERROR_MESSAGE_CHARS} characters`, (v) => typeof v === 'string' && v.length <= MAX_ERROR_MESSAGE_CHARS);
const feedGap = strictObject<FeedGap>({ since: safeInt, reason: errorText }, 'a feed gap object');
/** What a heartbeat may carry of the DB primary's WAL positions (at most this many). */
export const MAX_DB_POSITIONS = 64;
const dbPosition = strictObject<HeartbeatDbPosition>({
  lsn: matching('a pg_lsn ("X/Y", 1..8 hex digits each)', /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/), at: safeInt,
}, 'a DB position object {lsn, at}');
const offsetMs = leaf<number>('a finite number of ms (|x| <= 1e12)', (v) => typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= 1e12);
const dbClock = strictObject<HeartbeatDbClock>({ offsetMs, boundMs: size, at: safeInt, samples: uint32 }, 'a DB clock object {offsetMs, boundMs, at, samples}');
const heartbeatDb = strictObject<HeartbeatDb>({
  system: matching('a PostgreSQL system identifier (1..20 decimal digits)', /^[0-9]{1,20}$/),
  positions: arrayOf(dbPosition, 'DB positions', 0, MAX_DB_POSITIONS),
  clock: orNull(dbClock),
}, 'a heartbeat db object {system, positions, clock}');
/** A compression method's name: "zstd", or one a newer receiver knows (ignored by this agent). */
const compressionMethod = matching('a compression method name ([a-z0-9-], 1..32 characters)', /^[a-z0-9-]{1,32}$/);
// eslint-disable-next-line no-control-regex -- control characters are what this rejects
const receiverId = matching('a receiver id (1..128 characters, no control characters)', /^[^\u0000-\u001f\u007f]{1,128}$/);

/** Why `p` may not name a file on the wire, or null: relpath.ts rules plus well-formed Unicode. */
function wirePathProblem(p: string): string | null {
  if (isPlainPath(p)) return null;
  return relPathProblem(p) ?? (LONE_SURROGATE.test(p) ? 'lone surrogate (not valid Unicode)' : null);
}

/**
 * A quick, sufficient test for a canonical wire path, one pass over the characters (relPathProblem
 * splits and measures UTF-8 bytes: ~5 us a path, half a second for a 100,000-row manifest). True
 * only for paths of at most 1365 UTF-16 units (so at most 4095 UTF-8 bytes) whose segments are 1..85
 * units (at most 255 bytes), not "." or "..", without NUL or any surrogate. Anything
 * else, valid or not, gets the full check.
 */
export function isPlainPath(p: string): boolean {
  const n = p.length;
  if (n === 0 || n > 1365) return false;
  let start = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? p.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const len = i - start;
      if (len === 0 || len > 85) return false;
      if (p.charCodeAt(start) === 0x2e && (len === 1 || (len === 2 && p.charCodeAt(start + 1) === 0x2e))) return false;
      start = i + 1;
    } else if (c === 0 || (c >= 0xd800 && c <= 0xdfff)) {
      return false;
    }
  }
  return true;
}

/** A canonical relative path (src/relpath.ts); a malformed one is reported as BAD_PATH. */
const relPath = stringWith('a relative path string', (p) => {
  const problem = wirePathProblem(p);
  return problem === null ? null : issue(`invalid path ${describeValue(p)}: ${problem}`, true);
});

function targetProblem(t: string): string | null {
  if (t === '') return 'empty';
  if (t.includes('\0')) return 'contains NUL';
  if (LONE_SURROGATE.test(t)) return 'lone surrogate (not valid Unicode)';
  if (Buffer.byteLength(t) > MAX_TARGET_BYTES) return `longer than ${MAX_TARGET_BYTES} bytes`;
  return null;
}

function targetIssues(t: string): Issue[] | null {
  const problem = targetProblem(t);
  return problem === null ? null : issue(`invalid symlink target ${describeValue(t)}: ${problem}`);
}

/** A symlink target: stored verbatim and never followed, so it may be absolute or contain "..". */
const symlinkTarget = stringWith('a symlink target string', targetIssues);
const nullableTarget = orNull(stringWith('null or a symlink target string', targetIssues));

/** Kind/hash/target consistency: a file has a hash, a symlink a target, a special file its node in target, a directory neither. */
function kindFieldIssues(v: { readonly kind: EntryKind; readonly hash: string | null; readonly target?: string | null }): Issue[] | null {
  const hashProblem = v.kind === 'file'
    ? (v.hash === null ? 'expected an xxh64 hash for kind "file", got null' : null)
    : (v.hash === null ? null : `expected null for kind "${v.kind}", got a hash`);
  let targetProblem: string | null = null;
  if (v.target !== undefined) {
    if (v.kind === 'symlink') targetProblem = v.target === null ? 'expected a symlink target for kind "symlink", got null' : null;
    else if (v.kind === 'special') {
      targetProblem = v.target === null || parseSpecialNode(v.target) === null
        ? `expected "fifo", "socket", "char MAJOR:MINOR" or "block MAJOR:MINOR" for kind "special", got ${describeValue(v.target)}` : null;
    } else targetProblem = v.target === null ? null : `expected null for kind "${v.kind}", got a target`;
  }
  if (hashProblem === null && targetProblem === null) return null;
  const issues: Issue[] = [];
  if (hashProblem !== null) issues.push(fieldIssue('hash', hashProblem));
  if (targetProblem !== null) issues.push(fieldIssue('target', targetProblem));
  return issues;
}

// ---- shared structures --------------------------------------------------------------------------

/**
 * `old`: what the agent believes the receiver's manifest row for the path is (null: no row).
 * The receiver applies the op only if its row still matches, else it reports a failed result.
 */
export interface Precondition {
  kind: EntryKind;
  hash: string | null;
  deletedAt: number | null;
}
const old = orNull(strictObject<Precondition>(
  { kind, hash: nullableHash, deletedAt: nullableSafeInt },
  'null or an object {kind, hash, deletedAt}',
  kindFieldIssues,
));

/** A manifest row as sent in `manifestPage`: ManifestEntry (src/entry.ts) without bornMs. */
export interface WireManifestEntry {
  path: string;
  kind: EntryKind;
  size: number;
  mtimeMs: number;
  mode: number;
  hash: string | null;
  target: string | null;
  deletedAt: number | null;
  damaged: boolean;
  /** Optional: absent or null when the receiver has not recorded an owner for the path. */
  owner?: Owner | null;
}
const wireManifestEntry = strictObject<WireManifestEntry>({
  path: relPath, kind, size, mtimeMs: safeInt, mode, hash: nullableHash, target: nullableTarget, deletedAt: nullableSafeInt, damaged: bool,
  owner: optionalOwner,
}, 'a manifest entry object', kindFieldIssues);

/** The outcome of one op. A failure carries a code; a success carries neither code nor message. */
export interface ResultItem {
  op: number;
  ok: boolean;
  code?: string;
  message?: string;
}
const resultItem = strictObject<ResultItem>(
  { op: uint32, ok: bool, code: optional(errorCode), message: optional(errorText) },
  'a result object {op, ok, code?, message?}',
  (v) => {
    if (!v.ok && v.code === undefined) return [fieldIssue('code', 'missing (required when ok is false)')];
    if (v.ok && (v.code !== undefined || v.message !== undefined)) {
      return [fieldIssue(v.code !== undefined ? 'code' : 'message', 'not allowed when ok is true')];
    }
    return null;
  },
);

// ---- messages -----------------------------------------------------------------------------------

/** receiver→agent, first message: the versions it speaks and its challenge. */
export interface HelloMessage { type: 'hello'; protocols: number[]; nonce: string; receiverId: string }
/** agent→receiver: the chosen version, its own challenge, and proof that it knows the token. */
export interface AuthMessage { type: 'auth'; protocol: number; nonce: string; mac: string }
/**
 * receiver→agent: proof that the receiver knows the token too, and the flow-control limits.
 * `windowMax` (since version 4, only when version 4 or later was chosen): the largest credit window
 * the agent may grow to on a long fat link; `window` is where it starts. `compression` (protocol 4,
 * optional, default none): the methods the receiver can decompress in zchunk frames; the agent may
 * use one of them, or none. An agent ignores methods it does not know.
 */
export interface WelcomeMessage { type: 'welcome'; mac: string; window: number; windowMax?: number; maxInFlight: number; compression?: string[] }
/** Either way, just before closing. */
export interface ErrorMessage { type: 'error'; code: string; message: string }
export interface ManifestRequestMessage { type: 'manifestRequest' }
/**
 * `owner` (optional on mkdir, symlink, setMeta, special and fileBegin): the source's owner; absent
 * or null leaves the receiver's default. The receiver maps it (src/owner/policy.ts).
 */
export interface MkdirMessage { type: 'mkdir'; op: number; path: string; mode: number; mtimeMs: number; owner?: Owner | null; old: Precondition | null }
export interface SymlinkMessage { type: 'symlink'; op: number; path: string; target: string; mtimeMs: number; owner?: Owner | null; old: Precondition | null }
/** Metadata of a file whose content is already on the standby: mode, mtime and owner. */
export interface SetMetaMessage { type: 'setMeta'; op: number; path: string; mode: number; mtimeMs: number; owner?: Owner | null; old: Precondition | null }
/** Creates or replaces a FIFO, socket or device node (`node` as in src/entry.ts). */
export interface SpecialMessage {
  type: 'special'; op: number; path: string; node: string; mode: number; mtimeMs: number; owner?: Owner | null; old: Precondition | null;
}
/**
 * `hash`: the content's xxh64, or null when the agent hashes the content as it sends it; a
 * `fileEnd` then follows the last chunk with the hash. `resumable` (optional, default false): the
 * agent waits for a `resumeFrom` before sending data, so the receiver can continue a transfer an
 * earlier connection left unfinished.
 */
export interface FileBeginMessage {
  type: 'fileBegin'; op: number; path: string; size: number; mtimeMs: number; mode: number; hash: string | null; owner?: Owner | null; old: Precondition | null;
  resumable?: boolean;
}
/** Completes the transfer of a fileBegin sent without a hash: every chunk is sent, this is the content's hash. */
export interface FileEndMessage { type: 'fileEnd'; op: number; hash: string }
/**
 * Abandons the transfer of fileBegin `op` (the source changed or vanished while it was being sent,
 * or its result already came back as a failure): no chunk of it follows, and that fileBegin's result
 * fails with ABORTED unless it already failed. Not an op itself: it gets no result of its own.
 */
export interface AbortMessage { type: 'abort'; op: number }
export interface DeleteMessage { type: 'delete'; op: number; path: string; deletedAt: number; old: Precondition | null }
/**
 * The agent's clock and watermark W. `db` (optional): see HeartbeatDb. `feedIncomplete` (optional, default null): since when the change
 * feed may have missed events and why; W is held at or below `since` until a rescan has covered it.
 * `deletionsHeld` (optional, default 0): deletions the agent holds back after a safety halt.
 */
export interface HeartbeatMessage {
  type: 'heartbeat'; now: number; watermark: number | null; feedIncomplete?: FeedGap | null; deletionsHeld?: number; db?: HeartbeatDb;
}
/** pg_current_wal_lsn() = `lsn` read from the DB primary, the agent's clock showing `at` once the answer was in. */
export interface HeartbeatDbPosition { lsn: string; at: number }
/** The DB primary's clock minus the agent's, as round trips bound it (gate/dbposition.ts estimateOffset). */
export interface HeartbeatDbClock { offsetMs: number; boundMs: number; at: number; samples: number }
/**
 * From an agent given --db-primary: the primary's system identifier, the WAL positions it read that
 * the receiver may not have (the newest one W covers and every newer one), and the clock offset.
 */
export interface HeartbeatDb { system: string; positions: HeartbeatDbPosition[]; clock: HeartbeatDbClock | null }

export interface FlushMessage { type: 'flush'; id: number }
export interface ManifestPageMessage { type: 'manifestPage'; entries: WireManifestEntry[]; done: boolean }
export interface ResultsMessage { type: 'results'; items: ResultItem[] }
export interface CreditMessage { type: 'credit'; bytes: number }
export interface FlushedMessage { type: 'flushed'; id: number }
/** receiver->agent, answering a resumable fileBegin: send the data from `offset` on. */
export interface ResumeFromMessage { type: 'resumeFrom'; op: number; offset: number }

export type ControlMessage =
  | HelloMessage | AuthMessage | WelcomeMessage | ErrorMessage | ManifestRequestMessage | MkdirMessage | SymlinkMessage
  | SetMetaMessage | SpecialMessage | FileBeginMessage | FileEndMessage | AbortMessage | DeleteMessage | HeartbeatMessage | FlushMessage
  | ManifestPageMessage | ResultsMessage | CreditMessage | FlushedMessage | ResumeFromMessage;
export type MessageType = ControlMessage['type'];
export type MessageOf<T extends MessageType> = Extract<ControlMessage, { type: T }>;

/** The check of message type `type`: the fields of `shape` plus `type` itself. */
function message<T extends MessageType>(type: T, shape: Shape<Omit<MessageOf<T>, 'type'>>): Check<MessageOf<T>> {
  const typeField = leaf<T>(JSON.stringify(type), (v) => v === type);
  return strictObject({ type: typeField, ...shape } as Shape<MessageOf<T>>, `a ${type} message object`);
}

/** Every message type and its check. */
export const MESSAGE_CHECKS: { readonly [T in MessageType]: Check<MessageOf<T>> } = {
  hello: message('hello', { protocols: arrayOf(positive, 'protocol versions', 1, 8), nonce, receiverId }),
  auth: message('auth', { protocol: positive, nonce, mac }),
  welcome: message('welcome', {
    mac, window: positive, windowMax: optional(positive), maxInFlight: positive, compression: optional(arrayOf(compressionMethod, 'compression methods', 0, 8)),
  }),
  error: message('error', { code: errorCode, message: errorText }),
  manifestRequest: message('manifestRequest', {}),
  mkdir: message('mkdir', { op: uint32, path: relPath, mode, mtimeMs: safeInt, owner: optionalOwner, old }),
  symlink: message('symlink', { op: uint32, path: relPath, target: symlinkTarget, mtimeMs: safeInt, owner: optionalOwner, old }),
  setMeta: message('setMeta', { op: uint32, path: relPath, mode, mtimeMs: safeInt, owner: optionalOwner, old }),
  special: message('special', { op: uint32, path: relPath, node: specialNode, mode, mtimeMs: safeInt, owner: optionalOwner, old }),
  fileBegin: message('fileBegin', {
    op: uint32, path: relPath, size, mtimeMs: safeInt, mode, hash: nullableHash, owner: optionalOwner, old, resumable: optional(bool),
  }),
  fileEnd: message('fileEnd', { op: uint32, hash }),
  abort: message('abort', { op: uint32 }),
  delete: message('delete', { op: uint32, path: relPath, deletedAt: safeInt, old }),
  heartbeat: message('heartbeat', {
    now: safeInt, watermark: nullableSafeInt, feedIncomplete: optional(orNull(feedGap)), deletionsHeld: optional(uint32), db: optional(heartbeatDb),
  }),
  flush: message('flush', { id: uint32 }),
  manifestPage: message('manifestPage', { entries: arrayOf(wireManifestEntry, 'manifest entries', 0, MAX_PAGE_ENTRIES), done: bool }),
  results: message('results', { items: arrayOf(resultItem, 'results', 1, MAX_PAGE_ENTRIES) }),
  credit: message('credit', { bytes: positive }),
  flushed: message('flushed', { id: uint32 }),
  resumeFrom: message('resumeFrom', { op: uint32, offset: size }),
};

// ---- direction ----------------------------------------------------------------------------------

const AGENT_TYPES = [
  'auth', 'error', 'manifestRequest', 'mkdir', 'symlink', 'setMeta', 'special', 'fileBegin', 'fileEnd', 'abort', 'delete', 'heartbeat', 'flush',
] as const satisfies readonly MessageType[];
const RECEIVER_TYPES = [
  'hello', 'welcome', 'error', 'manifestPage', 'results', 'credit', 'flushed', 'resumeFrom',
] as const satisfies readonly MessageType[];

/** Types the agent may send (chunk frames too, which are not control messages). */
export const AGENT_TO_RECEIVER: ReadonlySet<MessageType> = new Set<MessageType>(AGENT_TYPES);
/** Types the receiver may send. */
export const RECEIVER_TO_AGENT: ReadonlySet<MessageType> = new Set<MessageType>(RECEIVER_TYPES);

export type AgentMessage = Extract<ControlMessage, { type: (typeof AGENT_TYPES)[number] }>;
export type ReceiverMessage = Extract<ControlMessage, { type: (typeof RECEIVER_TYPES)[number] }>;

// ---- helpers ------------------------------------------------------------------------------------

/**
 * The wire form of a manifest row: exactly the wire fields, so that extra properties (bornMs,
 * database columns) never reach the peer, which would reject them as unknown keys. `owner` only
 * when the row has one.
 */
export function toWireEntry(e: WireManifestEntry | ManifestEntry): WireManifestEntry {
  return {
    path: e.path, kind: e.kind, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode,
    hash: e.hash, target: e.target, deletedAt: e.deletedAt, damaged: e.damaged,
    // Only when known: an entry without owner reads as one with owner null.
    ...(e.owner === undefined || e.owner === null ? {} : { owner: e.owner }),
  };
}

/**
 * An `error` message that always validates: the code is forced into [A-Z_]{1,64} (invalid
 * characters become "_") and the message is cut to MAX_ERROR_MESSAGE_CHARS.
 */
export function errorMessage(code: string, text: string): ErrorMessage {
  const cleanCode = code.toUpperCase().replace(/[^A-Z_]/g, '_').slice(0, 64) || 'ERROR';
  return { type: 'error', code: cleanCode, message: clip(text, MAX_ERROR_MESSAGE_CHARS) };
}

/**
 * A quick yes for a valid manifestPage: the same rules as MESSAGE_CHECKS.manifestPage, written out
 * field by field, because a page carries up to MAX_PAGE_ENTRIES entries and the generic check costs
 * about twice as much per entry (~0.7 against ~0.4 µs, and zod's took ~10 µs). It never accepts what
 * the check rejects; on false, validate.ts runs the check, which names the problem.
 */
export function isValidManifestPage(obj: object): boolean {
  const page = obj as Record<string, unknown>;
  if (Object.keys(page).length !== 3 || page['type'] !== 'manifestPage' || typeof page['done'] !== 'boolean') return false;
  const entries = page['entries'];
  if (!Array.isArray(entries) || entries.length > MAX_PAGE_ENTRIES) return false;
  for (const e of entries) if (!isValidWireEntry(e)) return false;
  return true;
}

/** Keys of a wire entry: 9, or 10 with `owner`. */
const WIRE_ENTRY_KEYS = 9;

function isValidWireEntry(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const e = v as Record<string, unknown>;
  const keys = Object.keys(e).length;
  if (keys !== WIRE_ENTRY_KEYS && !(keys === WIRE_ENTRY_KEYS + 1 && 'owner' in e)) return false;
  const { path, kind, size, mtimeMs, mode, hash, target, deletedAt, damaged, owner: o } = e;
  if (o !== undefined && o !== null && !isValidOwner(o)) return false;
  if (typeof path !== 'string' || wirePathProblem(path) !== null) return false;
  if (!Number.isSafeInteger(size) || (size as number) < 0 || !Number.isSafeInteger(mtimeMs)) return false;
  if (!Number.isSafeInteger(mode) || (mode as number) < 0 || (mode as number) > 0o7777) return false;
  if (deletedAt !== null && !Number.isSafeInteger(deletedAt)) return false;
  if (typeof damaged !== 'boolean') return false;
  switch (kind) {
    case 'file': return typeof hash === 'string' && HASH.test(hash) && target === null;
    case 'dir': return hash === null && target === null;
    case 'symlink': return hash === null && typeof target === 'string' && targetProblem(target) === null;
    case 'special': return hash === null && typeof target === 'string' && parseSpecialNode(target) !== null;
    default: return false;
  }
}

function isValidOwner(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  if (Object.keys(o).length !== 4) return false;
  const isId = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= 0xfffffffe;
  const isName = (n: unknown): boolean => n === null || (typeof n === 'string' && NAME.test(n));
  return isId(o['uid']) && isId(o['gid']) && isName(o['user']) && isName(o['group']);
}

// Compile-time check that the wire entry and the shared vocabulary agree field by field.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const wireMatchesEntry: Same<WireManifestEntry, { -readonly [K in keyof Omit<ManifestEntry, 'bornMs'>]: ManifestEntry[K] }> = true;
void wireMatchesEntry;
