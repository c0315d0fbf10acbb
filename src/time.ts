/**
 * Times on the command line and from snapshot commands: ISO 8601, the form PostgreSQL prints
 * (`2026-11-26 15:04:05.123+00`), or integer epoch milliseconds. Everything inside is epoch ms, UTC.
 */

const PG_OR_ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** The range of a JavaScript Date: what formatTime can print. */
const MAX_EPOCH_MS = 8.64e15;

/** Parses `text` to epoch ms, or returns null when it is not a time this accepts. */
export function parseTime(text: string): number | null {
  const s = text.trim();
  if (/^\d{1,16}$/.test(s)) return Number(s) <= MAX_EPOCH_MS ? Number(s) : null;
  const m = PG_OR_ISO.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  // A time without a zone is ambiguous across hosts: refuse it rather than guess local time.
  if (zone === undefined) return null;
  const ms = frac === undefined ? 0 : Math.trunc(Number(frac.padEnd(3, '0').slice(0, 3)));
  if (Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) return null;
  const date = new Date(Date.UTC(2000, Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec), ms));
  date.setUTCFullYear(Number(y)); // Date.UTC would read years 0-99 as 1900-1999
  // Reject impossible dates that Date.UTC would roll over (e.g. Feb 30).
  if (date.getUTCDate() !== Number(d) || date.getUTCMonth() !== Number(mo) - 1) return null;
  let offsetMin = 0;
  if (zone.toUpperCase() !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const hours = Number(digits.slice(0, 2));
    const minutes = Number(digits.slice(2, 4) || '0');
    if (hours > 15 || minutes > 59) return null; // PostgreSQL's widest offsets are ±15:59
    offsetMin = sign * (hours * 60 + minutes);
  }
  const result = date.getTime() - offsetMin * 60_000;
  return Number.isNaN(result) || Math.abs(result) > MAX_EPOCH_MS ? null : result;
}

/** ISO 8601 with milliseconds, UTC: how warmsync prints every time. */
export function formatTime(ms: number | null): string {
  return ms === null ? 'never' : new Date(ms).toISOString();
}
