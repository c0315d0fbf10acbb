/**
 * Times on the command line and from snapshot commands: ISO 8601, the form PostgreSQL prints
 * (`2026-11-26 15:04:05.123+00`), or integer epoch milliseconds. Everything inside is epoch ms, UTC.
 */

const PG_OR_ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** Parses `text` to epoch ms, or returns null when it is not a time this accepts. */
export function parseTime(text: string): number | null {
  const s = text.trim();
  if (/^\d{1,16}$/.test(s)) return Number(s);
  const m = PG_OR_ISO.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  // A time without a zone is ambiguous across hosts: refuse it rather than guess local time.
  if (zone === undefined) return null;
  const ms = frac === undefined ? 0 : Math.trunc(Number(frac.padEnd(3, '0').slice(0, 3)));
  const base = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(sec), ms);
  if (Number.isNaN(base)) return null;
  // Reject impossible dates that Date.UTC would roll over (e.g. Feb 30).
  const check = new Date(base);
  if (check.getUTCDate() !== Number(d) || check.getUTCMonth() !== Number(mo) - 1 || Number(h) > 23 || Number(mi) > 59 || Number(sec) > 60) return null;
  let offsetMin = 0;
  if (zone.toUpperCase() !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || '0'));
  }
  return base - offsetMin * 60_000;
}

/** ISO 8601 with milliseconds, UTC: how warmsync prints every time. */
export function formatTime(ms: number | null): string {
  return ms === null ? 'never' : new Date(ms).toISOString();
}
