/**
 * systemd's notify protocol (sd_notify(3)) for the two daemons, so that a Type=notify unit knows
 * when they serve, shows their state in `systemctl status`, and restarts one that hangs:
 *
 *   READY=1                  once serving (receiver: listening, manifest open; agent: caught up)
 *   STATUS=<one line>        whenever the line changes (looked at every STATUS_POLL_MS)
 *   EXTEND_TIMEOUT_USEC=N    while a long start-up is still going (the agent's first full pass)
 *   WATCHDOG=1               every WATCHDOG_USEC/2 when the unit has WatchdogSec=
 *   STOPPING=1               on SIGTERM, SIGINT or SIGHUP
 *
 * Only when $NOTIFY_SOCKET is set (systemd sets it for Type=notify); otherwise every call does
 * nothing. A message that cannot be sent logs one warning (NOTIFY_FAILED) and the daemon goes on:
 * systemd's view of it is worth less than the replication itself. The datagram goes out through
 * the addon (native/notify.c): Node has no AF_UNIX datagram socket.
 */
import { describeError } from './errors.js';
import type { Logger } from './log.js';
import { sdNotify } from './native.js';

/** How often the status line is looked at; only a changed line is sent. */
export const STATUS_POLL_MS = 1000;

export interface ServiceNotifier {
  /** READY=1, once, right after the status line as it is now (so `systemctl status` shows the ready state at once). */
  ready(): void;
  /** Sends STATUS=<line of `read`> now and whenever it changes (looked at every STATUS_POLL_MS). */
  followStatus(read: () => string): void;
  /**
   * Until ready(): EXTEND_TIMEOUT_USEC=`usec` now and every third of it, so a start-up that takes
   * long but whose event loop is alive (the agent's first full pass of a large tree) is not
   * killed by TimeoutStartSec, while one stuck for `usec` is.
   */
  extendStartup(usec: number): void;
  /** STOPPING=1, and no more messages of any kind. */
  stopping(): void;
}

const SILENT: ServiceNotifier = { ready: () => undefined, followStatus: () => undefined, extendStartup: () => undefined, stopping: () => undefined };

/**
 * The notifier for this process, from $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID in `env`.
 * They are removed from `env` as sd_notify's unset_environment does: a child (the receiver's
 * --snapshot-cmd) must not speak for the daemon. Watchdog pings start at once.
 */
export function systemdNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env): ServiceNotifier {
  const socket = env['NOTIFY_SOCKET'] ?? '';
  const watchdogUsec = env['WATCHDOG_USEC'];
  const watchdogPid = env['WATCHDOG_PID'];
  delete env['NOTIFY_SOCKET'];
  delete env['WATCHDOG_USEC'];
  delete env['WATCHDOG_PID'];
  if (socket === '') return SILENT;

  let warned = false;
  let stopped = false;
  let isReady = false;
  let lastStatus: string | null = null;
  let lookAtStatus = (): void => undefined;
  const timers: NodeJS.Timeout[] = [];
  const send = (message: string): void => {
    if (stopped) return;
    try {
      sdNotify(socket, message);
    } catch (err) {
      const why = `cannot send ${message.split('=')[0] ?? message} to systemd at NOTIFY_SOCKET=${socket}: ${describeError(err)}`;
      if (warned) {
        log.debug(why);
      } else {
        warned = true;
        log.warn('NOTIFY_FAILED', `${why}; going on without telling systemd (further failures are logged at debug level)`);
      }
    }
  };
  /** unref'd: a timer of ours never keeps a daemon that is done from exiting. */
  const every = (ms: number, fn: () => void): NodeJS.Timeout => {
    const timer = setInterval(fn, Math.max(1, Math.floor(ms)));
    timer.unref();
    timers.push(timer);
    return timer;
  };

  const usec = watchdogUsec === undefined ? null : Number(watchdogUsec);
  if (usec !== null && (!Number.isSafeInteger(usec) || usec <= 0)) {
    log.warn('NOTIFY_FAILED', `WATCHDOG_USEC=${watchdogUsec} is not a positive number of microseconds; no watchdog pings`);
  } else if (usec !== null && (watchdogPid === undefined || watchdogPid === '' || Number(watchdogPid) === process.pid)) {
    // A plain timer on the main event loop, on purpose: the loop that runs every transfer, commit
    // and heartbeat also runs this, so a loop stuck in a busy wait or a deadlock stops the pings
    // and systemd restarts the daemon. Twice per period, as sd_watchdog_enabled(3) advises.
    every(usec / 2000, () => send('WATCHDOG=1'));
  }

  return {
    ready() {
      if (isReady) return;
      isReady = true;
      lookAtStatus();
      send('READY=1');
    },
    followStatus(read) {
      const look = (): void => {
        const line = read().replace(/\n/g, ' ');
        if (line === lastStatus) return;
        lastStatus = line;
        send(`STATUS=${line}`);
      };
      lookAtStatus = look;
      look();
      every(STATUS_POLL_MS, look);
    },
    extendStartup(extendUsec) {
      if (isReady) return;
      send(`EXTEND_TIMEOUT_USEC=${extendUsec}`);
      const timer = every(extendUsec / 3000, () => {
        if (isReady) clearInterval(timer);
        else send(`EXTEND_TIMEOUT_USEC=${extendUsec}`);
      });
    },
    stopping() {
      send('STOPPING=1');
      stopped = true;
      for (const timer of timers.splice(0)) clearInterval(timer);
    },
  };
}
