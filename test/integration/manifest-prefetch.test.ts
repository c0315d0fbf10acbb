/**
 * `agent --once` asks for the manifest with its `auth`, a round trip before the welcome comes back
 * (DialOptions.requestManifest), and the Sender hands the pages that came before `fetchManifest`
 * to it. A hand-driven receiver here waits for the manifestRequest before it sends its welcome: an
 * agent that asked only after the welcome never gets one, and the dial times out. The pages must
 * all reach `fetchManifest` in order; a later pass asks again; a receiver whose welcome fails the
 * MAC check is never read from; and a dial that is stopped (the run ended) makes no more attempts.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { Sender } from '../../src/agent/sender.js';
import { createLogger } from '../../src/log.js';
import { receiverMac } from '../../src/protocol/handshake.js';
import type { WireManifestEntry } from '../../src/protocol/messages.js';
import { createHasher } from '../../src/scan/hash.js';
import { SourceRoot } from '../../src/scan/openfile.js';
import { dial } from '../../src/transport/client.js';
import { startScriptedReceiver } from '../helpers/scripted-receiver.js';

const TOKEN = 'prefetch-test-token-0123456789abc';
const log = createLogger('silent', () => undefined);
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const close of closers.splice(0)) await close();
});

/** Rows per early page: 60 rows are about 11 KB of JSON, over MAX_HANDSHAKE_FRAME_BYTES. */
const ROWS_PER_PAGE = 60;

function entry(i: number): WireManifestEntry {
  return { path: `data/f${i}`, kind: 'file', size: i, mtimeMs: 1_700_000_000_000 + i, mode: 0o644, hash: i.toString(16).padStart(16, '0'), target: null, deletedAt: null, damaged: false };
}

/**
 * A receiver that sends its welcome only once the manifestRequest has come (or never, if it does
 * not come within 2 s), then the manifest in `pages` pages of ROWS_PER_PAGE rows (each page over the
 * handshake's frame limit, so the agent must read them as authenticated, though they arrive with the
 * welcome); each later request gets one row. `badMac`: the welcome's MAC is wrong. Records the order
 * of the agent's messages.
 */
async function startReceiver(pages: number, badMac = false): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const receiver = await startScriptedReceiver(TOKEN, [4], async (conn, nonce, auth) => {
    seen.push(auth.type);
    const request = await conn.nextControl(2000);
    seen.push(request.type);
    conn.markAuthenticated();
    const mac = receiverMac(badMac ? `${TOKEN}-not` : TOKEN, nonce, auth.nonce);
    conn.send({ type: 'welcome', mac, window: 1 << 20, windowMax: 1 << 20, maxInFlight: 4 });
    // In the same tick as the welcome: the pages reach the agent before it has a Sender.
    for (let p = 0; p < pages; p++) {
      const entries = Array.from({ length: ROWS_PER_PAGE }, (_, i) => entry(p * ROWS_PER_PAGE + i));
      conn.send({ type: 'manifestPage', entries, done: p === pages - 1 });
    }
    conn.onFrame((frame) => {
      if (frame.kind !== 'control') return;
      seen.push(frame.message.type);
      if (frame.message.type === 'manifestRequest') conn.send({ type: 'manifestPage', entries: [entry(1000)], done: true });
    });
  });
  closers.push(() => receiver.close());
  return { url: receiver.url, seen };
}

function dialOptions(url: string): Parameters<typeof dial>[0] {
  return { url, token: TOKEN, attempts: 1, baseDelayMs: 0, maxDelayMs: 0, handshakeTimeoutMs: 5000, log, requestManifest: true };
}

describe('the manifest asked for with the handshake', () => {
  test('the request goes out before the welcome; early pages reach fetchManifest in order; a later pass asks again', { timeout: 30_000 }, async () => {
    const { url, seen } = await startReceiver(3);
    const session = await dial(dialOptions(url));
    const source = new SourceRoot('/');
    try {
      assert.equal(session.manifestRequested, true);
      assert.deepEqual(seen, ['auth', 'manifestRequest']);
      const sender = new Sender(session.conn, session, source, await createHasher({ source }));
      const first: string[] = [];
      await sender.fetchManifest((entries) => first.push(...entries.map((e) => e.path)));
      assert.deepEqual(first, Array.from({ length: 3 * ROWS_PER_PAGE }, (_, i) => `data/f${i}`));
      const second: string[] = [];
      await sender.fetchManifest((entries) => second.push(...entries.map((e) => e.path)));
      assert.deepEqual(second, ['data/f1000']);
      assert.deepEqual(seen, ['auth', 'manifestRequest', 'manifestRequest']);
    } finally {
      session.conn.close();
      source.close();
    }
  });

  test('without requestManifest the agent waits for the welcome, which this receiver withholds: no early request', { timeout: 30_000 }, async () => {
    const { url, seen } = await startReceiver(1);
    await assert.rejects(dial({ ...dialOptions(url), requestManifest: false }), /closed the connection|TIMEOUT|no message/);
    assert.deepEqual(seen, ['auth']);
  });

  test('a welcome with the wrong MAC ends the dial AUTH_FAILED, pages or not', { timeout: 30_000 }, async () => {
    const { url } = await startReceiver(2, true);
    await assert.rejects(dial(dialOptions(url)), { code: 'AUTH_FAILED' });
  });

  test('a stopped dial makes no more attempts and ends ABORTED', { timeout: 30_000 }, async () => {
    // A port that refuses connections: every attempt fails at once, and the backoff waits 10 s.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const stop = new AbortController();
    const started = performance.now();
    const dialing = dial({ ...dialOptions(`ws://127.0.0.1:${port}`), attempts: 5, baseDelayMs: 10_000, maxDelayMs: 10_000, signal: stop.signal });
    setTimeout(() => stop.abort(), 200);
    await assert.rejects(dialing, { code: 'ABORTED' });
    assert.ok(performance.now() - started < 5_000, 'the backoff wait ended when the dial was stopped');
  });
});
