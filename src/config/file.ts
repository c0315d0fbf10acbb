/**
 * `--config FILE`: a command's flags as a JSON or YAML file (by extension). The schema is derived
 * from the command's own flag spec, so every flag has a key of the same name (`token-file`,
 * `exclude-from`, ...) without a list to keep in step: string flags take a string (or a number),
 * switches a boolean, repeatable flags a list. Unknown keys are refused with the nearest known one.
 */
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import type { ZodType } from 'zod';
import { UsageError, describeError } from '../errors.js';
import { readInputFile } from '../inputfile.js';

// yaml and zod load only when a command is given --config: importing them took 135 and 92 ms here
// (a busy 2-core machine), more than `status` spends on its work. parseFlags is synchronous, hence
// require rather than import().
const require = createRequire(import.meta.url);
const lazy = {
  yaml: () => require('yaml') as typeof import('yaml'),
  zod: () => (require('zod') as typeof import('zod')).z,
};

/** The shape of a util.parseArgs option, as far as a config file cares. */
export interface FlagSpec { readonly type: 'string' | 'boolean'; readonly multiple?: boolean }

export type ConfigValues = Record<string, string | boolean | string[]>;

/** Flags that make no sense in a file (--debug acts before any file is read: stack traces of its errors). */
const NOT_IN_FILE = new Set(['help', 'config', 'debug']);

function schemaFor(spec: FlagSpec): ZodType<string | boolean | string[]> {
  const z = lazy.zod();
  const text = z.union([z.string(), z.number()]).transform(String);
  if (spec.type === 'boolean') return z.boolean();
  if (spec.multiple) return z.union([z.array(text), text.transform((v) => [v])]);
  return text;
}

function expectation(spec: FlagSpec): string {
  if (spec.type === 'boolean') return 'true or false';
  return spec.multiple ? 'a list of strings' : 'a string';
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/**
 * The largest config file read (1 MiB; a full one is a few KiB). Checked before reading: a 29 MB
 * YAML file took 2.1 GB of memory to parse before it was refused (issue 17).
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Reads and parses FILE: `.json`, or `.yaml`/`.yml`. */
export function readConfigFile(file: string): unknown {
  const ext = extname(file).toLowerCase();
  if (ext !== '.json' && ext !== '.yaml' && ext !== '.yml') {
    throw new UsageError('BAD_CONFIG', `--config ${file}: name it .json, .yaml or .yml (the extension picks the parser)`);
  }
  let source: string;
  try {
    source = readInputFile(file, MAX_CONFIG_BYTES).toString('utf8');
  } catch (err) {
    throw new UsageError('BAD_CONFIG', `--config ${file}: cannot read it: ${describeError(err)}`);
  }
  try {
    return ext === '.json' ? JSON.parse(source) as unknown : lazy.yaml().parse(source, { prettyErrors: true }) as unknown;
  } catch (err) {
    const first = (describeError(err).split('\n')[0] ?? '').replace(/:$/, '');
    throw new UsageError('BAD_CONFIG', `--config ${file}: not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${first}`);
  }
}

/**
 * Checks `raw` (a parsed config file) against `flags`, a command's flag spec, and returns the
 * values as util.parseArgs would have produced them. Throws BAD_CONFIG naming the file and key.
 */
export function validateConfig(command: string, file: string, raw: unknown, flags: Readonly<Record<string, FlagSpec>>): ConfigValues {
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UsageError('BAD_CONFIG', `${file}: expected a mapping of ${command} flag names to values, got ${describeValue(raw)}`);
  }
  const keys = Object.keys(flags).filter((k) => !NOT_IN_FILE.has(k));
  for (const key of Object.keys(raw)) {
    if (keys.includes(key)) continue;
    if (NOT_IN_FILE.has(key)) throw new UsageError('BAD_CONFIG', `${file}: "${key}" cannot be set in a config file; give --${key} on the command line`);
    const near = closest(key, keys);
    throw new UsageError('BAD_CONFIG', `${file}: unknown key "${key}" for ${command}${near === null ? '' : `; did you mean "${near}"?`} (keys are the flag names of warmsync ${command} --help)`);
  }
  const shape = Object.fromEntries(keys.map((k) => [k, schemaFor(flags[k] as FlagSpec).optional()]));
  const result = lazy.zod().object(shape).safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? '');
    const value = (raw as Record<string, unknown>)[key];
    throw new UsageError('BAD_CONFIG', `${file}: key "${key}" must be ${expectation(flags[key] as FlagSpec)}, not ${describeValue(value)}`);
  }
  // In the file's order: exclude and exclude-from rules apply in the order they are written.
  const data = result.data as Record<string, string | boolean | string[] | undefined>;
  const values: ConfigValues = {};
  for (const k of Object.keys(raw)) if (data[k] !== undefined) values[k] = data[k];
  return values;
}

/** The candidate nearest to `name` by edit distance, if it is near enough to be a likely typo. */
export function closest(name: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min((row[j] as number) + 1, (next[j - 1] as number) + 1, (row[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length] as number;
}
