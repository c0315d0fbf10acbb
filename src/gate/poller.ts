/**
 * The receiver's --snapshot-cmd: runs an operator-supplied command every interval (e.g. a psql
 * one-liner printing pg_last_xact_replay_timestamp()), reads its stdout as a time, and acts like
 * `warmsync snapshot`. A failing, hanging or garbage-printing command is logged and changes
 * nothing; the receiver keeps serving. Runs never overlap.
 */
import { execFile } from 'node:child_process';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatTime, parseTime } from '../time.js';
import type { GateExecutor } from './executor.js';
import type { GateTimes } from './policy.js';

export interface PollerOptions {
  readonly command: string;
  readonly intervalMs: number;
  /** A run still going after this long is killed. */
  readonly timeoutMs: number;
  readonly executor: GateExecutor;
  readonly times: GateTimes;
  readonly log: Logger;
}

export interface SnapshotPoller {
  /** Runs the command once now (also what the timer does). Resolves true when a time was applied. */
  runOnce(): Promise<boolean>;
  /** Stops the timer and waits for a run in progress (bounded by timeoutMs). */
  stop(): Promise<void>;
}

const MAX_OUTPUT_BYTES = 64 * 1024;

/** Reads a snapshot command's stdout: the first non-empty line must be a time. */
export function parseSnapshotOutput(stdout: string): number | null {
  const line = stdout.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '');
  return line === undefined ? null : parseTime(line);
}

export function startSnapshotPoller(options: PollerOptions): SnapshotPoller {
  const { log } = options;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let running: Promise<boolean> | null = null;

  const run = (): Promise<string> => new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', options.command], { timeout: options.timeoutMs, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        const why = err.killed ? `killed after ${options.timeoutMs} ms` : `exit ${String(err.code ?? err.signal)}`;
        reject(new Error(`${why}${stderr.trim() ? `: ${stderr.trim().slice(0, 300)}` : ''}`));
      } else {
        resolve(stdout);
      }
    });
  });

  const runOnce = async (): Promise<boolean> => {
    let stdout: string;
    try {
      stdout = await run();
    } catch (err) {
      log.warn('SNAPSHOT_CMD_FAILED', `snapshot command failed (${describeError(err)}); nothing applied`);
      return false;
    }
    const time = parseSnapshotOutput(stdout);
    if (time === null) {
      log.warn('SNAPSHOT_CMD_OUTPUT', `snapshot command printed ${JSON.stringify(stdout.trim().slice(0, 120))}, not a time; nothing applied`);
      return false;
    }
    try {
      const outcome = await options.executor.applySnapshot(time, options.times);
      if (!outcome.advanced) log.debug(`snapshot command gave ${formatTime(time)}, older than the recorded ${formatTime(outcome.previous)}; ignored`);
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
