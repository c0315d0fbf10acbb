/**
 * The small vocabulary messages.ts describes every message with: a Check takes an untrusted JSON
 * value and returns null (valid) or the list of its problems, each with the location of the field.
 *
 * Written by hand, not with a schema library: loading zod (97 modules) cost every `agent --once`
 * ~130 ms of CPU before it did anything, half of what a no-op on a small tree costs without it.
 * A valid value allocates nothing here but each object's key list. Every problem reads "missing" or
 * "expected X, got Y", so that validate.ts can prefix it with the field's location, e.g.
 * `fileBegin.size: expected a non-negative safe integer, got -1`.
 */
import { clip, describeValue } from './describe.js';

/** One problem: where (keys and indexes below the message), what, and whether it is a path problem. */
export interface Issue {
  readonly path: readonly (string | number)[];
  readonly message: string;
  /** A malformed path or file name: validate.ts reports it first, as BAD_PATH. */
  readonly badPath: boolean;
}

/**
 * Validates one value: null when it is a valid T, else its problems (at least one). `T` exists
 * only for the compiler, so that a message's check and its TypeScript type cannot drift apart.
 */
export type Check<T> = ((v: unknown) => Issue[] | null) & { readonly valueType?: T };

/** "missing" for an absent field, "expected ..., got ..." otherwise. */
function expected(what: string, v: unknown): string {
  return v === undefined ? 'missing' : `expected ${what}, got ${describeValue(v)}`;
}

/** A problem of the value itself (validate.ts reports one with `badPath` as BAD_PATH). */
export function issue(message: string, badPath = false): Issue[] {
  return [{ path: [], message, badPath }];
}

/** A leaf value accepted when `test` says so, described as `what` when it is not. */
export function leaf<T>(what: string, test: (v: unknown) => boolean): Check<T> {
  return (v) => (test(v) ? null : issue(expected(what, v)));
}

/** A safe integer in min..max. */
export function intIn(what: string, min: number, max: number): Check<number> {
  return leaf(what, (v) => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max);
}

/** A string matching `pattern` (which must not carry the g or y flag: test() would keep state). */
export function matching(what: string, pattern: RegExp): Check<string> {
  return leaf(what, (v) => typeof v === 'string' && pattern.test(v));
}

/** `check`, or null. */
export function orNull<T>(check: Check<T>): Check<T | null> {
  return (v) => (v === null ? null : check(v));
}

/** `check`, or an absent key. */
export function optional<T>(check: Check<T>): Check<T | undefined> {
  return (v) => (v === undefined ? null : check(v));
}

/** A string first (described as `what` otherwise), then `problem` of it: null or why it is refused. */
export function stringWith(what: string, problem: (s: string) => Issue[] | null): Check<string> {
  return (v) => (typeof v === 'string' ? problem(v) : issue(expected(what, v)));
}

/** Each key of T and the check of its value. */
export type Shape<T> = { readonly [K in keyof T]-?: Check<T[K]> };

/**
 * An object with exactly the keys of `shape` (an unknown key is an error: a new field needs a new
 * protocol version); `what` describes it when it is not an object at all. `refine` sees the value
 * only when every field is valid, and reports problems across fields (e.g. kind against hash).
 */
export function strictObject<T>(shape: Shape<T>, what: string, refine?: (v: T) => Issue[] | null): Check<T> {
  const keys = Object.keys(shape) as (keyof T & string)[];
  const checks = keys.map((k) => shape[k] as Check<unknown>);
  for (const k of keys) if (k in Object.prototype) throw new Error(`strictObject: key ${k} shadows Object.prototype`);
  return (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return issue(expected(what, v));
    const obj = v as Record<string, unknown>;
    let issues: Issue[] | null = null;
    let present = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      // No shape key is a property of Object.prototype (checked above): a JSON value is never undefined.
      const value = obj[key];
      if (value !== undefined) present++;
      const found = (checks[i] as Check<unknown>)(value);
      if (found !== null) (issues ??= []).push(...found.map((f) => at(key, f)));
    }
    // JSON.parse makes "__proto__" an own key like any other, so it is caught here too.
    const own = Object.keys(obj);
    if (own.length !== present) {
      const unknown = own.filter((k) => !Object.hasOwn(shape, k));
      if (unknown.length > 0) (issues ??= []).push(...issue(unknownKeys(unknown)));
    }
    if (issues === null && refine) return refine(obj as T);
    return issues;
  };
}

/** An array of `min..max` items (the length is checked before any item), each passing `item`. */
export function arrayOf<T>(item: Check<T>, what: string, min: number, max: number): Check<T[]> {
  const outOfRange = `an array of ${min}..${max} ${what}`;
  return (v) => {
    if (!Array.isArray(v) || v.length < min || v.length > max) return issue(expected(outOfRange, v));
    let issues: Issue[] | null = null;
    for (let i = 0; i < v.length; i++) {
      const found = item(v[i]);
      if (found !== null) (issues ??= []).push(...found.map((f) => at(i, f)));
    }
    return issues;
  };
}

/** A problem of field `key` of an object, found by a check of the whole object. */
export function fieldIssue(key: string, message: string): Issue {
  return { path: [key], message, badPath: false };
}

/** `found` one level down, under `key`. */
function at(key: string | number, found: Issue): Issue {
  return { path: [key, ...found.path], message: found.message, badPath: found.badPath };
}

function unknownKeys(keys: readonly string[]): string {
  const shown = keys.slice(0, 3).map((k) => JSON.stringify(clip(k, 40))).join(', ');
  const rest = keys.length > 3 ? ` and ${keys.length - 3} more` : '';
  return `unknown key${keys.length === 1 ? '' : 's'} ${shown}${rest}`;
}
