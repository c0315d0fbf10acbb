/**
 * The logger: JSON lines with the code as a field (what journald and log shippers get), the text
 * form (`TIME LEVEL CODE: message`), levels, colour only on a terminal and never with NO_COLOR.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLoggerWith, defaultLogFormat, formatText, useColor, type LogRecord } from '../../src/log.js';

function capture(level: 'debug' | 'info' | 'warn' | 'silent', format: 'json' | 'text', color = false): { lines: string[]; log: ReturnType<typeof createLoggerWith> } {
  const lines: string[] = [];
  return { lines, log: createLoggerWith({ level, format, color, write: (l) => lines.push(l) }) };
}

describe('JSON lines', () => {
  test('one object per event; warnings and errors carry their code', () => {
    const { lines, log } = capture('debug', 'json');
    log.debug('d');
    log.info('listening');
    log.warn('WEAK_TOKEN', 'the token is short');
    log.error('SESSION_FAILED', 'a "quoted" reason\nover two lines');
    assert.equal(lines.length, 4);
    const records = lines.map((l) => JSON.parse(l) as LogRecord);
    assert.deepEqual(records.map((r) => [r.level, r.code, r.msg]), [
      ['debug', undefined, 'd'], ['info', undefined, 'listening'], ['warn', 'WEAK_TOKEN', 'the token is short'],
      ['error', 'SESSION_FAILED', 'a "quoted" reason\nover two lines'],
    ]);
    for (const r of records) assert.match(r.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(lines.every((l) => !l.includes('\n')), 'one line per event');
  });
  test('levels below the threshold are dropped; silent drops everything', () => {
    const warn = capture('warn', 'json');
    warn.log.info('no');
    warn.log.warn('X', 'yes');
    assert.equal(warn.lines.length, 1);
    const silent = capture('silent', 'json');
    silent.log.error('X', 'no');
    assert.deepEqual(silent.lines, []);
  });
});

describe('text lines', () => {
  test('TIME LEVEL CODE: message, without colour', () => {
    const { lines, log } = capture('info', 'text');
    log.warn('SNAPSHOT_OLDER', 'kept the recorded one');
    log.info('plain');
    assert.match(lines[0] as string, /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN {2}SNAPSHOT_OLDER: kept the recorded one$/);
    assert.match(lines[1] as string, /^\S+ INFO {2}plain$/);
  });
  test('colour marks the level only', () => {
    const line = formatText({ level: 'error', time: 'T', code: 'X', msg: 'm' }, true);
    assert.equal(line, 'T \x1b[31mERROR\x1b[0m X: m');
  });
  test('colour on a terminal unless NO_COLOR is set (to anything but the empty string)', () => {
    assert.equal(useColor(true, {}), true);
    assert.equal(useColor(true, { NO_COLOR: '1' }), false);
    assert.equal(useColor(true, { NO_COLOR: '' }), true);
    assert.equal(useColor(false, {}), false);
  });
  test('default format: text on a terminal, JSON otherwise', () => {
    assert.equal(defaultLogFormat(true), 'text');
    assert.equal(defaultLogFormat(false), 'json');
  });
});
