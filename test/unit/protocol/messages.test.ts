/**
 * messages helpers: manifest rows convert to wire entries (bornMs stays home), and errorMessage
 * always builds an `error` message the peer accepts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ManifestEntry } from '../../../src/entry.js';
import { decodeFrame, encodeControl, errorMessage, toWireEntry } from '../../../src/protocol/index.js';
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
