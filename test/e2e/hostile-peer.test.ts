// e2e: peers that are not a real agent, against a real `warmsync receiver`: raw TCP garbage; a
// WebSocket client sending text frames, binary garbage, a fileBegin before auth, an oversized
// frame before auth, an auth with a wrong MAC; and, authenticated with the real token, ops with
// traversal paths, a write through a symlink it just created, a file with a wrong checksum,
// chunks for an unknown transfer, offsets past the end, too many transfers at once, a transfer
// cut off mid-file, and compressed chunks that are corrupt, decompress to more or less than they
// declare, or come from a protocol-3 agent that negotiated no compression. After each: nothing
// outside the standby root, no temporary or partial file, and the receiver still serves a real
// `warmsync agent --once`, leaving the standby identical.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ResultItem } from '../../src/protocol/messages.js';
import {
  assertSameTree, closeStandbys, exists, findTempFiles, syncOnce, tombstonePaths, waitFor, waitForReceiverIdle, type Standby,
} from '../helpers/e2e.js';
import { ZCHUNK_HEADER_BYTES } from '../../src/protocol/limits.js';
import { ChunkCompressor } from '../../src/transport/zstd.js';
import { RawPeer, fileBegin, openTargetStandby } from '../helpers/peer.js';

after(closeStandbys);

const WAIT_MS = 10_000;

/** The receiver closed the connection, after telling the peer why (`error` with `code`), and not as a normal close. */
async function assertRejected(peer: RawPeer, code: string): Promise<void> {
  const closed = await peer.closedWithin(WAIT_MS);
  assert.ok(closed !== null, `the receiver did not close the connection within ${WAIT_MS} ms; got ${JSON.stringify(peer.messages)}`);
  assert.equal(peer.error?.code, code, `expected error ${code}, got ${JSON.stringify(peer.messages)} (close ${closed.code})`);
  assert.notEqual(closed.code, 1000, 'a protocol violation must not close as normal');
  if (code === 'AUTH_FAILED') assert.equal(peer.messages.some((m) => m.type === 'welcome'), false, 'welcomed despite a wrong MAC');
}

/** Flushes, and fails if the receiver closed the connection instead of answering. */
async function flushed(peer: RawPeer): Promise<ResultItem[]> {
  const results = await peer.flush(WAIT_MS);
  assert.ok(results !== null, `no flushed within ${WAIT_MS} ms; got ${JSON.stringify(peer.messages)}`);
  return results;
}

describe('hostile peers write nothing', () => {
  let s: Standby;
  let outside: string;
  let workspaceEntries: string[];
  /** Paths a hostile but authenticated peer created legitimately (held as tombstones afterwards). */
  const planted = new Set<string>();

  before(async () => {
    ({ s, outside } = await openTargetStandby());
    workspaceEntries = (await readdir(s.dir)).sort();
  });

  /**
   * Nothing outside the root, no temporary file, none of `absent` at its final path, and the
   * receiver still serves a real agent, leaving the standby identical to the source.
   */
  async function assertUnharmed(absent: readonly string[] = []): Promise<void> {
    await waitForReceiverIdle(s.dst);
    assert.deepEqual(await readdir(outside), [], 'something was written outside the standby');
    assert.deepEqual((await readdir(s.dir)).sort(), workspaceEntries, 'something appeared next to the standby root');
    assert.deepEqual(await findTempFiles(s.dst), [], 'a temporary file was left behind');
    for (const rel of absent) assert.equal(await exists(join(s.dst, rel)), false, `${rel} is on the standby`);
    assert.equal(s.receiver.child.exitCode, null, `the receiver died:\n${s.receiver.stderr()}`);
    await syncOnce(s);
    const tombstones = tombstonePaths(s.dst);
    assert.deepEqual(tombstones.filter((p) => !planted.has(p)), [], 'the real agent had to delete something');
    await assertSameTree(s.src, s.dst, { skipDst: (rel) => tombstones.includes(rel) });
  }

  test('raw TCP garbage is dropped', { timeout: 60_000 }, async () => {
    const port = Number(new URL(s.url).port);
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    let closed = false;
    socket.once('close', () => (closed = true));
    socket.write(Buffer.concat([randomBytes(512), Buffer.from('\r\n\r\nGET / HTTP/1.1\r\n\r\n'), randomBytes(4096)]));
    await waitFor('the receiver to drop the TCP connection', () => closed, WAIT_MS);
    assert.match(reply, /^HTTP\/1\.1 400 /);
    await assertUnharmed();
  });

  test('a text frame before auth is rejected', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.hello();
    peer.sendRaw('{"type":"auth"}');
    await assertRejected(peer, 'BAD_FRAME');
    await assertUnharmed();
  });

  test('binary garbage before auth is rejected', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.hello();
    peer.sendRaw(Buffer.concat([Buffer.from([0x7f]), randomBytes(2048)]));
    await assertRejected(peer, 'BAD_FRAME');
    await assertUnharmed();
  });

  test('a fileBegin (and its data) before auth is rejected', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.hello();
    peer.sendJson(fileBegin(1, 'unauthenticated.txt', 5));
    peer.sendChunk(1, 0, Buffer.from('pwned'));
    await assertRejected(peer, 'UNEXPECTED_MESSAGE');
    await assertUnharmed(['unauthenticated.txt']);
  });

  test('an oversized frame before auth is refused unparsed', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    const hello = await peer.hello();
    peer.sendJson({ ...RawPeer.authFor(s.token, hello.nonce), padding: 'x'.repeat(256 * 1024) });
    // Before authentication ws's own maxPayload is the handshake's 8 KiB: it refuses the frame from
    // its header, before buffering it, and closes with 1009 itself (no `error` message to send).
    const closed = await peer.closedWithin(WAIT_MS);
    assert.equal(closed?.code, 1009, `expected close 1009, got ${JSON.stringify(closed)} after ${JSON.stringify(peer.messages)}`);
    assert.equal(peer.messages.some((m) => m.type === 'welcome'), false, 'welcomed despite an oversized auth');
    await waitFor('the receiver to log FRAME_TOO_LARGE', () => s.receiver.stderr().includes('FRAME_TOO_LARGE'));
    await assertUnharmed();
  });

  test('an auth with a wrong MAC is rejected, and ops after it are ignored', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    const hello = await peer.hello();
    peer.send(RawPeer.authFor('not-the-token-at-all-0123456789', hello.nonce));
    peer.sendJson({ type: 'mkdir', op: 1, path: 'after-bad-auth', mode: 0o755, mtimeMs: 0, old: null });
    await assertRejected(peer, 'AUTH_FAILED');
    await assertUnharmed(['after-bad-auth']);
  });

  for (const path of ['../escape', '/abs', 'a/../../b', '.warmsync/manifest.sqlite']) {
    test(`authenticated ops on ${JSON.stringify(path)} are refused`, { timeout: 60_000 }, async () => {
      for (const op of [
        fileBegin(1, path, 5),
        { type: 'mkdir', op: 1, path, mode: 0o755, mtimeMs: 0, old: null },
        { type: 'symlink', op: 1, path, target: outside, mtimeMs: 0, old: null },
        { type: 'delete', op: 1, path, deletedAt: Date.now(), old: null },
      ]) {
        const peer = await RawPeer.connect(s.url);
        await peer.authenticate(s.token);
        peer.sendJson(op);
        if ('size' in op) peer.sendChunk(1, 0, Buffer.from('pwned'));
        await assertRejected(peer, 'BAD_PATH');
        await waitForReceiverIdle(s.dst);
      }
      await assertUnharmed(['escape', 'b']);
    });
  }

  test('a symlink out of the root is never written through', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    peer.send({ type: 'symlink', op: 1, path: 'link', target: outside, mtimeMs: Date.now(), old: null });
    planted.add('link');
    peer.sendJson(fileBegin(2, 'link/pwned', 5));
    peer.sendChunk(2, 0, Buffer.from('pwned'));
    peer.sendJson({ type: 'mkdir', op: 3, path: 'link/sub', mode: 0o755, mtimeMs: 0, old: null });
    peer.sendJson({ type: 'symlink', op: 4, path: 'link/sneaky', target: '/etc/passwd', mtimeMs: 0, old: null });
    peer.sendJson(fileBegin(5, 'link/empty', 0));
    const results = await flushed(peer);
    assert.ok((await peer.close(WAIT_MS)) !== null, 'the connection did not close');
    const byOp = new Map(results.map((r) => [r.op, r]));
    assert.equal(byOp.get(1)?.ok, true, 'the symlink itself is a legitimate op');
    for (const op of [2, 3, 4, 5]) {
      assert.equal(byOp.get(op)?.ok, false, `op ${op} through the symlink succeeded: ${JSON.stringify(results)}`);
      assert.equal(byOp.get(op)?.code, 'UNSAFE_PATH');
    }
    await assertUnharmed();
  });

  test('a file whose content does not match its checksum never reaches its final path', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    const content = randomBytes(200_000);
    peer.sendJson(fileBegin(1, 'data/bad-checksum.bin', content.length));
    peer.sendChunk(1, 0, content.subarray(0, 100_000));
    peer.sendChunk(1, 100_000, content.subarray(100_000));
    const results = await flushed(peer);
    assert.ok((await peer.close(WAIT_MS)) !== null, 'the connection did not close');
    assert.deepEqual(results.map((r) => [r.op, r.ok, r.code]), [[1, false, 'CHECKSUM_MISMATCH']]);
    await assertUnharmed(['data/bad-checksum.bin']);
  });

  test('a file whose fileEnd hash does not match its content never reaches its final path', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    const content = randomBytes(200_000);
    peer.sendJson(fileBegin(1, 'data/bad-file-end.bin', content.length, null));
    peer.sendChunk(1, 0, content);
    peer.sendJson({ type: 'fileEnd', op: 1, hash: '0123456789abcdef' });
    const results = await flushed(peer);
    assert.ok((await peer.close(WAIT_MS)) !== null, 'the connection did not close');
    assert.deepEqual(results.map((r) => [r.op, r.ok, r.code]), [[1, false, 'CHECKSUM_MISMATCH']]);
    await assertUnharmed(['data/bad-file-end.bin']);
  });

  const misplacedFileEnds: Array<[string, (peer: RawPeer) => void, string]> = [
    ['for an unknown transfer', () => undefined, 'UNKNOWN_TRANSFER'],
    ['before the last bytes', (peer) => {
      peer.sendJson(fileBegin(9, 'data/early-end.bin', 10, null));
      peer.sendChunk(9, 0, Buffer.from('abc'));
    }, 'BAD_OFFSET'],
    ['for a transfer whose fileBegin carried its hash', (peer) => {
      peer.sendJson(fileBegin(9, 'data/hashed-end.bin', 10));
      peer.sendChunk(9, 0, Buffer.from('abc'));
    }, 'UNEXPECTED_MESSAGE'],
  ];
  for (const [what, before, code] of misplacedFileEnds) {
    test(`a fileEnd ${what} is rejected, leaving no partial file`, { timeout: 60_000 }, async () => {
      const peer = await RawPeer.connect(s.url);
      await peer.authenticate(s.token);
      before(peer);
      peer.sendJson({ type: 'fileEnd', op: 9, hash: '0123456789abcdef' });
      await assertRejected(peer, code);
      await assertUnharmed(['data/early-end.bin', 'data/hashed-end.bin']);
    });
  }

  /** `data` compressed as the real agent compresses it (the payload of its zchunk frame). */
  const zstdOf = (data: Buffer): Buffer => {
    const frame = new ChunkCompressor().frame(1, 0, data);
    assert.ok(frame !== null, 'test data did not compress');
    return Buffer.from(frame.subarray(ZCHUNK_HEADER_BYTES));
  };
  const text = Buffer.from('key: value # a line of configuration\n'.repeat(2000));
  const hostileZchunks: Array<[string, (peer: RawPeer) => void, string, RegExp]> = [
    ['whose compressed data is corrupt (truncated)', (peer) => {
      const z = zstdOf(text);
      peer.sendZchunk(1, 0, text.length, z.subarray(0, z.length - 8));
    }, 'BAD_COMPRESSION', /zchunk frame \(transfer 1, offset 0, \d+ bytes declared\): (not valid zstd data|decompressed to \d+ bytes, not the \d+ declared)/],
    ['whose data is not zstd at all', (peer) => peer.sendZchunk(1, 0, text.length, randomBytes(500)), 'BAD_COMPRESSION', /not valid zstd data/],
    ['that decompresses to more than it declares (a zstd bomb)', (peer) => {
      peer.sendZchunk(1, 0, 1000, zstdOf(Buffer.alloc(1024 * 1024)));
    }, 'BAD_COMPRESSION', /decompresses to more than the 1000 bytes declared/],
    ['that decompresses to less than it declares', (peer) => peer.sendZchunk(1, 0, text.length + 1, zstdOf(text)), 'BAD_COMPRESSION', /decompressed to \d+ bytes, not the \d+ declared/],
    ['declaring more than a chunk may hold', (peer) => peer.sendZchunk(1, 0, 1024 * 1024 + 1, zstdOf(text)), 'FRAME_TOO_LARGE', /over MAX_CHUNK_BYTES/],
  ];
  for (const [what, send, code, message] of hostileZchunks) {
    test(`a compressed chunk ${what} is a protocol error, leaving no partial file`, { timeout: 60_000 }, async () => {
      const peer = await RawPeer.connect(s.url);
      await peer.authenticate(s.token);
      peer.sendJson(fileBegin(1, 'data/zchunk.txt', text.length + 1));
      send(peer);
      await assertRejected(peer, code);
      assert.match(peer.error?.message ?? '', message);
      await assertUnharmed(['data/zchunk.txt']);
    });
  }

  test('a compressed chunk from a protocol-3 agent (no compression negotiated) is rejected', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token, 3);
    const welcome = peer.messages.find((m) => m.type === 'welcome');
    assert.ok(welcome?.type === 'welcome' && welcome.compression === undefined, `a protocol-3 agent was offered compression: ${JSON.stringify(welcome)}`);
    peer.sendJson(fileBegin(1, 'data/zchunk-v3.txt', text.length));
    peer.sendZchunk(1, 0, text.length, zstdOf(text));
    await assertRejected(peer, 'UNEXPECTED_MESSAGE');
    assert.match(peer.error?.message ?? '', /did not negotiate compression/);
    await assertUnharmed(['data/zchunk-v3.txt']);
  });

  test('chunks for an unknown transfer are rejected', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    peer.sendChunk(77, 0, Buffer.from('orphan data'));
    await assertRejected(peer, 'UNKNOWN_TRANSFER');
    await assertUnharmed();
  });

  test('a chunk at an offset past the end is rejected, leaving no partial file', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    peer.sendJson(fileBegin(1, 'gap.bin', 10));
    peer.sendChunk(1, 0, Buffer.from('abc'));
    peer.sendChunk(1, 100, Buffer.from('xyz'));
    await assertRejected(peer, 'BAD_OFFSET');
    await assertUnharmed(['gap.bin']);
  });

  test('a chunk running past the announced size is rejected, leaving no partial file', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    peer.sendJson(fileBegin(1, 'overflow.bin', 10));
    peer.sendChunk(1, 0, Buffer.alloc(20, 0x41));
    await assertRejected(peer, 'BAD_OFFSET');
    await assertUnharmed(['overflow.bin']);
  });

  test('more transfers in flight than the receiver allows: rejected, every staged file removed', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    const welcome = peer.messages.find((m) => m.type === 'welcome');
    assert.ok(welcome?.type === 'welcome');
    const names: string[] = [];
    for (let op = 1; op <= welcome.maxInFlight + 1; op++) {
      names.push(`data/flood-${op}.bin`);
      peer.sendJson(fileBegin(op, `data/flood-${op}.bin`, 100));
      peer.sendChunk(op, 0, Buffer.alloc(10, op));
    }
    await assertRejected(peer, 'TOO_MANY_TRANSFERS');
    await assertUnharmed(names);
  });

  test('a transfer cut off mid-file leaves no partial file', { timeout: 60_000 }, async () => {
    const peer = await RawPeer.connect(s.url);
    await peer.authenticate(s.token);
    peer.sendJson(fileBegin(1, 'data/cut-off.bin', 1_000_000));
    peer.sendChunk(1, 0, randomBytes(300_000));
    // Wait until the receiver has started staging it, then drop the connection without a close frame.
    await waitFor('the receiver to stage the transfer', async () => (await findTempFiles(s.dst)).length > 0);
    assert.ok((await peer.terminate()) !== null, 'the connection did not close');
    await waitForReceiverIdle(s.dst);
    await assertUnharmed(['data/cut-off.bin']);
  });
});
