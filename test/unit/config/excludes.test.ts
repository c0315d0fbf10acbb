/**
 * Unit tests for src/config/excludes.ts: one table per rsync --exclude-from syntax item, the
 * parse errors (each names file:line), and the file loader. Agreement with the real rsync is
 * proven separately in test/integration/excludes-rsync.test.ts.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExcludeMatcher, excludeRule, loadExcludeFiles, loadFilterSources, parseFilterText } from '../../../src/config/excludes.js';
import { UsageError } from '../../../src/errors.js';

interface MatchCase {
  readonly rules: string;
  readonly path: string;
  readonly isDir?: boolean;
  readonly excluded: boolean;
}

function matcherFor(rules: string): ExcludeMatcher {
  return new ExcludeMatcher(parseFilterText(rules, 'test.txt').rules);
}

function checkExcludes(cases: readonly MatchCase[]): void {
  for (const c of cases) {
    const actual = matcherFor(c.rules).excludes(c.path, c.isDir ?? false);
    assert.equal(actual, c.excluded, `rules ${JSON.stringify(c.rules)}, ${c.isDir ? 'dir' : 'file'} ${JSON.stringify(c.path)}`);
  }
}

test('comment and blank lines are ignored; only the first character makes a comment', () => {
  checkExcludes([
    { rules: '# logs', path: 'logs', excluded: false },
    { rules: '# logs', path: '# logs', excluded: false },
    { rules: '; logs', path: 'logs', excluded: false },
    { rules: '\n\nlogs\n\n', path: 'logs', excluded: true },
    { rules: ' # logs', path: ' # logs', excluded: true },
    { rules: 'a # b', path: 'a # b', excluded: true },
    { rules: 'a # b', path: 'a', excluded: false },
  ]);
});

test('"- " excludes, "+ " includes, anything else is an exclude pattern', () => {
  checkExcludes([
    { rules: '- logs', path: 'logs', excluded: true },
    { rules: '+ logs', path: 'logs', excluded: false },
    { rules: '+ logs\n- *', path: 'logs', excluded: false },
    { rules: '+ logs\n- *', path: 'tmp', excluded: true },
    { rules: '-logs', path: '-logs', excluded: true },
    { rules: '-logs', path: 'logs', excluded: false },
    { rules: '+logs', path: '+logs', excluded: true },
    { rules: '- - x', path: '- x', excluded: true },
    { rules: '- P foo', path: 'P foo', excluded: true },
    { rules: '- !x', path: '!x', excluded: true },
  ]);
});

test('the first matching rule wins', () => {
  checkExcludes([
    { rules: '- a\n+ a', path: 'a', excluded: true },
    { rules: '+ a\n- a', path: 'a', excluded: false },
    { rules: '+ *.keep\n- *', path: 'x/y.keep', excluded: false },
    { rules: '+ *.keep\n- *', path: 'x/y.log', excluded: true },
    { rules: '+ a/\n- a', path: 'a', isDir: false, excluded: true },
  ]);
});

test('a "!" line clears the rules before it', () => {
  checkExcludes([
    { rules: 'logs\n!\ntmp', path: 'logs', excluded: false },
    { rules: 'logs\n!\ntmp', path: 'tmp', excluded: true },
    { rules: '+ x\n!\n- x', path: 'x', excluded: true },
  ]);
});

test('a leading "/" anchors at the transfer root', () => {
  checkExcludes([
    { rules: '/tmp', path: 'tmp', excluded: true },
    { rules: '/tmp', path: 'a/tmp', excluded: false },
    { rules: '/data/tmp', path: 'data/tmp', excluded: true },
    { rules: '/data/tmp', path: 'x/data/tmp', excluded: false },
    { rules: '/', path: 'a', excluded: false },
  ]);
});

test('a trailing "/" matches directories only', () => {
  checkExcludes([
    { rules: 'tmp/', path: 'tmp', isDir: true, excluded: true },
    { rules: 'tmp/', path: 'tmp', isDir: false, excluded: false },
    { rules: 'tmp/', path: 'a/b/tmp', isDir: true, excluded: true },
    { rules: 'tmp', path: 'tmp', isDir: false, excluded: true },
    { rules: 'tmp', path: 'tmp', isDir: true, excluded: true },
    { rules: '*.d/', path: 'conf.d', isDir: true, excluded: true },
    { rules: '*.d/', path: 'conf.d', isDir: false, excluded: false },
  ]);
});

test('a pattern without "/" matches the final name at any depth', () => {
  checkExcludes([
    { rules: 'tmp', path: 'a/b/tmp', excluded: true },
    { rules: 'tmp', path: 'a/tmpx', excluded: false },
    { rules: 'tmp', path: 'xtmp', excluded: false },
    { rules: 'tmp', path: 'tmp/x', excluded: false },
  ]);
});

test('an unanchored pattern with an inner "/" matches the end of the path at a "/" boundary', () => {
  checkExcludes([
    { rules: 'data/tmp/', path: 'data/tmp', isDir: true, excluded: true },
    { rules: 'data/tmp/', path: 'x/data/tmp', isDir: true, excluded: true },
    { rules: 'data/tmp/', path: 'x/y/data/tmp', isDir: true, excluded: true },
    { rules: 'data/tmp/', path: 'xdata/tmp', isDir: true, excluded: false },
    { rules: 'data/tmp/', path: 'data/tmp/y', isDir: true, excluded: false },
    { rules: 'security/*.key', path: 'etc/security/a.key', excluded: true },
    { rules: 'security/*.key', path: 'security/sub/a.key', excluded: false },
  ]);
});

test('"*" matches within one name, including a leading dot', () => {
  checkExcludes([
    { rules: '*.lock', path: 'a.lock', excluded: true },
    { rules: '*.lock', path: 'x/y/.lock', excluded: true },
    { rules: '*.lock', path: 'a.lock/b', excluded: false },
    { rules: '.*', path: 'x/.hidden', excluded: true },
    { rules: '/a/*', path: 'a/b', excluded: true },
    { rules: '/a/*', path: 'a/b/c', excluded: false },
    { rules: 'a*c', path: 'abbc', excluded: true },
    { rules: '/a*c', path: 'a/c', excluded: false },
  ]);
});

test('"**" crosses "/" but never stands for an empty directory level', () => {
  checkExcludes([
    { rules: '/a/**', path: 'a/b/c', excluded: true },
    { rules: '/a/**', path: 'a', isDir: true, excluded: false },
    { rules: '**/c', path: 'c', excluded: true },
    { rules: '**/c', path: 'a/b/c', excluded: true },
    { rules: '**/c', path: 'a/bc', excluded: false },
    { rules: 'a/**/b', path: 'a/b', excluded: false },
    { rules: 'a/**/b', path: 'a/x/b', excluded: true },
    { rules: 'a/**/b', path: 'a/x/y/b', excluded: true },
    { rules: 'a/**/b', path: 'z/a/x/b', excluded: true },
    { rules: 'a**b', path: 'a/x/b', excluded: true },
    { rules: 'a**b', path: 'q/ab', excluded: true },
    { rules: 'a**b', path: 'qab', excluded: false },
    { rules: '**.bak', path: 'x/y.bak', excluded: true },
    { rules: '/**/sub', path: 'sub', excluded: false },
    { rules: '/**/sub', path: 'a/sub', excluded: true },
  ]);
});

test('a trailing "***" matches the directory itself and everything in it', () => {
  checkExcludes([
    { rules: 'dir/***', path: 'dir', isDir: true, excluded: true },
    { rules: 'dir/***', path: 'dir', isDir: false, excluded: false },
    { rules: 'dir/***', path: 'dir/f', excluded: true },
    { rules: 'dir/***', path: 'dir/a/b', excluded: true },
    { rules: 'dir/***', path: 'x/dir', isDir: true, excluded: true },
    { rules: '/dir/***', path: 'x/dir', isDir: true, excluded: false },
  ]);
});

test('"?" matches one byte other than "/", so one non-ASCII letter takes two', () => {
  checkExcludes([
    { rules: 'file?', path: 'file1', excluded: true },
    { rules: 'file?', path: 'file10', excluded: false },
    { rules: 'file?', path: 'file', excluded: false },
    { rules: '/a?b', path: 'a/b', excluded: false },
    { rules: 'caf?', path: 'café', excluded: false },
    { rules: 'caf??', path: 'café', excluded: true },
    { rules: 'café', path: 'x/café', excluded: true },
    { rules: '日本*', path: '日本語.txt', excluded: true },
  ]);
});

test('"[...]" classes as rsync reads them', () => {
  checkExcludes([
    { rules: '[ab]x', path: 'bx', excluded: true },
    { rules: '[ab]x', path: 'cx', excluded: false },
    { rules: '[a-c]x', path: 'bx', excluded: true },
    { rules: '[c-a]x', path: 'bx', excluded: false },
    { rules: '[!a]x', path: 'bx', excluded: true },
    { rules: '[!a]x', path: 'ax', excluded: false },
    { rules: '[^a]x', path: 'ax', excluded: false },
    { rules: '[]]x', path: ']x', excluded: true },
    { rules: '[a-]x', path: '-x', excluded: true },
    { rules: '[\\]]x', path: ']x', excluded: true },
    { rules: '[[:digit:]]x', path: '7x', excluded: true },
    { rules: '[[:upper:]]*', path: 'Readme', excluded: true },
    { rules: '[[:upper:]]*', path: 'readme', excluded: false },
    { rules: '[[:alpha:]]', path: 'é', excluded: false },
    { rules: '[é]', path: 'é', excluded: false },
    { rules: '[é][é]', path: 'é', excluded: true },
    { rules: '[[:x]', path: ':', excluded: true },
    { rules: '/a[/]b', path: 'a/b', excluded: false },
    { rules: '[!a]', path: 'x/b', excluded: true },
  ]);
});

test('patterns rsync cannot finish reading never match', () => {
  checkExcludes([
    { rules: '[abc', path: '[abc', excluded: false },
    { rules: '[abc', path: 'a', excluded: false },
    { rules: 'x[[:nope:]]', path: 'xa', excluded: false },
    { rules: 'tmp*\\', path: 'tmp\\', excluded: false },
    { rules: 'foo//', path: 'foo', isDir: true, excluded: false },
  ]);
});

test('a backslash escapes only in a pattern that has a wildcard', () => {
  checkExcludes([
    { rules: 'star\\*', path: 'star*', excluded: true },
    { rules: 'star\\*', path: 'starX', excluded: false },
    { rules: 'q\\?', path: 'q?', excluded: true },
    { rules: 'q\\?', path: 'qX', excluded: false },
    { rules: 'b\\[x]', path: 'b[x]', excluded: true },
    { rules: 'a\\b', path: 'a\\b', excluded: true },
    { rules: 'a\\b', path: 'ab', excluded: false },
    { rules: 'a\\b*', path: 'ab', excluded: true },
    { rules: 'a\\b*', path: 'a\\b', excluded: false },
    { rules: 'a\\\\b*', path: 'a\\b', excluded: true },
  ]);
});

test('leading and trailing spaces belong to the pattern', () => {
  checkExcludes([
    { rules: 'logs ', path: 'logs ', excluded: true },
    { rules: 'logs ', path: 'logs', excluded: false },
    { rules: ' logs', path: ' logs', excluded: true },
    { rules: ' logs', path: 'logs', excluded: false },
    { rules: '- logs ', path: 'logs', excluded: false },
  ]);
});

test('CR LF and a lone CR end lines, as in rsync', () => {
  checkExcludes([
    { rules: 'logs\r\ntmp\r\n', path: 'logs', excluded: true },
    { rules: 'logs\r\ntmp\r\n', path: 'tmp', excluded: true },
    { rules: 'logs\rtmp', path: 'tmp', excluded: true },
    { rules: 'logs\r\n', path: 'logs\r', excluded: false },
  ]);
});

test('hides(): an excluded directory hides everything below it, and no include brings it back', () => {
  const cases: ReadonlyArray<{ rules: string; path: string; isDir: boolean; hidden: boolean }> = [
    { rules: 'logs/', path: 'logs/a.txt', isDir: false, hidden: true },
    { rules: 'logs/', path: 'x/logs/sub/a', isDir: true, hidden: true },
    { rules: 'logs/', path: 'logs', isDir: false, hidden: false },
    { rules: 'logs/', path: 'logsx/a', isDir: false, hidden: false },
    { rules: '+ logs/keep.txt\n- logs/', path: 'logs/keep.txt', isDir: false, hidden: true },
    { rules: '- logs/\n+ logs/keep.txt', path: 'logs/keep.txt', isDir: false, hidden: true },
    { rules: 'data/tmp/', path: 'x/data/tmp/f', isDir: false, hidden: true },
    { rules: 'data/tmp/', path: 'data/tmpx/f', isDir: false, hidden: false },
    { rules: '/a/*', path: 'a/b/c', isDir: false, hidden: true },
    { rules: '/a/*', path: 'a', isDir: true, hidden: false },
    { rules: '+ */\n+ *.txt\n- *', path: 'a/b/c.txt', isDir: false, hidden: false },
    { rules: '+ */\n+ *.txt\n- *', path: 'a/b/c.log', isDir: false, hidden: true },
    { rules: '', path: 'a/b/c', isDir: false, hidden: false },
    { rules: 'café/', path: 'café/menu.txt', isDir: false, hidden: true },
  ];
  for (const c of cases) {
    assert.equal(matcherFor(c.rules).hides(c.path, c.isDir), c.hidden, `rules ${JSON.stringify(c.rules)}, path ${JSON.stringify(c.path)}`);
  }
});

test('parseFilterText keeps each pattern verbatim with its file:line origin, and says when "!" cleared rules', () => {
  assert.deepEqual(parseFilterText('a\n\n# c\n- b \n+ c\r\n/d/\re', 'rsync-excludes.txt'), {
    rules: [
      { action: 'exclude', pattern: 'a', origin: 'rsync-excludes.txt:1' },
      { action: 'exclude', pattern: 'b ', origin: 'rsync-excludes.txt:4' },
      { action: 'include', pattern: 'c', origin: 'rsync-excludes.txt:5' },
      { action: 'exclude', pattern: '/d/', origin: 'rsync-excludes.txt:6' },
      { action: 'exclude', pattern: 'e', origin: 'rsync-excludes.txt:7' },
    ],
    cleared: false,
  });
  assert.deepEqual(parseFilterText('a\n!\nb', 'f'), { rules: [{ action: 'exclude', pattern: 'b', origin: 'f:3' }], cleared: true });
});

test('plain patterns that only resemble filter rules stay patterns', () => {
  for (const line of ['.gitignore', '.cache/', '.e', '._*', '-_foo', 'P_foo', 'include_dirs', 'merge_requests', 'clear', 'P', 'Phone', '-x', '-', '--', '+x', 'exclude', 'show-me']) {
    assert.deepEqual(parseFilterText(line, 'f').rules, [{ action: 'exclude', pattern: line, origin: 'f:1' }], line);
  }
});

function assertBadExclude(run: () => unknown, where: string, fragment: string): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    assert.equal(err.code, 'BAD_EXCLUDE');
    assert.ok(err.message.startsWith(`${where}: `), `message should start with "${where}: ": ${err.message}`);
    assert.ok(err.message.includes(fragment), `message should mention ${JSON.stringify(fragment)}: ${err.message}`);
    return true;
  });
}

test('lines warmsync cannot honour are refused with file:line and the problem', () => {
  const cases: ReadonlyArray<{ text: string; line: number; fragment: string }> = [
    { text: 'logs\nP foo', line: 2, fragment: '"P foo" (protect)' },
    { text: '. other-rules', line: 1, fragment: '(merge)' },
    { text: '# merge\n: .rsync-filter', line: 2, fragment: '(dir-merge)' },
    { text: 'H secret', line: 1, fragment: '(hide)' },
    { text: 'S keep', line: 1, fragment: '(show)' },
    { text: 'R keep', line: 1, fragment: '(risk)' },
    { text: '-! */', line: 1, fragment: '"-! */" (exclude in --filter syntax)' },
    { text: '-/ /etc/passwd', line: 1, fragment: '(exclude in --filter syntax)' },
    { text: '+s keep', line: 1, fragment: '(include in --filter syntax)' },
    { text: '-,p foo', line: 1, fragment: '(exclude in --filter syntax)' },
    { text: 'exclude foo', line: 1, fragment: '(exclude)' },
    { text: 'include foo', line: 1, fragment: '(include)' },
    { text: 'dir-merge .f', line: 1, fragment: '(dir-merge)' },
    { text: 'protect,! x', line: 1, fragment: '(protect)' },
    { text: '-C', line: 1, fragment: '(CVS excludes)' },
    { text: ':C', line: 1, fragment: '(CVS excludes)' },
    { text: 'a\n\n!important.log', line: 3, fragment: 'not a negation' },
    { text: '! ', line: 1, fragment: 'not a negation' },
    { text: 'a\n- ', line: 2, fragment: 'has no pattern' },
    { text: '+ ', line: 1, fragment: 'has no pattern' },
    { text: '\uFEFFlogs', line: 1, fragment: 'byte-order mark' },
    { text: 'a\nb\0c', line: 2, fragment: 'NUL' },
    { text: `- ${'x'.repeat(4096)}`, line: 1, fragment: 'longer than 4095 bytes' },
  ];
  for (const c of cases) {
    assertBadExclude(() => parseFilterText(c.text, 'rsync-excludes.txt'), `rsync-excludes.txt:${c.line}`, c.fragment);
  }
});

test('excludeRule reads one --exclude flag as rsync does', () => {
  assert.deepEqual(excludeRule('logs/'), { action: 'exclude', pattern: 'logs/', origin: '--exclude' });
  assert.deepEqual(excludeRule('- logs'), { action: 'exclude', pattern: 'logs', origin: '--exclude' });
  assert.deepEqual(excludeRule('+ logs'), { action: 'include', pattern: 'logs', origin: '--exclude' });
  assert.deepEqual(excludeRule('#x'), { action: 'exclude', pattern: '#x', origin: '--exclude' });
  assertBadExclude(() => excludeRule(''), '--exclude', 'empty pattern');
  assertBadExclude(() => excludeRule('!'), '--exclude', 'clears the rules before it');
  assertBadExclude(() => excludeRule('- '), '--exclude', 'has no pattern');
  assertBadExclude(() => excludeRule('P foo'), '--exclude', '(protect)');
  assertBadExclude(() => excludeRule('!x'), '--exclude', 'not a negation');
});

test('ExcludeMatcher keeps its rules and refuses a rule it cannot compile', () => {
  const { rules } = parseFilterText('a\n+ b', 'f');
  const matcher = new ExcludeMatcher(rules);
  assert.deepEqual(matcher.rules, rules);
  assert.ok(Object.isFrozen(matcher.rules));
  assertBadExclude(() => new ExcludeMatcher([{ action: 'exclude', pattern: '', origin: 'state dir' }]), 'state dir', 'empty pattern');
});

const tempDirs: string[] = [];
after(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempFiles(files: Record<string, string | Uint8Array>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warmsync-excludes-unit-'));
  tempDirs.push(dir);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
  return dir;
}

test('loadExcludeFiles reads files in order, and "!" also clears rules from earlier files', async () => {
  const dir = tempFiles({ 'one.txt': 'logs/\n+ keep\n', 'two.txt': '# two\n*.lock\n', 'three.txt': 'tmp\n!\nwork/\n' });
  const one = path.join(dir, 'one.txt');
  const two = path.join(dir, 'two.txt');
  const three = path.join(dir, 'three.txt');
  assert.deepEqual(await loadExcludeFiles([one, two]), [
    { action: 'exclude', pattern: 'logs/', origin: `${one}:1` },
    { action: 'include', pattern: 'keep', origin: `${one}:2` },
    { action: 'exclude', pattern: '*.lock', origin: `${two}:2` },
  ]);
  assert.deepEqual(await loadExcludeFiles([one, three, two]), [
    { action: 'exclude', pattern: 'work/', origin: `${three}:3` },
    { action: 'exclude', pattern: '*.lock', origin: `${two}:2` },
  ]);
  assert.deepEqual(await loadExcludeFiles([]), []);
});

test('loadExcludeFiles: an unreadable file is EXCLUDE_FILE naming it and the reason', async () => {
  const dir = tempFiles({});
  const missing = path.join(dir, 'missing.txt');
  await assert.rejects(loadExcludeFiles([missing]), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(err.code, 'EXCLUDE_FILE');
    assert.equal(err.message, `cannot read excludes file ${missing}: ENOENT: no such file or directory`);
    return true;
  });
  await assert.rejects(loadExcludeFiles([dir]), { code: 'EXCLUDE_FILE', message: `cannot read excludes file ${dir}: it is a directory, not a regular file` });
  await assert.rejects(loadExcludeFiles(['-']), { code: 'EXCLUDE_FILE', message: /cannot read excludes file -: reading rules from standard input is not supported/ });
});

test('loadExcludeFiles: bytes that are not UTF-8 are BAD_EXCLUDE naming the line', async () => {
  const dir = tempFiles({
    'latin1.txt': Buffer.from([0x61, 0x0d, 0x0a, 0x62, 0x0a, 0x63, 0x61, 0x66, 0xe9, 0x0a]),
    'bom.txt': Buffer.from([0xef, 0xbb, 0xbf, 0x61, 0x0a]),
  });
  const latin1 = path.join(dir, 'latin1.txt');
  const bom = path.join(dir, 'bom.txt');
  await assert.rejects(loadExcludeFiles([latin1]), { code: 'BAD_EXCLUDE', message: `${latin1}:3: not valid UTF-8, so its patterns cannot name the UTF-8 paths warmsync sees` });
  await assert.rejects(loadExcludeFiles([bom]), { code: 'BAD_EXCLUDE', message: /:1: starts with a byte-order mark/ });
});

test('loadFilterSources: "!" in a file or as --exclude clears every rule before it, from files and flags (rsync)', async () => {
  // Issue 18's example: F1 = "*.o", F2 = "!" then "*.c": rsync keeps the .o files.
  const dir = tempFiles({ 'f1.txt': '*.o\n', 'f2.txt': '!\n*.c\n' });
  const f1 = path.join(dir, 'f1.txt');
  const f2 = path.join(dir, 'f2.txt');
  assert.deepEqual(await loadFilterSources([
    { kind: 'exclude', value: '*.tmp' }, { kind: 'exclude-from', value: f1 }, { kind: 'exclude-from', value: f2 }, { kind: 'exclude', value: '*.h' },
  ]), [
    { action: 'exclude', pattern: '*.c', origin: `${f2}:2` },
    { action: 'exclude', pattern: '*.h', origin: '--exclude' },
  ]);
  assert.deepEqual(await loadFilterSources([
    { kind: 'exclude-from', value: f1 }, { kind: 'exclude', value: '*.tmp' }, { kind: 'exclude', value: '!' }, { kind: 'exclude', value: '+ keep' },
  ]), [{ action: 'include', pattern: 'keep', origin: '--exclude' }]);
});

test('every bad line is reported at once, across files and flags, one line each', async () => {
  const dir = tempFiles({
    'a.txt': 'ok\nP foo\n- \nfine\n!x\n',
    'b.txt': Buffer.from([0x61, 0x0a, 0x63, 0x61, 0x66, 0xe9, 0x0a, 0x48, 0x20, 0x73, 0x0a]),
  });
  const a = path.join(dir, 'a.txt');
  const b = path.join(dir, 'b.txt');
  await assert.rejects(loadFilterSources([
    { kind: 'exclude-from', value: a }, { kind: 'exclude', value: '' }, { kind: 'exclude-from', value: b },
  ]), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(err.code, 'BAD_EXCLUDE');
    const lines = err.message.split('\n').map((l) => l.slice(0, l.indexOf(': ')));
    assert.deepEqual(lines, [`${a}:2`, `${a}:3`, `${a}:5`, '--exclude', `${b}:2`, `${b}:3`], err.message);
    return true;
  });
  assert.throws(() => parseFilterText('P a\nb\nH c', 'f'), { code: 'BAD_EXCLUDE', message: /^f:1: .*\nf:3: / });
});
