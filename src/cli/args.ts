/**
 * Flag parsing shared by every command: node's util.parseArgs (strict), with its errors turned into
 * UsageError lines that name the flag, plus the value parsers the commands have in common.
 */
import { statSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readConfigFile, validateConfig, type FlagSpec } from '../config/file.js';
import { UsageError, describeError } from '../errors.js';
import { readInputFile } from '../inputfile.js';
import { LOG_LEVELS, createLoggerWith, type Logger, type LogFormat, type LogLevel } from '../log.js';
import { parseTime } from '../time.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  debug: { type: 'boolean' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  config: { type: 'string' },
} as const satisfies OptionSpec;

const COMMON_LINES: ReadonlyArray<readonly [string, ...string[]]> = [
  ['--config FILE', 'read flags from FILE (.json, .yaml or .yml; keys are flag names,', 'repeatable flags take lists); flags on the command line win'],
  ['--log-level LEVEL', 'debug, info (default), warn, error, silent'],
  ['--log-format FORMAT', 'json (default when stderr is not a terminal) or text'],
  ['--debug', 'print stack traces for unexpected errors'],
  ['-h, --help', 'this text'],
];

/** The help lines for COMMON_OPTIONS that every command's --help ends with, descriptions at `column`. */
export function commonHelp(column = 23): string {
  return COMMON_LINES.flatMap(([term, first, ...rest]) => [
    `  ${term}`.padEnd(column) + first,
    ...rest.map((line) => ' '.repeat(column) + line),
  ]).join('\n');
}

/** commonHelp() for the commands whose descriptions start at column 23. */
export const COMMON_HELP = commonHelp();

/**
 * The signals on which a daemon (the receiver, the live agent) stops cleanly: `systemctl stop`
 * (SIGTERM), Ctrl-C (SIGINT), and a terminal or ssh session that closes (SIGHUP), whose default
 * action ended it mid-way, leaving temporary files and a RECOVERED warning for the next start.
 */
export const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

type Repeated = Array<{ name: string; value: string }>;
/** The repeatable values of each parsed flag set, in order: the config file's, then the command line's. */
const repeatedOrder = new WeakMap<object, Repeated>();

/**
 * Parses `argv` strictly, then merges the `--config` file under it (a flag given on the command
 * line replaces that key of the file; for a repeatable flag, the whole list). With --help it
 * prints `help` and returns null: the command then exits 0.
 */
export function parseFlags<T extends OptionSpec>(command: string, argv: string[], options: T, help: string) {
  const values = parseStrict(command, argv, options);
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help + '\n');
    return null;
  }
  const all: OptionSpec = { ...COMMON_OPTIONS, ...options };
  const multiple = Object.keys(all).filter((k) => all[k]?.multiple === true);
  const fromArgv = inCommandLineOrder(argv, options, multiple);
  const file = (values as { config?: string }).config;
  if (file === undefined) {
    repeatedOrder.set(values, fromArgv);
    return values;
  }
  const fromFile = validateConfig(command, file, readConfigFile(file), all as Record<string, FlagSpec>);
  const given = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
  const merged = { ...fromFile, ...given } as typeof values;
  const fileRepeats = Object.entries(fromFile).flatMap(([name, v]) => (Array.isArray(v) && !(name in given) ? v.map((value) => ({ name, value })) : []));
  repeatedOrder.set(merged, [...fileRepeats, ...fromArgv]);
  return merged;
}

/**
 * The values of repeatable `names` of a parseFlags result, in order (the config file's first, then
 * the command line's), as rsync reads --exclude and --exclude-from: first matching rule wins.
 */
export function repeatedInOrder(flags: object, names: readonly string[]): Repeated {
  return (repeatedOrder.get(flags) ?? []).filter((r) => names.includes(r.name));
}

function parseStrict<T extends OptionSpec>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // One line: node's messages can span several (e.g. a value that looks like a flag).
    const text = describeError(err).replace(/\. To specify a positional argument.*$/s, '').replace(/\s*\n\s*/g, ' ');
    throw new UsageError('BAD_FLAG', `${command}: ${text} (see warmsync ${command} --help)`);
  }
}

/**
 * The values of repeatable `names` in command-line order, as rsync reads --exclude and
 * --exclude-from (first matching rule wins, so their interleaving matters). Call after parseFlags.
 */
export function inCommandLineOrder(argv: string[], options: OptionSpec, names: readonly string[]): Array<{ name: string; value: string }> {
  const { tokens } = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, strict: true, allowPositionals: false, tokens: true });
  return tokens.flatMap((t) => (t.kind === 'option' && names.includes(t.name) && typeof t.value === 'string' ? [{ name: t.name, value: t.value }] : []));
}

export function required(command: string, flag: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError('MISSING_FLAG', `${command}: --${flag} is required (see warmsync ${command} --help)`);
  return value;
}

export function parseLogLevel(value: string | undefined): LogLevel {
  if (value === undefined) return 'info';
  if (!LOG_LEVELS.includes(value as LogLevel)) throw new UsageError('BAD_FLAG', `--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(value)}`);
  return value as LogLevel;
}

export function parseLogFormat(value: string | undefined): LogFormat | undefined {
  if (value === undefined) return undefined;
  if (value !== 'json' && value !== 'text') throw new UsageError('BAD_FLAG', `--log-format must be json or text, not ${JSON.stringify(value)}`);
  return value;
}

/** The logger a command runs with: --log-level and --log-format, on stderr. */
export function commandLogger(flags: { 'log-level'?: string; 'log-format'?: string }): Logger {
  const format = parseLogFormat(flags['log-format']);
  const level = parseLogLevel(flags['log-level']);
  return createLoggerWith(format === undefined ? { level } : { level, format });
}

export function parseInteger(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError('BAD_FLAG', `--${flag} takes a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Binary multiples, as rsync's --bwlimit and most tools read K, M and G. */
const SIZE_SUFFIXES: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * A rate in bytes per second: a whole number, or a number with a K, M or G suffix (binary, either
 * case: 500k = 512,000; 1.5M = 1,572,864). From `min` up to 1 TiB/s; `flag` names it in the error.
 */
export function parseByteRate(flag: string, value: string, min: number): number {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(value.trim());
  const bytes = m === null ? NaN : Math.round(Number(m[1]) * (SIZE_SUFFIXES[(m[2] as string).toLowerCase()] as number));
  if (!Number.isFinite(bytes) || bytes < min || bytes > 1024 ** 4) {
    throw new UsageError('BAD_FLAG', `--${flag} takes bytes per second from ${min}, as a number with an optional K, M or G suffix (e.g. 500K, 12M), not ${JSON.stringify(value)}`);
  }
  return bytes;
}

export function parseTimeFlag(flag: string, value: string): number {
  const ms = parseTime(value);
  if (ms === null) {
    throw new UsageError('BAD_TIME', `--${flag} ${JSON.stringify(value)} is not a time: use ISO 8601 with a zone (2026-11-26T15:04:05.123Z), PostgreSQL's form (2026-11-26 15:04:05.123+00) or epoch milliseconds`);
  }
  return ms;
}

/** HOST:PORT, with IPv6 hosts in brackets ([::1]:8080); `flag` names it in the error. */
export function parseListen(value: string, flag = 'listen'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError('BAD_LISTEN', `--${flag} ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:7373, [::1]:7373; port 0 picks a free one)`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export function parseConnectUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError('BAD_URL', `--connect ${JSON.stringify(value)} is not a URL (e.g. ws://standby.example:7373)`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError('BAD_URL', `--connect must be a ws:// or wss:// URL, not ${JSON.stringify(value)}`);
  if (url.port === '') throw new UsageError('BAD_URL', `--connect ${JSON.stringify(value)} has no port`);
  return value;
}

/** The largest --token-file read: a token is a line (openssl rand -hex 32 is 65 bytes). */
export const MAX_TOKEN_FILE_BYTES = 64 * 1024;

/**
 * The shared secret: --token-file, else WARMSYNC_TOKEN. A token file readable by others draws a
 * warning: anyone who can read it can feed the standby.
 */
export function readToken(command: string, tokenFile: string | undefined, log: Logger): string {
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      // A FIFO or device is refused at once: reading one blocked start-up with no message (issue 17).
      token = readInputFile(tokenFile, MAX_TOKEN_FILE_BYTES).toString('utf8').replace(/\r?\n$/, '');
      if ((statSync(tokenFile).mode & 0o077) !== 0) log.warn('TOKEN_FILE_MODE', `${tokenFile} is readable by group or others; chmod 600 it`);
    } catch (err) {
      throw new UsageError('TOKEN_FILE', `${command}: cannot read --token-file ${tokenFile}: ${describeError(err)}`);
    }
    if (token.trim() === '') throw new UsageError('TOKEN_FILE', `${command}: --token-file ${tokenFile} is empty`);
  } else {
    token = process.env['WARMSYNC_TOKEN'];
    if (token === undefined || token === '') {
      throw new UsageError('NO_TOKEN', `${command}: no token: pass --token-file FILE or set WARMSYNC_TOKEN (the same secret on agent and receiver)`);
    }
  }
  if (token.length < 16) log.warn('WEAK_TOKEN', 'the token is shorter than 16 characters; use a long random one (openssl rand -hex 32)');
  return token;
}
