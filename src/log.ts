/**
 * Logging: a four-method interface. One event per line on stderr; every warning and
 * error carries its stable code (docs/errors.md) as the `code` field. stdout stays for results
 * (`listening on ...`, summaries, --json).
 *
 * Formats: `json` (one JSON object per line: what journald and log shippers want; the default when
 * stderr is not a terminal) and `text` (`TIME LEVEL CODE: message`, the default on a terminal,
 * coloured there unless NO_COLOR is set). Lines are written synchronously (no worker thread), so
 * the last lines before an exit are never lost. The lines are built here rather than by a logging
 * library: pino cost ~70 ms of CPU at every command's start-up for four fields.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'json' | 'text';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(code: string, message: string): void;
  error(code: string, message: string): void;
}

/** What a JSON log line holds, in this order. */
export interface LogRecord { level: string; time: string; code?: string; msg: string }

/** Terminal escape codes for the level label; nothing else is coloured. */
const COLOR: Record<string, string> = { debug: '\x1b[90m', info: '\x1b[36m', warn: '\x1b[33m', error: '\x1b[31m' };

/** `TIME LEVEL CODE: message`, the text format (the format warmsync always had). */
export function formatText(record: LogRecord, color: boolean): string {
  const label = record.level.toUpperCase().padEnd(5);
  const level = color ? `${COLOR[record.level] ?? ''}${label}\x1b[0m` : label;
  return `${record.time} ${level} ${record.code ? record.code + ': ' : ''}${record.msg}`;
}

/** Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org). */
export function useColor(isTTY: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  return isTTY && (env['NO_COLOR'] ?? '') === '';
}

/** The format when none is asked for: text for a person at a terminal, JSON for everything else. */
export function defaultLogFormat(isTTY: boolean = process.stderr.isTTY === true): LogFormat {
  return isTTY ? 'text' : 'json';
}

let stderrLines: ((line: string) => void) | null = null;

/**
 * While a progress bar owns the terminal, stderr log lines go through `route` (which prints them
 * above the bar) so that neither tears the other; null restores direct writes.
 */
export function routeStderrLines(route: ((line: string) => void) | null): void {
  stderrLines = route;
}

function writeStderr(line: string): void {
  if (stderrLines !== null) stderrLines(line);
  else process.stderr.write(line + '\n');
}

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Default: defaultLogFormat() for stderr; text for a custom `write`. */
  readonly format?: LogFormat;
  /** Receives each line without its newline. Default: stderr. */
  readonly write?: (line: string) => void;
  /** Colour the level in text lines. Default: only for stderr on a terminal without NO_COLOR. */
  readonly color?: boolean;
}

/** `createLogger(level)` logs to stderr; `createLogger(level, write)` hands text lines to `write` (tests). */
export function createLogger(level: LogLevel = 'info', write?: (line: string) => void): Logger {
  return write === undefined ? createLoggerWith({ level }) : createLoggerWith({ level, write });
}

export function createLoggerWith(options: LoggerOptions): Logger {
  const toStderr = options.write === undefined;
  const write = options.write ?? writeStderr;
  const format = options.format ?? (toStderr ? defaultLogFormat() : 'text');
  const color = options.color ?? (toStderr && useColor(process.stderr.isTTY === true));
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
  const emit = (level: LogLevel, code: string | undefined, msg: string): void => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const time = new Date().toISOString();
    const record: LogRecord = code === undefined ? { level, time, msg } : { level, time, code, msg };
    write(format === 'json' ? JSON.stringify(record) : formatText(record, color));
  };
  return {
    debug: (m) => emit('debug', undefined, m),
    info: (m) => emit('info', undefined, m),
    warn: (code, m) => emit('warn', code, m),
    error: (code, m) => emit('error', code, m),
  };
}

/** `log` with every message prefixed by the standby it concerns (an agent feeding several). */
export function standbyLogger(log: Logger, url: string): Logger {
  const about = (m: string): string => `standby ${url}: ${m}`;
  return {
    debug: (m) => log.debug(about(m)),
    info: (m) => log.info(about(m)),
    warn: (code, m) => log.warn(code, about(m)),
    error: (code, m) => log.error(code, about(m)),
  };
}
