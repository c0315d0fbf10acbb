/**
 * A hand-driven receiver for the agent's side of the handshake: the real Connection and MACs,
 * hello with the protocols a test chooses, the agent's `auth` checked, then whatever the test's
 * script does (an older receiver's welcome, a withheld one, pages sent early).
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { agentMac, newNonce } from '../../src/protocol/handshake.js';
import type { ControlMessage } from '../../src/protocol/messages.js';
import { Connection } from '../../src/transport/connection.js';
import { WebSocketServer } from '../../src/transport/ws.js';

export type AuthMessage = Extract<ControlMessage, { type: 'auth' }>;

export interface ScriptedReceiver {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1; for each agent sends hello {protocols, a fresh nonce}, waits for a valid
 * `auth` (its MAC checked against `token`) and runs `script` with the nonce and that auth. A
 * failed check or script closes the connection.
 */
export async function startScriptedReceiver(
  token: string, protocols: number[], script: (conn: Connection, nonce: string, auth: AuthMessage) => Promise<void>,
): Promise<ScriptedReceiver> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  wss.on('connection', (ws) => {
    const conn = new Connection(ws, 'agent');
    void (async () => {
      const nonce = newNonce();
      conn.send({ type: 'hello', protocols, nonce, receiverId: 'scripted-standby' });
      const auth = await conn.nextControl(5000);
      assert.ok(auth.type === 'auth', `expected auth, got ${auth.type}`);
      assert.equal(auth.mac, agentMac(token, nonce, auth.nonce));
      await script(conn, nonce, auth);
    })().catch(() => conn.close());
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }),
  };
}
