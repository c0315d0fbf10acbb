/**
 * Compression negotiation over loopback WebSockets: the agent's real dial() against the receiver's
 * real server (protocol 4: welcome offers zstd, the agent gets a compressor), and against a
 * hand-driven protocol-3 receiver (an older warmsync: hello offers only 3, welcome has no
 * `compression`): the handshake still succeeds on 3, and `--compress zstd` falls back to sending
 * uncompressed with one NO_COMPRESSION warning per standby, however often it reconnects.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { compressorFor } from '../../src/agent/compress.js';
import { createLogger } from '../../src/log.js';
import { receiverMac } from '../../src/protocol/handshake.js';
import { dial } from '../../src/transport/client.js';
import { startServer, type RunningServer } from '../../src/transport/server.js';
import { ChunkCompressor } from '../../src/transport/zstd.js';
import { startScriptedReceiver } from '../helpers/scripted-receiver.js';

const TOKEN = 'negotiation-test-token-0123456789';
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A logger that keeps its lines. */
function capture(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('info', (line) => lines.push(line)), lines };
}

async function dialOnce(url: string, log: ReturnType<typeof createLogger>): Promise<Awaited<ReturnType<typeof dial>>> {
  return dial({ url, token: TOKEN, attempts: 1, baseDelayMs: 0, maxDelayMs: 0, handshakeTimeoutMs: 5000, log });
}

/** A receiver of protocol 3, as warmsync before compression: hello [3], welcome without `compression`. */
async function startProtocol3Receiver(): Promise<string> {
  const receiver = await startScriptedReceiver(TOKEN, [3], async (conn, nonce, auth) => {
    assert.equal(auth.protocol, 3, `an old receiver refuses ${JSON.stringify(auth)}`);
    conn.markAuthenticated();
    conn.send({ type: 'welcome', mac: receiverMac(TOKEN, nonce, auth.nonce), window: 1 << 20, maxInFlight: 4 });
  });
  closers.push(() => receiver.close());
  return receiver.url;
}

describe('compression negotiation', () => {
  test('a protocol-4 receiver offers zstd, and --compress zstd gets a compressor without a warning', { timeout: 30_000 }, async () => {
    const { log, lines } = capture();
    const server: RunningServer = await startServer({
      host: '127.0.0.1', port: 0, token: TOKEN, receiverId: 'new-standby', window: 1 << 20, windowMax: 1 << 20, maxInFlight: 4, handshakeTimeoutMs: 5000, log,
      onSession: (conn) => conn.closed.then(() => undefined),
    });
    closers.push(() => server.close());
    const session = await dialOnce(server.url, log);
    try {
      assert.equal(session.protocol, 4);
      assert.deepEqual(session.compression, ['zstd']);
      assert.ok(compressorFor('zstd', session, server.url, log) instanceof ChunkCompressor);
      assert.equal(compressorFor(null, session, server.url, log), null);
      assert.deepEqual(lines.filter((l) => l.includes('NO_COMPRESSION')), []);
    } finally {
      session.conn.close();
    }
  });

  test('a protocol-3 receiver: the handshake agrees on 3, and --compress zstd sends uncompressed, warning once', { timeout: 30_000 }, async () => {
    const url = await startProtocol3Receiver();
    const { log, lines } = capture();
    for (let connection = 1; connection <= 3; connection++) {
      const session = await dialOnce(url, log);
      try {
        assert.equal(session.protocol, 3);
        assert.deepEqual(session.compression, []);
        assert.equal(compressorFor('zstd', session, url, log), null);
      } finally {
        session.conn.close();
      }
    }
    const warnings = lines.filter((l) => l.includes('NO_COMPRESSION'));
    assert.equal(warnings.length, 1, lines.join('\n'));
    assert.match(warnings[0] ?? '', /--compress zstd: the receiver at ws:\/\/127\.0\.0\.1:\d+ cannot decompress zstd \(it offers no compression \(protocol 3\)\); sending uncompressed/);
  });
});
