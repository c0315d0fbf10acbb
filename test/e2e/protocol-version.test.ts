// e2e: protocol negotiation against a real `warmsync receiver` (issue 21's version 4): the receiver
// offers 4 and 3; an agent choosing 4 gets `windowMax` in its welcome (64 MiB, above the 8 MiB
// window), one choosing 3 gets the version-3 welcome without it (a version-3 agent rejects unknown
// keys) and is still served; an older version is refused with VERSION_MISMATCH.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeStandbys, exists, openStandby, type Standby } from '../helpers/e2e.js';
import { RawPeer } from '../helpers/peer.js';
import { join } from 'node:path';

const MiB = 1024 * 1024;

describe('protocol versions 4 and 3', () => {
  let s: Standby;
  before(async () => {
    s = await openStandby();
  });
  after(closeStandbys);

  test('hello offers 4 and 3', async () => {
    const peer = await RawPeer.connect(s.url);
    try {
      assert.deepEqual((await peer.hello()).protocols, [4, 3]);
    } finally {
      await peer.close();
    }
  });

  for (const [protocol, windowMax] of [[4, 64 * MiB], [3, undefined]] as const) {
    test(`version ${protocol}: welcome ${windowMax === undefined ? 'without' : 'with'} windowMax, and the session applies ops`, async () => {
      const peer = await RawPeer.connect(s.url);
      try {
        await peer.authenticate(s.token, protocol);
        const welcome = peer.messages.find((m) => m.type === 'welcome');
        assert.ok(welcome?.type === 'welcome');
        assert.equal(welcome.window, 8 * MiB);
        assert.equal(welcome.windowMax, windowMax);
        assert.equal('windowMax' in welcome, windowMax !== undefined);
        peer.send({ type: 'mkdir', op: 1, path: `v${protocol}`, mode: 0o755, mtimeMs: Date.now(), old: null });
        const results = await peer.flush();
        assert.deepEqual(results, [{ op: 1, ok: true }]);
        assert.ok(await exists(join(s.dst, `v${protocol}`)));
      } finally {
        await peer.close();
      }
    });
  }

  test('version 2 is refused with VERSION_MISMATCH', async () => {
    const peer = await RawPeer.connect(s.url);
    try {
      const hello = await peer.hello();
      peer.send(RawPeer.authFor(s.token, hello.nonce, 2));
      await peer.closedWithin(10_000);
      assert.equal(peer.error?.code, 'VERSION_MISMATCH');
      assert.match(peer.error?.message ?? '', /agent asked for protocol 2; this receiver speaks 4, 3/);
    } finally {
      await peer.close();
    }
  });
});
