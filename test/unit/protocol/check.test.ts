/**
 * The hand-written message checks (check.ts, messages.ts), field by field: for every message type
 * and every field, a missing field, a value of the wrong type, a number out of range and an unknown
 * key are refused with BAD_MESSAGE and an error naming the field; nested fields are named with
 * their full location. Then the vocabulary itself: problem counts, when a cross-field refinement runs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProtocolError } from '../../../src/errors.js';
import { arrayOf, intIn, optional, orNull, strictObject } from '../../../src/protocol/check.js';
import { MESSAGE_CHECKS, type ControlMessage, type MessageType } from '../../../src/protocol/messages.js';
import { parseControl } from '../../../src/protocol/validate.js';
import { FILE_ENTRY, VALID, withField } from './fixtures.js';

/** The first valid fixture of each type, with the role that sends it. */
const BY_TYPE = new Map<MessageType, (typeof VALID)[number]>();
for (const v of VALID) if (!BY_TYPE.has(v.msg.type)) BY_TYPE.set(v.msg.type, v);

/** Optional top-level fields: absent is valid. */
const OPTIONAL = new Set(['fileBegin.resumable']);
const BOOLEAN_FIELDS = new Set(['done', 'resumable']);

/** Out-of-range numbers per field name, with the description the error must carry. */
const NUMBERS: Readonly<Record<string, readonly [string, readonly number[]]>> = {
  op: ['an integer 0..4294967295', [-1, 2 ** 32, 1.5]],
  id: ['an integer 0..4294967295', [-1, 2 ** 32, 0.5]],
  size: ['a non-negative safe integer', [-1, 2 ** 53, 2.5]],
  offset: ['a non-negative safe integer', [-1, 2 ** 53]],
  window: ['a positive safe integer', [0, -1, 2 ** 53]],
  maxInFlight: ['a positive safe integer', [0, 1.5]],
  bytes: ['a positive safe integer', [0, -5]],
  protocol: ['a positive safe integer', [0]],
  mode: ['an integer 0..0o7777 (permission bits)', [-1, 0o10000, 1.5]],
  mtimeMs: ['a safe integer', [2 ** 53, -(2 ** 53), 0.5]],
  now: ['a safe integer', [2 ** 53, 0.5]],
  deletedAt: ['a safe integer', [2 ** 53, 0.5]],
  watermark: ['null or a safe integer', [2 ** 53, 0.5]],
};

function rejection(obj: object, from: 'agent' | 'receiver'): ProtocolError {
  try {
    parseControl(obj, from);
  } catch (err) {
    assert.ok(err instanceof ProtocolError, String(err));
    return err;
  }
  assert.fail(`accepted ${JSON.stringify(obj).slice(0, 200)}`);
}

function expectRefused(obj: object, from: 'agent' | 'receiver', code: string, message: string | RegExp): void {
  const err = rejection(obj, from);
  assert.equal(err.code, code, err.message);
  if (typeof message === 'string') assert.equal(err.message, message);
  else assert.match(err.message, message);
}

describe('every field of every message', () => {
  for (const [type, { msg, from }] of BY_TYPE) {
    const fields = Object.keys(msg).filter((k) => k !== 'type');
    for (const field of fields) {
      const at = `${type}.${field}`;
      if (!OPTIONAL.has(at)) {
        test(`${at} missing`, () => expectRefused(withField(msg, field, undefined), from, 'BAD_MESSAGE', `${at}: missing`));
      }
      const wrong = BOOLEAN_FIELDS.has(field) ? 'yes' : true;
      test(`${at} of the wrong type`, () => {
        expectRefused(withField(msg, field, wrong), from, 'BAD_MESSAGE', new RegExp(`^${escape(at)}: expected .*, got ${escape(JSON.stringify(wrong))}$`));
      });
      const numbers = NUMBERS[field];
      if (numbers === undefined) continue;
      for (const n of numbers[1]) {
        test(`${at} = ${n}`, () => expectRefused(withField(msg, field, n), from, 'BAD_MESSAGE', `${at}: expected ${numbers[0]}, got ${n}`));
      }
    }
    test(`${type} with an unknown key`, () => expectRefused(withField(msg, 'zz', 1), from, 'BAD_MESSAGE', `${type}: unknown key "zz"`));
  }

  test('the table reaches every message type', () => {
    assert.deepEqual([...BY_TYPE.keys()].sort(), Object.keys(MESSAGE_CHECKS).sort());
  });
});

describe('nested fields are named with their full location', () => {
  const results = { type: 'results', items: [{ op: 1, ok: true }, { op: 2, ok: false, code: 'X' }] };
  const page = { type: 'manifestPage', entries: [FILE_ENTRY, FILE_ENTRY], done: true };
  const mkdir = BY_TYPE.get('mkdir')?.msg as ControlMessage;
  const cases: ReadonlyArray<[string, object, 'agent' | 'receiver', string, string]> = [
    ['result item missing op', { ...results, items: [results.items[0], { ok: true }] }, 'receiver', 'BAD_MESSAGE', 'results.items[1].op: missing'],
    ['result item unknown key', { ...results, items: [{ op: 1, ok: true, why: 'x' }] }, 'receiver', 'BAD_MESSAGE', 'results.items[0]: unknown key "why"'],
    ['result item message too long', { ...results, items: [{ op: 1, ok: false, code: 'X', message: 'm'.repeat(1025) }] }, 'receiver', 'BAD_MESSAGE',
      `results.items[0].message: expected a string of at most 1024 characters, got "${'m'.repeat(59)}…"`],
    ['result item ok with message', { ...results, items: [{ op: 1, ok: true, message: 'x' }] }, 'receiver', 'BAD_MESSAGE', 'results.items[0].message: not allowed when ok is true'],
    ['second protocol 0', { type: 'hello', protocols: [1, 0], nonce: (BY_TYPE.get('hello')?.msg as { nonce: string }).nonce, receiverId: 'r' }, 'receiver', 'BAD_MESSAGE',
      'hello.protocols[1]: expected a positive safe integer, got 0'],
    ['entry without kind', { ...page, entries: [FILE_ENTRY, withField(FILE_ENTRY, 'kind', undefined)] }, 'receiver', 'BAD_MESSAGE', 'manifestPage.entries[1].kind: missing'],
    ['entry size negative', { ...page, entries: [withField(FILE_ENTRY, 'size', -1)] }, 'receiver', 'BAD_MESSAGE', 'manifestPage.entries[0].size: expected a non-negative safe integer, got -1'],
    ['entry path bad and size bad: the path wins', { ...page, entries: [{ ...FILE_ENTRY, size: -1, path: 'a/../b' }] }, 'receiver', 'BAD_PATH',
      'manifestPage.entries[0].path: invalid path "a/../b": ".." segment (+1 more)'],
    ['old without deletedAt', withField(mkdir, 'old', { kind: 'dir', hash: null }), 'agent', 'BAD_MESSAGE', 'mkdir.old.deletedAt: missing'],
    ['old with a symlink target key', withField(mkdir, 'old', { kind: 'dir', hash: null, deletedAt: null, target: 'x' }), 'agent', 'BAD_MESSAGE', 'mkdir.old: unknown key "target"'],
    ['feed gap without since', { type: 'heartbeat', now: 1, watermark: null, feedIncomplete: { reason: 'x' } }, 'agent', 'BAD_MESSAGE', 'heartbeat.feedIncomplete.since: missing'],
    ['feed gap reason not a string', { type: 'heartbeat', now: 1, watermark: null, feedIncomplete: { since: 1, reason: 7 } }, 'agent', 'BAD_MESSAGE',
      'heartbeat.feedIncomplete.reason: expected a string of at most 1024 characters, got 7'],
    ['DB position with a bad LSN', { type: 'heartbeat', now: 1, watermark: null, db: { system: '1', positions: [{ lsn: '0-1', at: 1 }], clock: null } }, 'agent', 'BAD_MESSAGE',
      'heartbeat.db.positions[0].lsn: expected a pg_lsn ("X/Y", 1..8 hex digits each), got "0-1"'],
    ['DB clock offset not finite', { type: 'heartbeat', now: 1, watermark: null, db: { system: '1', positions: [], clock: { offsetMs: 'x', boundMs: 1, at: 1, samples: 1 } } }, 'agent', 'BAD_MESSAGE',
      'heartbeat.db.clock.offsetMs: expected a finite number of ms (|x| <= 1e12), got "x"'],
    ['deletions held negative', { type: 'heartbeat', now: 1, watermark: null, deletionsHeld: -1 }, 'agent', 'BAD_MESSAGE', 'heartbeat.deletionsHeld: expected an integer 0..4294967295, got -1'],
  ];
  for (const [name, obj, from, code, message] of cases) test(name, () => expectRefused(obj, from, code, message));
});

describe('the check vocabulary', () => {
  const pair = strictObject<{ lo: number; hi: number }>(
    { lo: intIn('a small integer', 0, 9), hi: intIn('a small integer', 0, 9) },
    'a pair',
    (v) => (v.lo <= v.hi ? null : [{ path: ['hi'], message: 'expected at least lo', badPath: false }]),
  );

  test('a valid value gives null', () => assert.equal(pair({ lo: 1, hi: 2 }), null));

  test('every field problem and the unknown keys are counted, in field order', () => {
    const issues = pair({ lo: 'x', hi: 10, a: 1, b: 2 });
    assert.deepEqual(issues?.map((i) => [i.path.join('.'), i.message]), [
      ['lo', 'expected a small integer, got "x"'],
      ['hi', 'expected a small integer, got 10'],
      ['', 'unknown keys "a", "b"'],
    ]);
  });

  test('the refinement runs once every field is valid, not before', () => {
    assert.deepEqual(pair({ lo: 5, hi: 1 })?.map((i) => i.message), ['expected at least lo']);
    assert.deepEqual(pair({ lo: 5, hi: 'x' })?.map((i) => i.message), ['expected a small integer, got "x"']);
  });

  test('not an object, or absent', () => {
    assert.deepEqual(pair([1, 2])?.map((i) => i.message), ['expected a pair, got an array of 2']);
    assert.deepEqual(pair(undefined)?.map((i) => i.message), ['missing']);
  });

  test('orNull and optional', () => {
    const small = intIn('a small integer', 0, 9);
    assert.equal(orNull(small)(null), null);
    assert.equal(orNull(small)(undefined)?.[0]?.message, 'missing');
    assert.equal(optional(small)(undefined), null);
    assert.equal(optional(small)(null)?.[0]?.message, 'expected a small integer, got null');
  });

  test('arrays: the length first, then each item at its index', () => {
    const list = arrayOf(intIn('a digit', 0, 9), 'digits', 1, 3);
    assert.equal(list([1, 2]), null);
    assert.deepEqual(list([1, 2, 3, 'x'])?.map((i) => i.message), ['expected an array of 1..3 digits, got an array of 4']);
    assert.deepEqual(list([1, 'x', 10])?.map((i) => [i.path[0], i.message]), [[1, 'expected a digit, got "x"'], [2, 'expected a digit, got 10']]);
  });

  test('a field named like an Object.prototype property is refused when the check is built', () => {
    assert.throws(() => strictObject<{ toString: number }>({ toString: intIn('x', 0, 1) }, 'x'), /shadows Object\.prototype/);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
