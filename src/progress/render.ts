/**
 * Progress text, pure: the same figures for the terminal bar and for the plain periodic lines
 * (files and bytes done of total, rate, ETA). No I/O, no clock: the caller passes the time.
 */

export interface Counts { files: number; bytes: number }

export interface ProgressState {
  /** What is being counted: "scanning", "sending", "verifying". */
  readonly label: string;
  readonly done: Counts;
  /** Null while the total is not known (a scan counts what it hashed so far). */
  readonly total: Counts | null;
  readonly startedMs: number;
  readonly nowMs: number;
  /** The phase is over: say so, with the time it took instead of an ETA. */
  readonly finished?: boolean;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** 0.4 s, 42 s, 3m07s, 2h05m. */
export function formatDuration(ms: number): string {
  if (ms < 9_950) return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** Share done (0..1) by bytes when there are any to do, else by files; null without a total. */
export function fractionDone(state: Pick<ProgressState, 'done' | 'total'>): number | null {
  const { done, total } = state;
  if (total === null) return null;
  const f = total.bytes > 0 ? done.bytes / total.bytes : total.files > 0 ? done.files / total.files : 1;
  return Math.min(1, Math.max(0, f));
}

/** Milliseconds left at the average rate so far; null when it cannot be told yet. */
export function etaMs(state: ProgressState): number | null {
  const fraction = fractionDone(state);
  const elapsed = state.nowMs - state.startedMs;
  if (fraction === null || fraction <= 0 || elapsed <= 0) return null;
  return (elapsed * (1 - fraction)) / fraction;
}

function bar(fraction: number, width: number): string {
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
}

/**
 * One line, e.g. `sending [#####-----]  50% 1,200/2,400 files, 1.20 GiB/2.40 GiB, 85.3 MiB/s, ETA 14 s`;
 * `barWidth` 0 leaves the bar out (the plain lines).
 */
export function renderProgress(state: ProgressState, barWidth = 0): string {
  const { done, total } = state;
  const elapsedS = Math.max(0.001, (state.nowMs - state.startedMs) / 1000);
  const rate = `${formatBytes(Math.round(done.bytes / elapsedS))}/s`;
  const files = (n: number): string => n.toLocaleString('en-US');
  const fraction = fractionDone(state);
  if (state.finished) {
    return `${state.label}: done, ${files(done.files)} files, ${formatBytes(done.bytes)} in ${formatDuration(state.nowMs - state.startedMs)} (${rate})`;
  }
  if (total === null || fraction === null) {
    return `${state.label}: ${files(done.files)} files, ${formatBytes(done.bytes)}, ${rate}, ${formatDuration(state.nowMs - state.startedMs)}`;
  }
  const eta = etaMs(state);
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  return `${state.label}${barWidth > 0 ? ' ' + bar(fraction, barWidth) : ':'} ${percent} `
    + `${files(done.files)}/${files(total.files)} files, ${formatBytes(done.bytes)}/${formatBytes(total.bytes)}, ${rate}, `
    + `ETA ${eta === null ? '?' : formatDuration(eta)}`;
}
