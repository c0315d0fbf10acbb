/**
 * Short, bounded descriptions of untrusted values for error messages: a peer can send a 4 MiB
 * string, and an error message must stay one readable line (and fit an `error` message).
 */

/** `s` cut to at most `max` UTF-16 units, with an ellipsis when cut. Never splits a surrogate pair. */
export function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max - 1;
  const last = s.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${s.slice(0, end)}…`;
}

/** What a decoded JSON value looks like, for "expected X, got Y". */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(clip(v, 60));
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  return typeof v;
}
