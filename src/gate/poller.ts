/**
 * The receiver's snapshot poller: every interval it asks a snapshot source for the standby DB's
 * snapshot time and acts like `warmsync snapshot`. Two sources: --snapshot-cmd (an operator command
 * printing a time, e.g. a psql one-liner; here) and --snapshot-source postgres://... (pgsource.ts).
 * A source that fails, hangs or gives garbage, or gives a T later than this host's clock plus skew,
 * is logged with a code and changes nothing; the receiver keeps serving. Runs never overlap.
 */
import { spawn } from 'node:child_process';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatTime, parseTime } from '../time.js';
import type { GateExecutor } from './executor.js';
import { postgresSource } from './pgsource.js';
import { futureSnapshotProblem, snapshotAheadBy, type GateTimes } from './policy.js';

/** A time to apply, or why there is none (a stable code and one line for the log). */
export type SnapshotReading = { readonly time: number } | { readonly code: string; readonly problem: string };

export interface SnapshotSource {
  /** Never rejects: failures come back as a reading with a code. Bounded by the source's timeout. */
  read(): Promise<SnapshotReading>;
}

/** What the receiver's flags chose. */
export type SnapshotSourceSpec = { readonly command: string } | { readonly postgresUrl: string };

export function openSnapshotSource(spec: SnapshotSourceSpec, timeoutMs: number, log: Logger): SnapshotSource {
  return 'command' in spec ? commandSource(spec.command, timeoutMs) : postgresSource(spec.postgresUrl, timeoutMs, log);
}

export interface PollerOptions {
  readonly source: SnapshotSource;
  readonly intervalMs: number;
  readonly executor: GateExecutor;
  readonly times: GateTimes;
  readonly log: Logger;
  /** This host's clock (tests inject one): a T later than now + skew is refused. */
  readonly now?: () => number;
}

export interface SnapshotPoller {
  /** Reads the source once now (also what the timer does). Resolves true when a time was applied. */
  runOnce(): Promise<boolean>;
  /** Stops the timer and waits for a run in progress (bounded by the source's timeout). */
  stop(): Promise<void>;
}

const MAX_OUTPUT_BYTES = 64 * 1024;

/** Reads a snapshot command's stdout: the first non-empty line must be a time. */
export function parseSnapshotOutput(stdout: string): number | null {
  const line = stdout.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '');
  return line === undefined ? null : parseTime(line);
}

/** --snapshot-cmd: runs `command` with /bin/sh; a run still going after timeoutMs is killed. */
export function commandSource(command: string, timeoutMs: number): SnapshotSource {
  // The command runs in its own process group, and a run that overstays is killed as a whole group:
  // /bin/sh does not always exec its last command, and killing only the shell would leave a hung
  // psql behind on every interval.
  const run = (): Promise<string> => new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let killed: string | null = null;
    const kill = (why: string): void => {
      killed ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is already gone
      }
      // Whatever escaped the group must not keep this run open through our pipes.
      child.stdout.destroy();
      child.stderr.destroy();
    };
    const timer = setTimeout(() => kill(`killed after ${timeoutMs} ms`), timeoutMs);
    const collect = (into: 'out' | 'err') => (data: Buffer): void => {
      bytes += data.byteLength;
      if (bytes > MAX_OUTPUT_BYTES) return kill(`killed: printed more than ${MAX_OUTPUT_BYTES} bytes`);
      (into === 'out' ? out : err).push(data);
    };
    child.stdout.on('data', collect('out'));
    child.stderr.on('data', collect('err'));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8').trim();
      const detail = stderr ? `: ${stderr.slice(0, 300)}` : '';
      if (killed !== null) reject(new Error(`${killed}${detail}`));
      else if (code !== 0) reject(new Error(`exit ${String(code ?? signal)}${detail}`));
      else resolve(Buffer.concat(out).toString('utf8'));
    });
  });

  return {
    read: async () => {
      let stdout: string;
      try {
        stdout = await run();
      } catch (err) {
        return { code: 'SNAPSHOT_CMD_FAILED', problem: `snapshot command failed (${describeError(err)})` };
      }
      const time = parseSnapshotOutput(stdout);
      if (time === null) return { code: 'SNAPSHOT_CMD_OUTPUT', problem: `snapshot command printed ${JSON.stringify(stdout.trim().slice(0, 120))}, not a time` };
      return { time };
    },
  };
}

export function startSnapshotPoller(options: PollerOptions): SnapshotPoller {
  const { log } = options;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let running: Promise<boolean> | null = null;

  const runOnce = async (): Promise<boolean> => {
    const reading = await options.source.read();
    if (!('time' in reading)) {
      log.warn(reading.code, `${reading.problem}; nothing applied`);
      return false;
    }
    const { time } = reading;
    const now = (options.now ?? Date.now)();
    const ahead = snapshotAheadBy(time, now, options.times.skewMs);
    if (ahead !== null) {
      // Recording it would apply every tombstone at once and hide every later true T.
      log.warn('SNAPSHOT_FUTURE', `snapshot source gave ${futureSnapshotProblem(time, now, ahead)}; not recorded, nothing applied`);
      return false;
    }
    try {
      const outcome = await options.executor.applySnapshot(time, options.times);
      if (!outcome.advanced) log.debug(`snapshot source gave ${formatTime(time)}, older than the recorded ${formatTime(outcome.previous)}; ignored`);
      if (outcome.removed.length > 0 || outcome.held.length > 0) {
        log.info(`snapshot ${formatTime(outcome.snapshotTime)}: removed ${outcome.removed.length}, ${outcome.pending} tombstone(s) still held`);
      }
      return outcome.advanced;
    } catch (err) {
      log.error('SNAPSHOT_FAILED', `applying snapshot ${formatTime(time)} failed: ${describeError(err)}`);
      return false;
    }
  };

  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce();
      void running.finally(() => {
        running = null;
        schedule();
      });
    }, options.intervalMs);
  };
  schedule();

  return {
    runOnce: () => running ?? runOnce(),
    stop: async () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      await running;
    },
  };
}
