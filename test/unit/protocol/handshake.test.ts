/**
 * handshake: MACs are pinned to their documented input, differ by role and token, compare in
 * constant time without throwing; nonces are fresh 32-byte values that pass the hello schema;
 * a full exchange runs through the codec.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeFrame, encodeControl } from '../../../src/protocol/codec.js';
import { agentMac, macEqual, newNonce, pickProtocol, receiverMac } from '../../../src/protocol/handshake.js';
import { PROTOCOL_VERSION, SUPPORTED_PROTOCOLS } from '../../../src/protocol/limits.js';
import { NONCE_A, NONCE_B } from './fixtures.js';

const TOKEN = 's3cret token';

describe('macs', () => {
  test('known answers (the MAC inputs documented in docs/protocol.md)', () => {
    assert.equal(agentMac(TOKEN, NONCE_A, NONCE_B), 'a9608bd400ad3ce2497f2175b2df1b552a1b98330b406404ac33ef4b45addbf4');
    assert.equal(receiverMac(TOKEN, NONCE_A, NONCE_B), 'eed2d47c9520eae5141115163c00f1ef79e21b28844f3d0ec2d5d5226cc39af4');
  });

  test('differ by role, also with the nonces swapped', () => {
    assert.notEqual(agentMac(TOKEN, NONCE_A, NONCE_B), receiverMac(TOKEN, NONCE_A, NONCE_B));
    assert.notEqual(agentMac(TOKEN, NONCE_A, NONCE_B), receiverMac(TOKEN, NONCE_B, NONCE_A));
  });

  test('depend on both nonces', () => {
    assert.notEqual(agentMac(TOKEN, NONCE_A, NONCE_B), agentMac(TOKEN, NONCE_B, NONCE_A));
    assert.notEqual(agentMac(TOKEN, NONCE_A, NONCE_B), agentMac(TOKEN, NONCE_A, NONCE_A));
  });

  test('a wrong token fails verification, the right one passes', () => {
    const sent = agentMac('wrong', NONCE_A, NONCE_B);
    assert.equal(macEqual(sent, agentMac(TOKEN, NONCE_A, NONCE_B)), false);
    assert.equal(macEqual(agentMac(TOKEN, NONCE_A, NONCE_B), agentMac(TOKEN, NONCE_A, NONCE_B)), true);
    assert.equal(macEqual(receiverMac(`${TOKEN}\n`, NONCE_A, NONCE_B), receiverMac(TOKEN, NONCE_A, NONCE_B)), false);
  });

  test('an empty token is refused', () => {
    assert.throws(() => agentMac('', NONCE_A, NONCE_B), RangeError);
    assert.throws(() => receiverMac('', NONCE_A, NONCE_B), RangeError);
  });
});

describe('macEqual', () => {
  const mac = agentMac(TOKEN, NONCE_A, NONCE_B);
  const cases: ReadonlyArray<[string, string, string, boolean]> = [
    ['equal', mac, mac, true],
    ['one character differs', mac, `${mac.slice(0, -1)}${mac.endsWith('0') ? '1' : '0'}`, false],
    ['shorter', mac, mac.slice(0, 63), false],
    ['longer', mac, `${mac}0`, false],
    ['empty against a mac', '', mac, false],
    ['same characters, different byte length', 'é'.repeat(32), 'e'.repeat(64), false],
    ['not hex at all', 'zz', 'zz', true],
  ];
  for (const [name, a, b, expected] of cases) {
    test(name, () => {
      assert.equal(macEqual(a, b), expected);
      assert.equal(macEqual(b, a), expected);
    });
  }

  test('never throws on values that are not strings', () => {
    assert.equal(macEqual(undefined as unknown as string, mac), false);
    assert.equal(macEqual(mac, 42 as unknown as string), false);
  });
});

describe('nonces', () => {
  test('are 32 random bytes in canonical base64, accepted by the hello schema', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const nonce = newNonce();
      assert.equal(nonce.length, 44);
      const bytes = Buffer.from(nonce, 'base64');
      assert.equal(bytes.length, 32);
      assert.equal(bytes.toString('base64'), nonce);
      seen.add(nonce);
      if (i < 100) decodeFrame(encodeControl({ type: 'hello', protocols: [1], nonce, receiverId: 'r' }), 'receiver');
    }
    assert.equal(seen.size, 1000, 'nonces differ');
  });
});

describe('pickProtocol', () => {
  const cases: ReadonlyArray<[readonly number[], number | null]> = [
    [[3], 3],
    [[4], 4],
    [[4, 3, 2, 1], 4],
    [[4, 3], 4],
    [[3, 4], 4],
    [[5, 4, 3, 2, 1], 4],
    [[5, 3], 3],
    [[3, 3], 3],
    [[1], null],
    [[2], null],
    [[5], null],
    [[], null],
  ];
  for (const [offered, expected] of cases) test(`[${offered.join(', ')}] -> ${expected}`, () => assert.equal(pickProtocol(offered), expected));
  test('this build speaks version 4, and 3 with a peer that speaks no newer', () => {
    assert.equal(PROTOCOL_VERSION, 4);
    assert.deepEqual(SUPPORTED_PROTOCOLS, [4, 3]);
  });
});

test('a full exchange through the codec authenticates both sides', () => {
  // receiver -> agent: hello
  const hello = decodeFrame(encodeControl({ type: 'hello', protocols: [PROTOCOL_VERSION], nonce: newNonce(), receiverId: 'standby' }), 'receiver');
  assert.ok(hello.message.type === 'hello');
  const protocol = pickProtocol(hello.message.protocols);
  assert.equal(protocol, PROTOCOL_VERSION);
  // agent -> receiver: auth
  const agentNonce = newNonce();
  const auth = decodeFrame(encodeControl({
    type: 'auth', protocol: protocol ?? 0, nonce: agentNonce, mac: agentMac(TOKEN, hello.message.nonce, agentNonce),
  }), 'agent');
  assert.ok(auth.kind === 'control' && auth.message.type === 'auth');
  assert.ok(macEqual(auth.message.mac, agentMac(TOKEN, hello.message.nonce, auth.message.nonce)), 'receiver accepts the agent');
  assert.ok(!macEqual(auth.message.mac, agentMac('other', hello.message.nonce, auth.message.nonce)), 'a receiver with another token does not');
  // receiver -> agent: welcome
  const welcome = decodeFrame(encodeControl({
    type: 'welcome', mac: receiverMac(TOKEN, hello.message.nonce, auth.message.nonce), window: 8 << 20, maxInFlight: 32,
  }), 'receiver');
  assert.ok(welcome.message.type === 'welcome');
  assert.ok(macEqual(welcome.message.mac, receiverMac(TOKEN, hello.message.nonce, agentNonce)), 'agent accepts the receiver');
  assert.ok(!macEqual(welcome.message.mac, auth.message.mac), 'the agent\'s own mac is not a valid welcome');
});
