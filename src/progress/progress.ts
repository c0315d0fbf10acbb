/**
 * Progress for long work (the agent's initial scan and sync, verify), in the form the output
 * allows: a bar on a terminal (cli-progress), a plain log line every few seconds otherwise (and
 * one when a phase ends), nothing with --json or --quiet. The work reports through ProgressSink;
 * it never knows which form is showing.
 */
import { createRequire } from 'node:module';
import type { SingleBar } from 'cli-progress';
import type { Logger } from '../log.js';
import { routeStderrLines } from '../log.js';
import type { FileHasher } from '../scan/hash.js';
import { renderProgress, type Counts, type ProgressState } from './render.js';

export interface ProgressSink {
  /**
   * Ends the current phase, if any, and starts counting `label`; `total` when it is known. `since`:
   * the work began earlier (it ran beside the phase before) and has done this much so far.
   */
  phase(label: string, total: Counts | null, since?: { readonly startedMs: number; readonly done: Counts }): void;
  add(files: number, bytes: number): void;
  /** Ends the current phase (safe to call twice). */
  done(): void;
}

export type ProgressMode = 'bar' | 'lines' | 'off';

export function progressMode(flags: { json?: boolean; quiet?: boolean }, stderrIsTTY: boolean = process.stderr.isTTY === true): ProgressMode {
  if (flags.json || flags.quiet) return 'off';
  return stderrIsTTY ? 'bar' : 'lines';
}

// cli-progress loads only when a bar is shown (a terminal): a run with --json, --quiet or its
// stderr in a log does not pay for it at start-up. createProgress is synchronous, hence require.
const require = createRequire(import.meta.url);
const loadBar = (): typeof SingleBar => (require('cli-progress') as typeof import('cli-progress')).SingleBar;

/** Period of the plain lines when stderr is not a terminal. */
export const LINE_INTERVAL_MS = 5000;
const BAR_WIDTH = 24;

/** A sink for `mode`, or null for 'off'. */
export function createProgress(mode: ProgressMode, log: Logger, now: () => number = Date.now, lineIntervalMs = LINE_INTERVAL_MS): ProgressSink | null {
  if (mode === 'off') return null;
  let current: { label: string; total: Counts | null; startedMs: number; done: Counts } | null = null;
  const state = (): ProgressState | null => (current === null ? null : { ...current, done: { ...current.done }, nowMs: now() });
  let bar: SingleBar | null = null;
  let timer: NodeJS.Timeout | null = null;

  const end = (): void => {
    if (current === null) return;
    if (bar !== null) {
      bar.stop();
      bar = null;
      routeStderrLines(null);
    }
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
    // A phase that found nothing to do (a scan whose hashes all came from the cache) is not news.
    if (mode === 'lines' && (current.done.files > 0 || current.done.bytes > 0)) log.info(renderProgress({ ...(state() as ProgressState), finished: true }));
    current = null;
  };

  return {
    phase(label, total, since) {
      end();
      current = { label, total, startedMs: since?.startedMs ?? now(), done: { files: since?.done.files ?? 0, bytes: since?.done.bytes ?? 0 } };
      if (mode === 'bar') {
        const Bar = loadBar();
        const b = new Bar({
          stream: process.stderr,
          format: () => renderProgress(state() as ProgressState, BAR_WIDTH),
          fps: 5,
          forceRedraw: true,
          hideCursor: false,
          linewrap: false,
        });
        b.start(1, 0);
        bar = b;
        // A log line goes above the bar: clear the bar's line, print, redraw the bar below it.
        routeStderrLines((line) => {
          // \x1b7 saves the cursor again: cli-progress restores it when the bar stops.
          process.stderr.write(`\r\x1b[2K${line}\n\x1b7`);
          b.render();
        });
      } else {
        timer = setInterval(() => log.info(renderProgress(state() as ProgressState)), lineIntervalMs);
        timer.unref();
      }
    },
    add(files, bytes) {
      if (current === null) return;
      current.done.files += files;
      current.done.bytes += bytes;
    },
    done: end,
  };
}

/** `hasher`, telling `onFile` the size of every file it hashed. */
export function countingHasher(hasher: FileHasher, onFile: (bytes: number) => void): FileHasher {
  return {
    hashFile: async (absPath, expect) => {
      const result = await hasher.hashFile(absPath, expect);
      onFile(result.size);
      return result;
    },
    hashBytes: (data) => hasher.hashBytes(data),
    createStreamHasher: () => hasher.createStreamHasher(),
  };
}
