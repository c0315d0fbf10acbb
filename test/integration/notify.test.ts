// systemd's notify protocol (src/notify.ts over native/notify.c's sdNotify) against a real
// AF_UNIX datagram socket bound by a python3 child, as systemd binds its own: the exact datagrams
// for a path and for an abstract (@) socket, errors named by errno, dedup of the status line,
// watchdog pings at WATCHDOG_USEC/2 (and none for another WATCHDOG_PID), start-up extensions until
// ready, nothing after STOPPING=1, nothing at all without NOTIFY_SOCKET, and one warning for a
// socket that is not there.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { sdNotify } from '../../src/native.js';
import { STATUS_POLL_MS, systemdNotifier } from '../../src/notify.js';
import { assertPingRate, closeNotifyListeners, listenNotify } from '../helpers/notify.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warmsync-notify-'));
});
after(async () => {
  await closeNotifyListeners();
  await rm(dir, { recursive: true, force: true });
});

function logLines(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('debug', (line) => lines.push(line)), lines };
}

describe('sdNotify (native/notify.c)', () => {
  test('sends one datagram, byte for byte, to a socket path and to an abstract socket', async () => {
    const onPath = await listenNotify(dir, 'path.sock');
    const abstract = await listenNotify(null, `warmsync-test-${process.pid}`);
    sdNotify(onPath.path, 'READY=1\nSTATUS=über: 3 files');
    sdNotify(abstract.path, 'WATCHDOG=1');
    assert.equal((await onPath.waitFor(/READY/, 5_000)).text, 'READY=1\nSTATUS=über: 3 files');
    assert.equal((await abstract.waitFor(/WATCHDOG/, 5_000)).text, 'WATCHDOG=1');
    assert.deepEqual(onPath.texts(), ['READY=1\nSTATUS=über: 3 files']);
    await onPath.close();
    await abstract.close();
  });

  test('names what went wrong: no such socket, a relative or too long address, a bad argument', () => {
    const missing = join(dir, 'nobody-listens.sock');
    assert.throws(() => sdNotify(missing, 'READY=1'), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.syscall, 'sendto');
      assert.equal(err.path, missing);
      assert.match(err.message, /no such file or directory, sendto '.*nobody-listens\.sock'/);
      return true;
    });
    assert.throws(() => sdNotify('notify.sock', 'READY=1'), { code: 'EINVAL' });
    assert.throws(() => sdNotify(`/${'x'.repeat(120)}`, 'READY=1'), { code: 'ENAMETOOLONG' });
    assert.throws(() => sdNotify(`${dir}/a\0b`, 'READY=1'), { code: 'ERR_INVALID_ARG' });
  });
});

describe('systemdNotifier', () => {
  test('without NOTIFY_SOCKET: sends nothing, logs nothing, and takes the watchdog variables out of the environment', async () => {
    const { log, lines } = logLines();
    const env: NodeJS.ProcessEnv = { WATCHDOG_USEC: '20000', WATCHDOG_PID: String(process.pid), PATH: '/bin' };
    const notify = systemdNotifier(log, env);
    notify.followStatus(() => 'x');
    notify.extendStartup(30_000);
    notify.ready();
    await sleep(100);
    notify.stopping();
    assert.deepEqual(lines, []);
    assert.deepEqual(env, { PATH: '/bin' });
  });

  test('READY=1 once, STATUS= only when the line changes, no newline inside it, nothing after STOPPING=1', async () => {
    const listener = await listenNotify(dir, 'states.sock');
    const { log, lines } = logLines();
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: listener.path };
    const notify = systemdNotifier(log, env);
    assert.deepEqual(env, {}, 'NOTIFY_SOCKET is not left for children');
    let line = 'starting';
    notify.followStatus(() => line);
    notify.ready();
    notify.ready();
    await listener.waitFor(/^READY=1$/, 5_000);
    // Unchanged for two polls: not sent again.
    await sleep(STATUS_POLL_MS * 2.5);
    line = 'serving\n2 standbys';
    await listener.waitFor(/^STATUS=serving/, STATUS_POLL_MS * 3);
    notify.stopping();
    line = 'after stopping';
    await listener.waitFor(/^STOPPING=1$/, 5_000);
    await sleep(STATUS_POLL_MS * 1.5);
    assert.deepEqual(listener.texts(), ['STATUS=starting', 'READY=1', 'STATUS=serving 2 standbys', 'STOPPING=1']);
    assert.deepEqual(lines, []);
    await listener.close();
  });

  test('WATCHDOG=1 every WATCHDOG_USEC/2 for this pid; none for another WATCHDOG_PID; pings stop at STOPPING=1', async () => {
    const listener = await listenNotify(dir, 'watchdog.sock');
    const { log } = logLines();
    const started = Date.now();
    const mine = systemdNotifier(log, { NOTIFY_SOCKET: listener.path, WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid) });
    const other = systemdNotifier(log, { NOTIFY_SOCKET: listener.path, WATCHDOG_USEC: '10000', WATCHDOG_PID: String(process.pid + 1) });
    await sleep(1_500);
    mine.stopping();
    other.stopping();
    const stopped = (await listener.waitFor(/^STOPPING=1$/, 5_000)).at;
    await sleep(300);
    // 50 ms apart: the other notifier's 5 ms pings would be ten times as many.
    assertPingRate(listener.messages, 50, started, stopped);
    assert.equal(listener.messages.filter((m) => m.at > stopped && m.text === 'WATCHDOG=1').length, 0, 'pings after STOPPING=1');
    await listener.close();
  });

  test('EXTEND_TIMEOUT_USEC every third of it until ready, then no more', async () => {
    const listener = await listenNotify(dir, 'extend.sock');
    const { log } = logLines();
    const notify = systemdNotifier(log, { NOTIFY_SOCKET: listener.path });
    notify.extendStartup(300_000);
    await sleep(550);
    notify.ready();
    const ready = (await listener.waitFor(/^READY=1$/, 5_000)).at;
    await sleep(400);
    const extensions = listener.messages.filter((m) => m.text === 'EXTEND_TIMEOUT_USEC=300000');
    // At 0, ~100, ~200, ... ~500 ms: six at most, and at least three on a loaded machine.
    assert.ok(extensions.length >= 3 && extensions.length <= 6, `${extensions.length} extensions in 550 ms`);
    assert.ok(extensions.every((m) => m.at <= ready), 'an extension after READY=1');
    notify.stopping();
    await listener.close();
  });

  test('a socket nobody listens on: one warning naming it, whatever is sent after', async () => {
    const { log, lines } = logLines();
    const path = join(dir, 'gone.sock');
    const notify = systemdNotifier(log, { NOTIFY_SOCKET: path, WATCHDOG_USEC: '20000' });
    notify.followStatus(() => 'serving');
    notify.ready();
    await sleep(200);
    notify.stopping();
    const warnings = lines.filter((l) => /WARN/.test(l));
    assert.equal(warnings.length, 1, lines.join('\n'));
    assert.match(warnings[0] as string, new RegExp(`NOTIFY_FAILED: cannot send STATUS to systemd at NOTIFY_SOCKET=${path}: no such file or directory, sendto .*; going on without telling systemd`));
    assert.ok(lines.filter((l) => /DEBUG .*cannot send WATCHDOG/.test(l)).length >= 3, 'later failures are logged at debug level');
  });

  test('a WATCHDOG_USEC that is not a number: a warning, no pings', async () => {
    const listener = await listenNotify(dir, 'badusec.sock');
    const { log, lines } = logLines();
    const notify = systemdNotifier(log, { NOTIFY_SOCKET: listener.path, WATCHDOG_USEC: '30s' });
    notify.ready();
    await listener.waitFor(/^READY=1$/, 5_000);
    await sleep(200);
    notify.stopping();
    await listener.waitFor(/^STOPPING=1$/, 5_000);
    assert.deepEqual(listener.texts(), ['READY=1', 'STOPPING=1']);
    assert.match(lines.join('\n'), /NOTIFY_FAILED: WATCHDOG_USEC=30s is not a positive number of microseconds; no watchdog pings/);
    await listener.close();
  });
});
