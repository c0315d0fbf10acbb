/**
 * The receiver's pre-authentication bookkeeping, without sockets: which unauthenticated socket
 * makes room for a newcomer (Admission), how long a failing source waits (AuthBackoff), and how
 * many lines rejected connections cost (RejectLog).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Logger } from '../../../src/log.js';
import { Admission } from '../../../src/transport/admission.js';
import { AuthBackoff } from '../../../src/transport/backoff.js';
import { AUTH_BACKOFF_BASE_MS, AUTH_BACKOFF_MAX_MS, AUTH_FAILURE_MEMORY_MS, AUTH_FREE_FAILURES } from '../../../src/transport/limits.js';
import { RejectLog } from '../../../src/transport/ratelog.js';

let nextPort = 1;
class FakeSocket extends EventEmitter {
  destroyed = false;
  readonly remotePort = nextPort++;
  constructor(readonly remoteAddress: string) {
    super();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}
const sock = (ip: string): FakeSocket & Socket => new FakeSocket(ip) as FakeSocket & Socket;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Admission', () => {
  it('closes the oldest socket of the busiest source, once the waiting I/O is handled', async () => {
    const dropped: string[] = [];
    const a = new Admission((source, why) => dropped.push(`${source} ${why}`), 4, 60_000);
    const agent = sock('10.0.0.9');
    const flood = [sock('10.0.0.1'), sock('10.0.0.1')];
    a.accepted(flood[0]!);
    a.accepted(agent);
    a.accepted(flood[1]!);
    const more = [sock('10.0.0.1'), sock('10.0.0.1')];
    for (const s of more) a.accepted(s);
    assert.equal(a.size, 5, 'not at accept');
    await tick();
    assert.equal(a.size, 4);
    assert.equal(flood[0]!.destroyed, true);
    assert.equal(agent.destroyed, false, 'the lone source was evicted before the flood');
    assert.deepEqual(dropped, ['10.0.0.1 EVICTED']);
    a.closeAll();
  });

  it('closes sockets that sent a whole request last, and never an admitted one', async () => {
    const a = new Admission(() => undefined, 2, 60_000);
    const ws = sock('10.0.0.1');
    const admitted = sock('10.0.0.1');
    a.accepted(admitted);
    a.admit(admitted);
    a.accepted(ws);
    a.progressed(ws);
    const slow = [sock('10.0.0.1'), sock('10.0.0.1')];
    for (const s of slow) a.accepted(s);
    await tick();
    assert.equal(ws.destroyed, false, 'a WebSocket waiting for auth went before a slow header');
    assert.equal(admitted.destroyed, false);
    assert.deepEqual(slow.map((s) => s.destroyed), [true, false]);
    a.closeAll();
  });

  it('closes a socket that has not authenticated by the deadline', async () => {
    const dropped: string[] = [];
    const a = new Admission((source, why) => dropped.push(why), 10, 30);
    const s = sock('10.0.0.1');
    const ok = sock('10.0.0.1');
    a.accepted(s);
    a.accepted(ok);
    a.admit(ok);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(s.destroyed, true);
    assert.equal(ok.destroyed, false);
    assert.deepEqual(dropped, ['PREAUTH_TIMEOUT']);
    assert.equal(a.size, 0);
  });
});

describe('AuthBackoff', () => {
  it('lets the free failures through, then doubles the wait up to the maximum', () => {
    let now = 1_000_000;
    const b = new AuthBackoff(() => now);
    const waits: number[] = [];
    for (let i = 0; i < AUTH_FREE_FAILURES + 10; i++) waits.push(b.failed('10.0.0.1'));
    assert.deepEqual(waits.slice(0, AUTH_FREE_FAILURES), Array(AUTH_FREE_FAILURES).fill(0));
    assert.equal(waits[AUTH_FREE_FAILURES], AUTH_BACKOFF_BASE_MS);
    assert.equal(waits[AUTH_FREE_FAILURES + 1], 2 * AUTH_BACKOFF_BASE_MS);
    assert.equal(waits.at(-1), AUTH_BACKOFF_MAX_MS);
    assert.equal(b.waitFor('10.0.0.1'), AUTH_BACKOFF_MAX_MS);
    assert.equal(b.waitFor('10.0.0.2'), 0, 'another source waits');
    now += AUTH_BACKOFF_MAX_MS;
    assert.equal(b.waitFor('10.0.0.1'), 0);
    assert.equal(b.waitFor('10.0.0.1'), AUTH_BACKOFF_MAX_MS, 'a second attempt in parallel got through');
    now += AUTH_FAILURE_MEMORY_MS + 1;
    assert.equal(b.failed('10.0.0.1'), 0, 'forgotten after a quiet while');
  });

  it('forgets a source that authenticated', () => {
    const b = new AuthBackoff(() => 0);
    for (let i = 0; i < AUTH_FREE_FAILURES + 2; i++) b.failed('h');
    assert.ok(b.waitFor('h') > 0);
    b.succeeded('h');
    assert.equal(b.waitFor('h'), 0);
  });
});

describe('RejectLog', () => {
  it('logs the first lines of an interval, then one summary', () => {
    const lines: string[] = [];
    const log: Logger = { debug: () => undefined, info: () => undefined, warn: (code, msg) => lines.push(`${code} ${msg}`), error: () => undefined };
    const r = new RejectLog(log, 60_000, 3);
    for (let i = 0; i < 1000; i++) r.note('AUTH_FAILED', `10.0.0.${i % 7}`, `attempt ${i}`);
    assert.equal(lines.length, 3);
    r.flush();
    assert.equal(lines.length, 4);
    assert.match(lines[3]!, /^REJECTED_CONNECTIONS 997 more connection\(s\) rejected .*AUTH_FAILED 997.* 7 source/);
    r.flush();
    assert.equal(lines.length, 4, 'nothing to sum up: no line');
  });
});
