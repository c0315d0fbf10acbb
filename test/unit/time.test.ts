/**
 * time: the forms parseTime accepts (ISO 8601 with a zone, PostgreSQL's output, epoch ms), the
 * ones it refuses (no zone, impossible dates, garbage), and how formatTime prints a time.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatTime, parseTime } from '../../src/time.js';

/** 2026-11-26T15:04:05.000Z, the reference instant of most cases. */
const T = Date.UTC(2026, 10, 26, 15, 4, 5);

describe('parseTime: accepted forms', () => {
  const cases: ReadonlyArray<[string, string, number]> = [
    ['ISO 8601, Z', '2026-11-26T15:04:05Z', T],
    ['ISO 8601, lowercase t and z', '2026-11-26t15:04:05z', T],
    ['ISO 8601, milliseconds, Z', '2026-11-26T15:04:05.123Z', T + 123],
    ['ISO 8601, +02:00', '2026-11-26T17:04:05+02:00', T],
    ['ISO 8601, -08:00', '2026-11-26T07:04:05-08:00', T],
    ['ISO 8601, +0200 (no colon)', '2026-11-26T17:04:05+0200', T],
    ['ISO 8601, +00:00', '2026-11-26T15:04:05+00:00', T],
    ['PostgreSQL, +00', '2026-11-26 15:04:05.123+00', T + 123],
    ['PostgreSQL, +05:30', '2026-11-26 20:34:05.123+05:30', T + 123],
    ['PostgreSQL, -03:30', '2026-11-26 11:34:05-03:30', T],
    ['PostgreSQL, +02 (hours only)', '2026-11-26 17:04:05+02', T],
    ['space before the zone', '2026-11-26 15:04:05.5 Z', T + 500],
    ['comma as decimal separator', '2026-11-26T15:04:05,25Z', T + 250],
    ['offset crossing midnight', '2026-11-27T01:04:05+10:00', T],
    ['offset crossing a year', '2027-01-01T01:00:00+02:00', Date.UTC(2026, 11, 31, 23)],
    ['leap day in a leap year', '2028-02-29T00:00:00Z', Date.UTC(2028, 1, 29)],
    ['surrounding whitespace', '  2026-11-26T15:04:05Z\n', T],
    ['epoch ms: 0', '0', 0],
    ['epoch ms', '1764177919231', 1_764_177_919_231],
    ['epoch ms with whitespace', ' 1764177919231 ', 1_764_177_919_231],
  ];
  for (const [name, text, ms] of cases) {
    test(`${name}: ${JSON.stringify(text)}`, () => {
      assert.equal(parseTime(text), ms);
    });
  }
});

describe('parseTime: 1 to 9 fractional digits, truncated (never rounded) to milliseconds', () => {
  const cases: ReadonlyArray<[string, number]> = [
    ['9', 900],
    ['99', 990],
    ['999', 999],
    ['9999', 999],
    ['99999', 999],
    ['999999', 999],
    ['9999999', 999],
    ['99999999', 999],
    ['999999999', 999],
    ['1', 100],
    ['12', 120],
    ['123', 123],
    ['000000001', 0],
    ['123456789', 123],
  ];
  for (const [frac, ms] of cases) {
    test(`.${frac} -> ${ms} ms`, () => {
      assert.equal(parseTime(`2026-11-26T15:04:05.${frac}Z`), T + ms);
      assert.equal(parseTime(`2026-11-26 15:04:05.${frac}+00`), T + ms);
    });
  }
});

describe('parseTime: refused', () => {
  const cases: ReadonlyArray<[string, string]> = [
    ['empty', ''],
    ['only whitespace', '   '],
    ['no zone (ISO)', '2026-11-26T15:04:05'],
    ['no zone (PostgreSQL)', '2026-11-26 15:04:05.123'],
    ['garbage', 'yesterday'],
    ['now', 'now'],
    ['date only', '2026-11-26'],
    ['no seconds', '2026-11-26T15:04Z'],
    ['Feb 30', '2026-02-30T00:00:00Z'],
    ['Feb 29 in a common year', '2026-02-29T00:00:00Z'],
    ['Apr 31', '2026-04-31T12:00:00Z'],
    ['day 0', '2026-11-00T00:00:00Z'],
    ['month 0', '2026-00-10T00:00:00Z'],
    ['month 13', '2026-13-01T00:00:00Z'],
    ['hour 24', '2026-11-26T24:00:00Z'],
    ['hour 24 at month end', '2026-11-30T24:00:00Z'],
    ['minute 60', '2026-11-26T15:60:00Z'],
    ['10 fractional digits', '2026-11-26T15:04:05.1234567890Z'],
    ['dot without digits', '2026-11-26T15:04:05.Z'],
    ['zone with one-digit minutes', '2026-11-26T15:04:05+05:3'],
    ['named zone', '2026-11-26 15:04:05 UTC'],
    ['two-digit year', '26-11-26T15:04:05Z'],
    ['slash date', '2026/11/26T15:04:05Z'],
    ['negative epoch ms', '-1'],
    ['fractional epoch ms', '1764177919231.5'],
    ['epoch ms with a unit', '1764177919231ms'],
    ['17-digit epoch ms', '12345678901234567'],
  ];
  for (const [name, text] of cases) {
    test(`${name}: ${JSON.stringify(text)}`, () => {
      assert.equal(parseTime(text), null);
    });
  }
});

// Out-of-range input: times a Date cannot hold, impossible offsets, and years 0-99 (Date.UTC's trap).
test('parseTime refuses out-of-range input and reads years 0000-0099 literally', () => {
  const cases: ReadonlyArray<[string, number | null]> = [
    // Beyond the Date range (±8.64e15 ms) and beyond 2^53: returns 10000000000000000, which formatTime
    // then refuses with RangeError "Invalid time value" instead of printing it.
    ['9999999999999999', null],
    ['8640000000000001', null],
    // Offsets with hours above 23 or minutes above 59 are accepted as written (+99:99 = 100 h 39 min).
    ['2026-11-26T10:00:00+99:99', null],
    ['2026-11-26T10:00:00+05:75', null],
    // Date.UTC maps years 0..99 to 1900..1999: year 0050 comes back as 1950.
    ['0050-01-01T00:00:00Z', Date.parse('0050-01-01T00:00:00Z')],
  ];
  const actual = cases.map(([text]) => [text, parseTime(text)]);
  assert.deepEqual(actual, cases);
});

describe('formatTime', () => {
  const cases: ReadonlyArray<[number | null, string]> = [
    [null, 'never'],
    [0, '1970-01-01T00:00:00.000Z'],
    [T + 123, '2026-11-26T15:04:05.123Z'],
    [1_764_177_919_231, '2025-11-26T17:25:19.231Z'],
  ];
  for (const [ms, text] of cases) {
    test(`${ms} -> ${text}`, () => {
      assert.equal(formatTime(ms), text);
    });
  }

  test('round trip: parseTime(formatTime(ms)) === ms', () => {
    for (const ms of [0, 1, 999, T, T + 123, 1_764_177_919_231, Date.UTC(2099, 11, 31, 23, 59, 59, 999)]) {
      assert.equal(parseTime(formatTime(ms)), ms);
    }
  });
});
