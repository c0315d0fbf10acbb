/**
 * --config: the schema derived from a command's flag spec (every flag a key, repeatable flags as
 * lists), errors naming the file and key (unknown keys with the nearest known one, wrong types),
 * JSON and YAML by extension, and parseFlags merging the file under the command line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseFlags, repeatedInOrder } from '../../../src/cli/args.js';
import { closest, readConfigFile, validateConfig, type FlagSpec } from '../../../src/config/file.js';
import { UsageError } from '../../../src/errors.js';

const SPEC: Record<string, FlagSpec> = {
  root: { type: 'string' }, once: { type: 'boolean' }, exclude: { type: 'string', multiple: true },
  'exclude-from': { type: 'string', multiple: true }, 'max-delete': { type: 'string' }, 'token-file': { type: 'string' },
  help: { type: 'boolean' }, config: { type: 'string' }, debug: { type: 'boolean' },
};

function badConfig(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof UsageError && err.code === 'BAD_CONFIG' && pattern.test(err.message), `expected BAD_CONFIG matching ${pattern}`);
}

const dir = mkdtempSync(join(tmpdir(), 'warmsync-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('validateConfig', () => {
  test('a good file: strings, numbers as strings, booleans, lists, a single string for a list', () => {
    assert.deepEqual(validateConfig('agent', 'a.yaml', { root: '/srv', once: true, 'max-delete': 20, exclude: ['*.tmp', 'logs/'], 'exclude-from': 'x.txt' }, SPEC), {
      root: '/srv', once: true, 'max-delete': '20', exclude: ['*.tmp', 'logs/'], 'exclude-from': ['x.txt'],
    });
  });
  test('an empty file is no flags', () => {
    assert.deepEqual(validateConfig('agent', 'a.yaml', null, SPEC), {});
  });
  const bad: ReadonlyArray<[string, unknown, RegExp]> = [
    ['unknown key, with the nearest', { exlude: ['x'] }, /^a\.yaml: unknown key "exlude" for agent; did you mean "exclude"\?/],
    ['camelCase spelling of a flag', { tokenFile: 't' }, /unknown key "tokenFile" for agent; did you mean "token-file"\?/],
    ['unknown key, nothing near', { frobnicate: 1 }, /unknown key "frobnicate" for agent \(keys are the flag names/],
    ['help is not a key', { help: true }, /^a\.yaml: "help" cannot be set in a config file; give --help on the command line$/],
    ['debug is not a key (command line only)', { debug: true }, /"debug" cannot be set in a config file/],
    ['a boolean given as a string', { once: 'yes' }, /^a\.yaml: key "once" must be true or false, not string "yes"$/],
    ['a string given as a list', { root: ['a'] }, /key "root" must be a string, not a list/],
    ['a list holding a mapping', { exclude: [{ a: 1 }] }, /key "exclude" must be a list of strings, not a list/],
    ['not a mapping', ['root'], /^a\.yaml: expected a mapping of agent flag names to values, got a list/],
  ];
  for (const [name, raw, pattern] of bad) test(name, () => badConfig(() => validateConfig('agent', 'a.yaml', raw, SPEC), pattern));
});

describe('closest', () => {
  test('typos near, strangers far', () => {
    assert.equal(closest('snapshot-comand', ['snapshot-cmd', 'snapshot-interval']), 'snapshot-cmd');
    assert.equal(closest('state_dir', ['state-dir', 'root']), 'state-dir');
    assert.equal(closest('zzz', ['root', 'once']), null);
  });
});

describe('readConfigFile', () => {
  test('JSON and YAML by extension', () => {
    assert.deepEqual(readConfigFile(file('a.json', '{"root": "/srv", "once": true}')), { root: '/srv', once: true });
    assert.deepEqual(readConfigFile(file('a.yaml', 'root: /srv\nexclude:\n  - "*.tmp"\n')), { root: '/srv', exclude: ['*.tmp'] });
    assert.deepEqual(readConfigFile(file('a.yml', '# nothing\n')), null);
  });
  test('errors name the file', () => {
    badConfig(() => readConfigFile(file('bad.json', '{"root": ')), /^--config .*bad\.json: not valid JSON: /);
    badConfig(() => readConfigFile(file('bad.yaml', 'root: [a\n')), /^--config .*bad\.yaml: not valid YAML: /);
    badConfig(() => readConfigFile(file('a.toml', 'root = 1')), /a\.toml: name it \.json, \.yaml or \.yml/);
    badConfig(() => readConfigFile(join(dir, 'missing.json')), /missing\.json: cannot read it: ENOENT/);
  });
});

describe('parseFlags with --config', () => {
  const options = { root: { type: 'string' }, once: { type: 'boolean' }, 'max-delete': { type: 'string' }, exclude: { type: 'string', multiple: true }, 'exclude-from': { type: 'string', multiple: true } } as const;
  const config = file('agent.yaml', 'root: /from-file\nmax-delete: 30\nexclude-from: [a.txt]\nexclude: ["*.tmp"]\nlog-level: warn\n');

  test('the file gives every flag, including the common ones', () => {
    const flags = parseFlags('agent', ['--config', config], options, 'help');
    assert.ok(flags !== null);
    assert.equal(flags.root, '/from-file');
    assert.equal(flags['max-delete'], '30');
    assert.equal(flags['log-level'], 'warn');
    assert.deepEqual(repeatedInOrder(flags, ['exclude', 'exclude-from']), [{ name: 'exclude-from', value: 'a.txt' }, { name: 'exclude', value: '*.tmp' }]);
  });
  test('a flag on the command line wins; a repeatable one replaces the list, after the file\'s other rules', () => {
    const flags = parseFlags('agent', ['--root', '/cli', '--config', config, '--exclude', 'x', '--exclude', 'y'], options, 'help');
    assert.ok(flags !== null);
    assert.equal(flags.root, '/cli');
    assert.equal(flags['max-delete'], '30');
    assert.deepEqual(flags.exclude, ['x', 'y']);
    assert.deepEqual(repeatedInOrder(flags, ['exclude', 'exclude-from']), [
      { name: 'exclude-from', value: 'a.txt' }, { name: 'exclude', value: 'x' }, { name: 'exclude', value: 'y' },
    ]);
  });
  test('without --config, the command line order', () => {
    const flags = parseFlags('agent', ['--exclude', 'x', '--exclude-from', 'f', '--exclude', 'y'], options, 'help');
    assert.ok(flags !== null);
    assert.deepEqual(repeatedInOrder(flags, ['exclude', 'exclude-from']).map((r) => r.value), ['x', 'f', 'y']);
  });
  test('a key of another command is refused', () => {
    badConfig(() => parseFlags('agent', ['--config', file('r.json', '{"listen": "0.0.0.0:7373"}')], options, 'help'), /unknown key "listen" for agent/);
  });
});
