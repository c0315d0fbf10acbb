/**
 * messages helpers: manifest rows convert to wire entries (bornMs stays home), errorMessage
 * always builds an `error` message the peer accepts, and the quick manifestPage check
 * accepts exactly what the full check accepts, and the quick path check accepts only canonical paths.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { ManifestEntry } from '../../../src/entry.js';
import { decodeFrame, encodeControl } from '../../../src/protocol/codec.js';
import { MAX_PAGE_ENTRIES } from '../../../src/protocol/limits.js';
import { errorMessage, isPlainPath, isValidManifestPage, MESSAGE_CHECKS, toWireEntry } from '../../../src/protocol/messages.js';
import { relPathProblem } from '../../../src/relpath.js';
import { FILE_ENTRY, LINK_ENTRY } from './fixtures.js';

describe('wire entries', () => {
  test('a manifest row minus bornMs', () => {
    const row: ManifestEntry = { ...LINK_ENTRY, bornMs: 42 };
    const wire = toWireEntry(row);
    assert.deepEqual(wire, LINK_ENTRY);
    assert.ok(!('bornMs' in wire));
    assert.notEqual(toWireEntry(FILE_ENTRY), FILE_ENTRY, 'a copy, not the same object');
  });
});

describe('errorMessage', () => {
  const cases: ReadonlyArray<[string, string, string, string]> = [
    ['passes a valid code through', 'AUTH_FAILED', 'wrong token', 'AUTH_FAILED'],
    ['uppercases and replaces invalid characters', 'enoent-2', 'x', 'ENOENT__'],
    ['an empty code becomes ERROR', '', 'x', 'ERROR'],
    ['cuts a long code', 'A'.repeat(100), 'x', 'A'.repeat(64)],
  ];
  for (const [name, code, text, expected] of cases) {
    test(name, () => {
      const msg = errorMessage(code, text);
      assert.equal(msg.code, expected);
      decodeFrame(encodeControl(msg), 'agent');
    });
  }

  test('cuts a long message without splitting a surrogate pair', () => {
    const msg = errorMessage('X', '😀'.repeat(1000));
    assert.ok(msg.message.length <= 1024);
    assert.ok(msg.message.endsWith('…'));
    assert.doesNotMatch(msg.message, /\p{Cs}/u, 'no lone surrogate');
    decodeFrame(encodeControl(msg), 'receiver');
  });
});

describe('isValidManifestPage (the quick yes) agrees with the manifestPage check', () => {
  // Each field drawn from valid and invalid values alike, keys sometimes dropped or added.
  const field = {
    path: fc.constantFrom('a', 'etc/x.yaml', 'a/../b', '/abs', '', 'a//b', 'x\u0000y', '\ud800', 'ok/é'),
    kind: fc.constantFrom('file', 'dir', 'symlink', 'fifo', 1),
    size: fc.constantFrom(0, 5, -1, 1.5, 2 ** 53, '5', null),
    mtimeMs: fc.constantFrom(0, -5, 1_700_000_000_123, 0.5, 2 ** 53, null),
    mode: fc.constantFrom(0, 0o644, 0o7777, 0o10000, -1, 1.5, '644'),
    hash: fc.constantFrom(null, '0123456789abcdef', '0123456789ABCDEF', '0123', 5),
    target: fc.constantFrom(null, 'x', '../etc', '', 'a\u0000b', 'y'.repeat(5000), 7),
    deletedAt: fc.constantFrom(null, 0, 1_700_000_000_000, 0.5, 'now'),
    damaged: fc.constantFrom(true, false, 0, null),
  };
  const entry = fc.record(field, { requiredKeys: ['path', 'kind', 'size', 'mtimeMs', 'mode', 'hash', 'target', 'deletedAt', 'damaged'] })
    .chain((e) => fc.tuple(fc.constant(e), fc.constantFrom<string | null>(null, null, null, 'bornMs', 'path', 'kind', 'damaged')))
    .map(([e, twist]) => {
      if (twist === 'bornMs') return { ...e, bornMs: 1 };
      if (twist !== null) return Object.fromEntries(Object.entries(e).filter(([k]) => k !== twist));
      return e;
    });
  const valid = fc.constantFrom<object>(FILE_ENTRY, LINK_ENTRY);

  test('on random pages of valid and invalid entries', () => {
    fc.assert(fc.property(fc.array(fc.oneof(entry, valid), { maxLength: 4 }), fc.constantFrom<unknown>(true, false, 1), (entries, done) => {
      const page = { type: 'manifestPage', entries, done };
      assert.equal(isValidManifestPage(page), MESSAGE_CHECKS.manifestPage(page) === null, JSON.stringify(page));
    }), { numRuns: 3000 });
  });

  test('on page-level problems', () => {
    const ok = { type: 'manifestPage', entries: [FILE_ENTRY, LINK_ENTRY], done: true };
    for (const page of [ok, { ...ok, extra: 1 }, { type: 'manifestPage', entries: [], done: false }, { ...ok, entries: Array(MAX_PAGE_ENTRIES + 1).fill(FILE_ENTRY) }, { ...ok, entries: {} }]) {
      assert.equal(isValidManifestPage(page), MESSAGE_CHECKS.manifestPage(page) === null, JSON.stringify(page).slice(0, 200));
    }
  });
});

describe('isPlainPath (the quick path check) only accepts canonical paths', () => {
  const char = fc.constantFrom('a', 'b', '.', '/', '\\', '\u0000', 'é', '\ud83d\ude00', '\ud800', 'x'.repeat(40));
  test('on random strings of path-like characters', () => {
    fc.assert(fc.property(fc.array(char, { maxLength: 12 }).map((cs) => cs.join('')), (p) => {
      if (isPlainPath(p)) assert.equal(relPathProblem(p), null, JSON.stringify(p));
    }), { numRuns: 5000 });
  });

  test('accepts ordinary paths, rejects the edge cases', () => {
    for (const p of ['a', 'etc/system.yaml', 'data/filestore/ab/ab01', '.hidden', 'a/..b', 'a\\b', 'x'.repeat(85)]) assert.ok(isPlainPath(p), p);
    for (const p of ['', '/a', 'a/', 'a//b', '.', '..', 'a/./b', 'a/../b', 'a\u0000b', 'x'.repeat(86), 'é/\ud800', 'a/'.repeat(700) + 'a']) {
      assert.ok(!isPlainPath(p), JSON.stringify(p).slice(0, 40));
    }
  });
});
