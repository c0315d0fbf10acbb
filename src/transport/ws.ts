/**
 * ws, loaded with require() rather than `import`: its `import` entry is an ES module wrapper over
 * CommonJS files, and Node 20's ES module loader then runs each of them through its CommonJS lexer
 * and its own resolution, ~110 ms more CPU at every start than require() (`node -e` loading only
 * ws: 0.23-0.29 s against 0.12-0.16 s, Node 20.20). That was a quarter of a no-op `agent --once`.
 */
import { createRequire } from 'node:module';
import type * as WsModule from 'ws';

const ws = createRequire(import.meta.url)('ws') as typeof WsModule;

export const WebSocket = ws.WebSocket;
export type WebSocket = WsModule.WebSocket;
export const WebSocketServer = ws.WebSocketServer;
export type { ClientOptions } from 'ws';

/**
 * Raises the largest message `socket` accepts from now on. ws takes `maxPayload` once, for every
 * connection of a server, and checks it on each frame's header before buffering the frame
 * (receiver.js, haveLength). The receiver starts every connection at a few KiB and raises the limit
 * once the peer has authenticated, through the Receiver's `_maxPayload`: not public API, so its
 * shape is checked here (and test/unit/transport/ws-limit.test.ts pins the behaviour), and a ws
 * that moved it fails loudly instead of leaving the limit low or high.
 */
export function raiseMaxPayload(socket: WsModule.WebSocket, bytes: number): void {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: unknown } | null })._receiver;
  if (receiver === null || receiver === undefined) return; // closed already: nothing more will be read
  if (typeof receiver._maxPayload !== 'number') throw new Error('ws internals changed: WebSocket._receiver._maxPayload is gone (see src/transport/ws.ts)');
  receiver._maxPayload = bytes;
}
