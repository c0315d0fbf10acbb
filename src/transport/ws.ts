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
