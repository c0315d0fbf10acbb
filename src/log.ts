/**
 * Logging: one line per event on stderr, with a stable code where there is one (docs/errors.md).
 * stdout stays for results (`listening on ...`, summaries, --json).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(code: string, message: string): void;
  error(code: string, message: string): void;
}

export function createLogger(level: LogLevel = 'info', write: (line: string) => void = (line) => process.stderr.write(line + '\n')): Logger {
  const min = RANK[level];
  const emit = (lvl: Exclude<LogLevel, 'silent'>, message: string, code?: string): void => {
    if (RANK[lvl] < min) return;
    write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${code ? code + ': ' : ''}${message}`);
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (code, m) => emit('warn', m, code),
    error: (code, m) => emit('error', m, code),
  };
}
