/**
 * raiseMaxPayload (src/transport/ws.ts): the receiver starts every WebSocket at the handshake's
 * 8 KiB and raises the limit for one socket once its peer has authenticated, through ws's private
 * Receiver._maxPayload. These tests pin what that relies on: ws refuses a frame from its header
 * alone (before its payload arrives), and the raised limit applies to that socket only.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { raiseMaxPayload } from '../../../src/transport/ws.js';

const SMALL = 8 * 1024;

describe('raiseMaxPayload', () => {
  let wss: WebSocketServer;
  let port: number;
  const received: number[] = [];
  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: SMALL });
    wss.on('connection', (ws) => {
      ws.on('error', () => undefined);
      ws.on('message', (data: Buffer) => {
        received.push(data.length);
        if (data.toString() === 'raise') raiseMaxPayload(ws, 1 << 20);
      });
    });
    await once(wss, 'listening');
    port = (wss.address() as AddressInfo).port;
  });
  after(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });

  async function open(): Promise<WebSocket> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    ws.on('error', () => undefined);
    await once(ws, 'open');
    return ws;
  }

  it('refuses a frame over the limit from its header, before any of its payload is sent', async () => {
    const socket = connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
      + 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const header = Buffer.alloc(14);
    header[0] = 0x82;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(4 << 20), 2);
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    socket.write(header);
    await once(socket, 'close');
    // 0x88 0x02 0x03 0xf1: a close frame with code 1009, sent with not a byte of the payload received.
    assert.ok(got.includes('\x88\x02\x03\xf1'), `no close 1009: ${JSON.stringify(got.slice(-40))}`);
  });

  it('raises the limit of one socket only', async () => {
    const raised = await open();
    const other = await open();
    raised.send('raise');
    await new Promise((r) => setTimeout(r, 100));
    raised.send(Buffer.alloc(64 * 1024));
    other.send(Buffer.alloc(64 * 1024));
    const [code] = (await once(other, 'close')) as [number];
    assert.equal(code, 1009);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(received.includes(64 * 1024), `the raised socket's 64 KiB frame did not arrive: ${received.join(',')}`);
    assert.equal(raised.readyState, WebSocket.OPEN);
    raised.terminate();
  });
});
