/**
 * Flag parsing shared by the commands: value parsers, their errors (exit-2 UsageErrors naming the
 * flag), and the command-line order of repeatable exclude flags (rsync: first matching rule wins).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inCommandLineOrder, parseByteRate, parseConnectUrl, parseFlags, parseInteger, parseListen, parseTimeFlag } from '../../../src/cli/args.js';
import { UsageError } from '../../../src/errors.js';

function usageError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof UsageError && pattern.test(err.message));
}

describe('parseListen', () => {
  const good: ReadonlyArray<[string, string, number]> = [
    ['127.0.0.1:0', '127.0.0.1', 0],
    ['0.0.0.0:7373', '0.0.0.0', 7373],
    ['[::1]:8080', '::1', 8080],
    ['localhost:65535', 'localhost', 65535],
  ];
  for (const [text, host, port] of good) test(`${text}`, () => assert.deepEqual(parseListen(text), { host, port }));
  for (const bad of ['nope', '127.0.0.1', ':80', '127.0.0.1:99999', '127.0.0.1:-1', '::1:80', '127.0.0.1:80x']) {
    test(`rejects ${JSON.stringify(bad)}`, () => usageError(() => parseListen(bad), /--listen/));
  }
});

describe('parseConnectUrl', () => {
  test('ws and wss with a port', () => {
    assert.equal(parseConnectUrl('ws://standby:7373'), 'ws://standby:7373');
    assert.equal(parseConnectUrl('wss://[::1]:7373'), 'wss://[::1]:7373');
  });
  for (const bad of ['http://x:1', 'standby:7373', 'ws://standby', '']) {
    test(`rejects ${JSON.stringify(bad)}`, () => usageError(() => parseConnectUrl(bad), /--connect/));
  }
});

describe('parseInteger and parseTimeFlag', () => {
  test('default, value, range', () => {
    assert.equal(parseInteger('max-delete', undefined, 50, 0, 100), 50);
    assert.equal(parseInteger('max-delete', '90', 50, 0, 100), 90);
    usageError(() => parseInteger('max-delete', '101', 50, 0, 100), /--max-delete takes a whole number from 0 to 100/);
    usageError(() => parseInteger('max-delete', '5.5', 50, 0, 100), /--max-delete/);
  });
  test('times', () => {
    assert.equal(parseTimeFlag('time', '2026-11-26 15:04:05.123+00'), Date.UTC(2026, 10, 26, 15, 4, 5, 123));
    usageError(() => parseTimeFlag('time', 'yesterday'), /--time "yesterday" is not a time/);
  });
});

describe('parseByteRate', () => {
  test('bytes, or K, M, G (binary, either case)', () => {
    assert.equal(parseByteRate('bwlimit', '4000000', 1024), 4_000_000);
    assert.equal(parseByteRate('bwlimit', '500k', 1024), 512_000);
    assert.equal(parseByteRate('bwlimit', '12M', 1024), 12 * 1024 * 1024);
    assert.equal(parseByteRate('bwlimit', '1.5m', 1024), 1_572_864);
    assert.equal(parseByteRate('bwlimit', '1G', 1024), 1024 ** 3);
    assert.equal(parseByteRate('bwlimit', '1K', 1024), 1024);
  });
  for (const bad of ['', 'fast', '12Q', '12 M', '-1M', '1e6', '0', '1023', '2048G', 'M']) {
    test(`rejects ${JSON.stringify(bad)}, naming the flag and the value`, () => usageError(() => parseByteRate('bwlimit', bad, 1024), new RegExp(`^--bwlimit takes bytes per second from 1024.*not ${JSON.stringify(JSON.stringify(bad)).slice(1, -1)}$`)));
  }
});

describe('parseFlags', () => {
  test('unknown flags and missing values name the flag', () => {
    usageError(() => parseFlags('agent', ['--frobnicate'], { root: { type: 'string' } }, 'help'), /agent: .*--frobnicate/);
    usageError(() => parseFlags('agent', ['--root'], { root: { type: 'string' } }, 'help'), /agent: .*--root/);
  });
});

describe('inCommandLineOrder', () => {
  const options = { exclude: { type: 'string', multiple: true }, 'exclude-from': { type: 'string', multiple: true }, root: { type: 'string' } } as const;
  test('keeps the interleaving of --exclude and --exclude-from, both spellings', () => {
    const argv = ['--exclude', '+ keep.log', '--root', 'x', '--exclude-from=a.txt', '--exclude=*.tmp', '--exclude-from', 'b.txt'];
    assert.deepEqual(inCommandLineOrder(argv, options, ['exclude', 'exclude-from']), [
      { name: 'exclude', value: '+ keep.log' },
      { name: 'exclude-from', value: 'a.txt' },
      { name: 'exclude', value: '*.tmp' },
      { name: 'exclude-from', value: 'b.txt' },
    ]);
  });
});
