/**
 * Connection.sendChunkFrame: the agent refills one frame buffer for the next chunk as soon as the
 * call returns (sender.ts). That is only safe while ws copies a client's frame (masking it) before
 * `send` returns; these tests fail if a ws upgrade or option ever makes it keep the caller's buffer.
 * They run with the socket corked for each tick, as client.ts and server.ts make connections, and
 * without; and the frames of one tick must leave in one write.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeFrame, frameChunkInPlace } from '../../../src/protocol/codec.js';
import { CHUNK_HEADER_BYTES, MAX_CHUNK_BYTES } from '../../../src/protocol/limits.js';
import { Connection } from '../../../src/transport/connection.js';

describe('Connection.sendChunkFrame', () => {
  let wss: WebSocketServer;
  let url: string;
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 2 * MAX_CHUNK_BYTES });
    await once(wss, 'listening');
    url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  });
  const clients: WebSocket[] = [];
  after(() => {
    // Also after a failed assertion: nothing may keep the test process alive.
    for (const c of [...clients, ...wss.clients]) c.terminate();
    wss.close();
  });

  async function connectPair(): Promise<{ client: WebSocket; socket: Socket; received: Buffer[]; arrived: (n: number) => Promise<void> }> {
    const received: Buffer[] = [];
    let waiter: (() => void) | null = null;
    let wanted = 0;
    wss.once('connection', (server) => {
      server.on('message', (data: Buffer) => {
        received.push(data);
        if (waiter !== null && received.length >= wanted) waiter();
      });
    });
    const client = new WebSocket(url, { perMessageDeflate: false });
    clients.push(client);
    // As client.ts finds it: the socket of the upgrade's response.
    let socket: Socket | null = null;
    client.once('upgrade', (res: IncomingMessage) => {
      socket = res.socket;
    });
    await once(client, 'open');
    assert.ok(socket !== null);
    const arrived = (n: number): Promise<void> => new Promise((resolve) => {
      wanted = n;
      waiter = resolve;
      if (received.length >= n) resolve();
    });
    return { client, socket, received, arrived };
  }

  for (const corked of [true, false]) it(`each chunk arrives as it was when sent, though its buffer was refilled at once (also backed up; ${corked ? 'corked' : 'not corked'})`, async () => {
    const { client, socket, received, arrived } = await connectPair();
    const conn = new Connection(client, 'receiver', corked ? socket : null);
    // Sizes on both sides of ws's 126 and 65,536-byte length encodings, then enough 1 MiB frames
    // that the socket backs up and ws queues frames while the buffer is being refilled.
    const sizes = [1, 125, 126, 65_535, 65_536, ...Array.from({ length: 48 }, () => MAX_CHUNK_BYTES)];
    const frame = Buffer.allocUnsafe(CHUNK_HEADER_BYTES + MAX_CHUNK_BYTES);
    const sent: Promise<void>[] = [];
    let backedUp = false;
    sizes.forEach((size, i) => {
      frame.fill(i % 251, CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + size);
      sent.push(conn.sendChunkFrame(frameChunkInPlace(frame.subarray(0, CHUNK_HEADER_BYTES + size), 7, i)));
      backedUp ||= conn.bufferedAmount > 0;
      frame.fill(0xff); // what a deferred copy would send instead
    });
    assert.ok(backedUp, 'ws queued frames while the buffer was refilled');
    await Promise.all(sent);
    await arrived(sizes.length);
    received.forEach((data, i) => {
      const decoded = decodeFrame(data, 'agent');
      assert.ok(decoded.kind === 'chunk');
      assert.equal(decoded.offset, i);
      assert.equal(decoded.data.length, sizes[i]);
      assert.ok(decoded.data.every((b) => b === i % 251), `chunk ${i} holds the bytes it was sent with`);
    });
    conn.close();
    await conn.closed;
  });

  it('frames sent in one tick reach the socket in one write, in order', async () => {
    const { client, socket, received, arrived } = await connectPair();
    const conn = new Connection(client, 'receiver', socket);
    let writes = 0;
    for (const method of ['_write', '_writev'] as const) {
      const own = socket[method] as ((...args: unknown[]) => void) | undefined;
      assert.ok(own !== undefined, `net.Socket has ${method}`);
      const original = own.bind(socket);
      (socket as unknown as Record<string, unknown>)[method] = (...args: unknown[]): void => {
        writes++;
        original(...args);
      };
    }
    const count = 200;
    const sent: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      conn.send({ type: 'flush', id: i });
      sent.push(conn.sendChunkFrame(frameChunkInPlace(Buffer.alloc(CHUNK_HEADER_BYTES + 100, i % 251), 9, i)));
    }
    await Promise.all(sent);
    await arrived(2 * count);
    assert.equal(writes, 1, `${2 * count} frames of one tick went out in ${writes} writes`);
    received.forEach((data, i) => {
      const decoded = decodeFrame(data, 'agent');
      const n = Math.floor(i / 2);
      if (i % 2 === 0) assert.deepEqual(decoded, { kind: 'control', message: { type: 'flush', id: n } });
      else assert.ok(decoded.kind === 'chunk' && decoded.offset === n && decoded.data.every((b) => b === n % 251));
    });
    // The next tick's frames are written again (the cork was lifted).
    conn.send({ type: 'flush', id: count });
    await arrived(2 * count + 1);
    assert.equal(writes, 2);
    conn.close();
    await conn.closed;
  });

  it('refuses on a server-side connection, whose frames ws would keep unmasked', async () => {
    const { client } = await connectPair();
    const conn = new Connection(client, 'agent');
    assert.throws(() => conn.sendChunkFrame(frameChunkInPlace(Buffer.alloc(CHUNK_HEADER_BYTES + 1), 1, 0)), /only the agent/);
    conn.close();
    await conn.closed;
  });
});
