/**
 * What systemd's side of the notify protocol looks like to a test: a real AF_UNIX datagram socket
 * bound by a python3 child (Node cannot bind one), which prints each datagram it receives as a
 * JSON line with its arrival time. Call `closeNotifyListeners()` from after().
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const LISTENER = `
import json, socket, sys, time
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + name[1:] if name.startswith("@") else name)
print(json.dumps({"bound": True}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({"at": time.time() * 1000, "text": data.decode("utf-8", "replace")}), flush=True)
`;

/** One datagram: its text exactly as sent, and when it arrived (epoch ms). */
export interface NotifyMessage { readonly at: number; readonly text: string }

export interface NotifyListener {
  /** The address to put in NOTIFY_SOCKET: a path, or `@name` for an abstract socket. */
  readonly path: string;
  /** Every datagram so far, in arrival order. */
  readonly messages: readonly NotifyMessage[];
  /** The texts so far. */
  texts(): string[];
  /** The first message (from index `from` on) matching `pattern`; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number, from?: number): Promise<NotifyMessage>;
  close(): Promise<void>;
}

const children = new Set<ChildProcess>();

/** Binds `dir/name` (or the abstract `@name` when `dir` is null) and collects what arrives. */
export async function listenNotify(dir: string | null, name = 'notify.sock'): Promise<NotifyListener> {
  const path = dir === null ? `@${name}` : join(dir, name);
  const child = spawn('python3', ['-c', LISTENER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const messages: NotifyMessage[] = [];
  const waiters = new Set<() => void>();
  const exited = new Promise<void>((resolve) => child.on('close', () => {
    children.delete(child);
    resolve();
  }));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the notify listener did not bind ${path} within 10 s: ${stderr}`)), 10_000);
    void exited.then(() => reject(new Error(`the notify listener exited before binding ${path}: ${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const record = JSON.parse(line) as { bound?: boolean; at?: number; text?: string };
      if (record.bound === true) {
        clearTimeout(timer);
        resolve();
        return;
      }
      messages.push({ at: record.at as number, text: record.text as string });
      for (const w of waiters) w();
    });
  });
  const waitFor = (pattern: RegExp, timeoutMs: number, from = 0): Promise<NotifyMessage> => new Promise((resolve, reject) => {
    const check = (): void => {
      const found = messages.slice(from).find((m) => pattern.test(m.text));
      if (found === undefined) return;
      waiters.delete(check);
      clearTimeout(timer);
      resolve(found);
    };
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`no notify message matching ${pattern} within ${timeoutMs} ms; got: ${JSON.stringify(messages.map((m) => m.text))}`));
    }, timeoutMs);
    waiters.add(check);
    check();
  });
  return {
    path, messages, waitFor,
    texts: () => messages.map((m) => m.text),
    close: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Stops every listener started here. */
export async function closeNotifyListeners(): Promise<void> {
  await Promise.all([...children].map((child) => new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.kill('SIGKILL');
  })));
}

/**
 * The WATCHDOG=1 pings between `from` and `to` (epoch ms) come about every `periodMs`: their count
 * is within a factor of two of what the period gives (a loaded machine delays timers, it does not
 * add pings), and no gap between two is longer than four periods.
 */
export function assertPingRate(messages: readonly NotifyMessage[], periodMs: number, from: number, to: number): void {
  const pings = messages.filter((m) => m.text === 'WATCHDOG=1' && m.at >= from && m.at <= to).map((m) => m.at);
  const expected = (to - from) / periodMs;
  assert.ok(pings.length >= expected / 2 && pings.length <= expected * 1.5 + 1,
    `${pings.length} WATCHDOG=1 pings in ${Math.round(to - from)} ms, expected about ${Math.round(expected)} (one every ${periodMs} ms)`);
  const gaps = pings.slice(1).map((at, i) => at - (pings[i] as number));
  assert.ok(Math.max(...gaps) <= periodMs * 4, `a gap of ${Math.round(Math.max(...gaps))} ms between two pings (period ${periodMs} ms)`);
}
