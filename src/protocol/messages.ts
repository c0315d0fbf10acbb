/**
 * Control messages of protocol version 1: one zod schema per message type, the TypeScript types
 * inferred from them, and which side may send each type. docs/protocol.md describes every field.
 *
 * All objects are strict (an unknown key is an error: a new field needs a new protocol version).
 * Every error message is written as "expected X" so that validate.ts can prefix it with the
 * field's location, e.g. `fileBegin.size: expected a non-negative safe integer, got -1`.
 */
import { z } from 'zod';
import type { ManifestEntry } from '../entry.js';
import { relPathProblem } from '../relpath.js';
import { clip, describeValue } from './describe.js';
import { MAX_ERROR_MESSAGE_CHARS, MAX_PAGE_ENTRIES, MAX_TARGET_BYTES } from './limits.js';

/** `params.code` of a zod issue raised by a path check; validate.ts maps it to BAD_PATH. */
export const PATH_ISSUE = 'BAD_PATH';

/** An unpaired UTF-16 surrogate: it has no UTF-8 form and would reach the disk as U+FFFD. */
const LONE_SURROGATE = /\p{Cs}/u;

/** The zod error map for a field: "missing" for an absent key, "expected ..., got ..." otherwise. */
function expecting(what: string): (issue: { readonly input?: unknown }) => string {
  return (issue) => (issue.input === undefined ? 'missing' : `expected ${what}, got ${describeValue(issue.input)}`);
}

function intIn(what: string, min: number, max: number) {
  const error = expecting(what);
  return z.int({ error }).min(min, { error }).max(max, { error });
}

function matching(what: string, pattern: RegExp) {
  const error = expecting(what);
  return z.string({ error }).regex(pattern, { error });
}

// ---- field types --------------------------------------------------------------------------------

const safeInt = z.int({ error: expecting('a safe integer') });
const nullableSafeInt = z.int({ error: expecting('null or a safe integer') }).nullable();
const size = intIn('a non-negative safe integer', 0, Number.MAX_SAFE_INTEGER);
const positive = intIn('a positive safe integer', 1, Number.MAX_SAFE_INTEGER);
/** Op numbers, transfer ids and flush ids. */
const uint32 = intIn('an integer 0..4294967295', 0, 0xffffffff);
const mode = intIn('an integer 0..0o7777 (permission bits)', 0, 0o7777);
const bool = z.boolean({ error: expecting('true or false') });
const kind = z.enum(['file', 'dir', 'symlink'], { error: expecting('"file", "dir" or "symlink"') });

const HASH = /^[0-9a-f]{16}$/;
const hash = matching('an xxh64 hash (16 lowercase hex digits)', HASH);
const nullableHash = matching('null or an xxh64 hash (16 lowercase hex digits)', HASH).nullable();
const mac = matching('an HMAC-SHA256 (64 lowercase hex digits)', /^[0-9a-f]{64}$/);
/** Canonical base64 of exactly 32 bytes: 43 characters, the last one carrying 2 bits, then "=". */
const nonce = matching('a base64 nonce of 32 bytes', /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/);
const errorCode = matching('an error code ([A-Z_], 1..64 characters)', /^[A-Z_]{1,64}$/);
const errorText = z.string({ error: expecting(`a string of at most ${MAX_ERROR_MESSAGE_CHARS} characters`) })
  .max(MAX_ERROR_MESSAGE_CHARS, { error: expecting(`a string of at most ${MAX_ERROR_MESSAGE_CHARS} characters`) });
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
 * units (at most 255 bytes), not "." or "..", without NUL, backslash or any surrogate. Anything
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
    } else if (c === 0 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) {
      return false;
    }
  }
  return true;
}

/** A canonical relative path (src/relpath.ts); a malformed one is reported as BAD_PATH. */
const relPath = z.string({ error: expecting('a relative path string') }).superRefine((p, ctx) => {
  const problem = wirePathProblem(p);
  if (problem !== null) {
    ctx.addIssue({ code: 'custom', input: p, message: `invalid path ${describeValue(p)}: ${problem}`, params: { code: PATH_ISSUE } });
  }
});

function targetProblem(t: string): string | null {
  if (t === '') return 'empty';
  if (t.includes('\0')) return 'contains NUL';
  if (LONE_SURROGATE.test(t)) return 'lone surrogate (not valid Unicode)';
  if (Buffer.byteLength(t) > MAX_TARGET_BYTES) return `longer than ${MAX_TARGET_BYTES} bytes`;
  return null;
}

/** A symlink target: stored verbatim and never followed, so it may be absolute or contain "..". */
const symlinkTarget = z.string({ error: expecting('a symlink target string') }).superRefine((t, ctx) => {
  const problem = targetProblem(t);
  if (problem !== null) ctx.addIssue({ code: 'custom', input: t, message: `invalid symlink target ${describeValue(t)}: ${problem}` });
});
const nullableTarget = z.string({ error: expecting('null or a symlink target string') }).superRefine((t, ctx) => {
  const problem = targetProblem(t);
  if (problem !== null) ctx.addIssue({ code: 'custom', input: t, message: `invalid symlink target ${describeValue(t)}: ${problem}` });
}).nullable();

/** An array of `min..max` items; the length is checked before any item is looked at. */
function arrayOf<T extends z.ZodType>(item: T, what: string, min: number, max: number) {
  const error = expecting(`an array of ${min}..${max} ${what}`);
  return z.custom<unknown[]>((v) => Array.isArray(v) && v.length >= min && v.length <= max, { error })
    .pipe(z.array(item));
}

/** Kind/hash/target consistency: a file has a hash, a symlink a target, a directory neither. */
function checkKindFields(
  v: { readonly kind: string; readonly hash: string | null; readonly target?: string | null },
  ctx: z.RefinementCtx,
): void {
  if (v.kind === 'file' && v.hash === null) {
    ctx.addIssue({ code: 'custom', path: ['hash'], input: null, message: 'expected an xxh64 hash for kind "file", got null' });
  }
  if (v.kind !== 'file' && v.hash !== null) {
    ctx.addIssue({ code: 'custom', path: ['hash'], input: v.hash, message: `expected null for kind "${v.kind}", got a hash` });
  }
  if (v.target === undefined) return;
  if (v.kind === 'symlink' && v.target === null) {
    ctx.addIssue({ code: 'custom', path: ['target'], input: null, message: 'expected a symlink target for kind "symlink", got null' });
  }
  if (v.kind !== 'symlink' && v.target !== null) {
    ctx.addIssue({ code: 'custom', path: ['target'], input: v.target, message: `expected null for kind "${v.kind}", got a target` });
  }
}

// ---- shared structures --------------------------------------------------------------------------

/**
 * `old`: what the agent believes the receiver's manifest row for the path is (null: no row).
 * The receiver applies the op only if its row still matches, else it reports a failed result.
 */
export const preconditionSchema = z.strictObject({
  kind,
  hash: nullableHash,
  deletedAt: nullableSafeInt,
}, { error: expecting('null or an object {kind, hash, deletedAt}') }).superRefine(checkKindFields);
const old = preconditionSchema.nullable();

/** A manifest row as sent in `manifestPage`: ManifestEntry (src/entry.ts) without bornMs. */
export const wireManifestEntrySchema = z.strictObject({
  path: relPath,
  kind,
  size,
  mtimeMs: safeInt,
  mode,
  hash: nullableHash,
  target: nullableTarget,
  deletedAt: nullableSafeInt,
  damaged: bool,
}, { error: expecting('a manifest entry object') }).superRefine(checkKindFields);

/** The outcome of one op. A failure carries a code; a success carries neither code nor message. */
export const resultItemSchema = z.strictObject({
  op: uint32,
  ok: bool,
  code: errorCode.optional(),
  message: errorText.optional(),
}, { error: expecting('a result object {op, ok, code?, message?}') }).superRefine((v, ctx) => {
  if (!v.ok && v.code === undefined) {
    ctx.addIssue({ code: 'custom', path: ['code'], input: undefined, message: 'missing (required when ok is false)' });
  }
  if (v.ok && (v.code !== undefined || v.message !== undefined)) {
    ctx.addIssue({ code: 'custom', path: [v.code !== undefined ? 'code' : 'message'], input: undefined, message: 'not allowed when ok is true' });
  }
});

// ---- messages -----------------------------------------------------------------------------------

function message<T extends string, S extends z.ZodRawShape>(type: T, shape: S) {
  return z.strictObject({ type: z.literal(type), ...shape });
}

/** receiver→agent, first message: the versions it speaks and its challenge. */
export const helloSchema = message('hello', {
  protocols: arrayOf(positive, 'protocol versions', 1, 8),
  nonce,
  receiverId,
});
/** agent→receiver: the chosen version, its own challenge, and proof that it knows the token. */
export const authSchema = message('auth', { protocol: positive, nonce, mac });
/** receiver→agent: proof that the receiver knows the token too, and the flow-control limits. */
export const welcomeSchema = message('welcome', { mac, window: positive, maxInFlight: positive });
/** Either way, just before closing. */
export const errorSchema = message('error', { code: errorCode, message: errorText });

export const manifestRequestSchema = message('manifestRequest', {});
export const mkdirSchema = message('mkdir', { op: uint32, path: relPath, mode, mtimeMs: safeInt, old });
export const symlinkSchema = message('symlink', { op: uint32, path: relPath, target: symlinkTarget, mtimeMs: safeInt, old });
export const setMetaSchema = message('setMeta', { op: uint32, path: relPath, mode, mtimeMs: safeInt, old });
/**
 * `resumable` (optional, default false): the agent waits for a `resumeFrom` before sending data, so
 * the receiver can continue a transfer an earlier connection left unfinished.
 */
export const fileBeginSchema = message('fileBegin', { op: uint32, path: relPath, size, mtimeMs: safeInt, mode, hash, old, resumable: bool.optional() });
/**
 * Abandons the transfer of fileBegin `op` (the source changed or vanished while it was being sent,
 * or its result already came back as a failure): no chunk of it follows, and that fileBegin's result
 * fails with ABORTED unless it already failed. Not an op itself: it gets no result of its own.
 */
export const abortSchema = message('abort', { op: uint32 });
export const deleteSchema = message('delete', { op: uint32, path: relPath, deletedAt: safeInt, old });
export const heartbeatSchema = message('heartbeat', { now: safeInt, watermark: nullableSafeInt });
export const flushSchema = message('flush', { id: uint32 });

export const manifestPageSchema = message('manifestPage', {
  entries: arrayOf(wireManifestEntrySchema, 'manifest entries', 0, MAX_PAGE_ENTRIES),
  done: bool,
});
export const resultsSchema = message('results', { items: arrayOf(resultItemSchema, 'results', 1, MAX_PAGE_ENTRIES) });
export const creditSchema = message('credit', { bytes: positive });
export const flushedSchema = message('flushed', { id: uint32 });
/** receiver->agent, answering a resumable fileBegin: send the data from `offset` on. */
export const resumeFromSchema = message('resumeFrom', { op: uint32, offset: size });

/** Every message type and its schema. */
export const MESSAGE_SCHEMAS = {
  hello: helloSchema,
  auth: authSchema,
  welcome: welcomeSchema,
  error: errorSchema,
  manifestRequest: manifestRequestSchema,
  mkdir: mkdirSchema,
  symlink: symlinkSchema,
  setMeta: setMetaSchema,
  fileBegin: fileBeginSchema,
  abort: abortSchema,
  delete: deleteSchema,
  heartbeat: heartbeatSchema,
  flush: flushSchema,
  manifestPage: manifestPageSchema,
  results: resultsSchema,
  credit: creditSchema,
  flushed: flushedSchema,
  resumeFrom: resumeFromSchema,
} as const;

export type MessageType = keyof typeof MESSAGE_SCHEMAS;
export type MessageOf<T extends MessageType> = z.infer<(typeof MESSAGE_SCHEMAS)[T]>;
export type ControlMessage = { [T in MessageType]: MessageOf<T> }[MessageType];

export type HelloMessage = MessageOf<'hello'>;
export type AuthMessage = MessageOf<'auth'>;
export type WelcomeMessage = MessageOf<'welcome'>;
export type ErrorMessage = MessageOf<'error'>;
export type ManifestRequestMessage = MessageOf<'manifestRequest'>;
export type MkdirMessage = MessageOf<'mkdir'>;
export type SymlinkMessage = MessageOf<'symlink'>;
export type SetMetaMessage = MessageOf<'setMeta'>;
export type FileBeginMessage = MessageOf<'fileBegin'>;
export type AbortMessage = MessageOf<'abort'>;
export type DeleteMessage = MessageOf<'delete'>;
export type HeartbeatMessage = MessageOf<'heartbeat'>;
export type FlushMessage = MessageOf<'flush'>;
export type ManifestPageMessage = MessageOf<'manifestPage'>;
export type ResultsMessage = MessageOf<'results'>;
export type CreditMessage = MessageOf<'credit'>;
export type FlushedMessage = MessageOf<'flushed'>;
export type ResumeFromMessage = MessageOf<'resumeFrom'>;

export type Precondition = z.infer<typeof preconditionSchema>;
export type WireManifestEntry = z.infer<typeof wireManifestEntrySchema>;
export type ResultItem = z.infer<typeof resultItemSchema>;

// ---- direction ----------------------------------------------------------------------------------

const AGENT_TYPES = [
  'auth', 'error', 'manifestRequest', 'mkdir', 'symlink', 'setMeta', 'fileBegin', 'abort', 'delete', 'heartbeat', 'flush',
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
/** The ops: each names a path, carries an op number and gets exactly one result. */
export type OpMessage = MkdirMessage | SymlinkMessage | SetMetaMessage | FileBeginMessage | DeleteMessage;

// ---- helpers ------------------------------------------------------------------------------------

/**
 * The wire form of a manifest row: exactly the wire fields, so that extra properties (bornMs,
 * database columns) never reach the peer, which would reject them as unknown keys.
 */
export function toWireEntry(e: WireManifestEntry | ManifestEntry): WireManifestEntry {
  return {
    path: e.path, kind: e.kind, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode,
    hash: e.hash, target: e.target, deletedAt: e.deletedAt, damaged: e.damaged,
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
 * A quick yes for a valid manifestPage: the same rules as manifestPageSchema, written out, because
 * zod's generic path costs ~10 µs per entry and a page carries up to MAX_PAGE_ENTRIES of them (a
 * 100,000-file manifest took ~1 s of the agent's CPU). It never accepts what the schema rejects;
 * on false, validate.ts runs the schema, which names the problem.
 */
export function isValidManifestPage(obj: object): boolean {
  const page = obj as Record<string, unknown>;
  if (Object.keys(page).length !== 3 || page['type'] !== 'manifestPage' || typeof page['done'] !== 'boolean') return false;
  const entries = page['entries'];
  if (!Array.isArray(entries) || entries.length > MAX_PAGE_ENTRIES) return false;
  for (const e of entries) if (!isValidWireEntry(e)) return false;
  return true;
}

const WIRE_ENTRY_KEYS = 9;

function isValidWireEntry(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const e = v as Record<string, unknown>;
  if (Object.keys(e).length !== WIRE_ENTRY_KEYS) return false;
  const { path, kind, size, mtimeMs, mode, hash, target, deletedAt, damaged } = e;
  if (typeof path !== 'string' || wirePathProblem(path) !== null) return false;
  if (!Number.isSafeInteger(size) || (size as number) < 0 || !Number.isSafeInteger(mtimeMs)) return false;
  if (!Number.isSafeInteger(mode) || (mode as number) < 0 || (mode as number) > 0o7777) return false;
  if (deletedAt !== null && !Number.isSafeInteger(deletedAt)) return false;
  if (typeof damaged !== 'boolean') return false;
  switch (kind) {
    case 'file': return typeof hash === 'string' && HASH.test(hash) && target === null;
    case 'dir': return hash === null && target === null;
    case 'symlink': return hash === null && typeof target === 'string' && targetProblem(target) === null;
    default: return false;
  }
}

// Compile-time check that the wire entry and the shared vocabulary agree field by field.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const wireMatchesEntry: Same<WireManifestEntry, { -readonly [K in keyof Omit<ManifestEntry, 'bornMs'>]: ManifestEntry[K] }> = true;
void wireMatchesEntry;
