/**
 * Differential proof for src/config/excludes.ts: for each excludes file, the paths the real
 * `rsync -a --exclude-from=F src/ dst/` copies must be exactly the paths kept by the matcher the
 * agent builds from the same file F (loadExcludeFiles, as `--exclude-from F` does) when a walker
 * prunes excluded directories with excludes(), and hides() must agree for every source path.
 * A table of hand-written rule sets comes first, then seeded generated patterns that probe the
 * wildcard translation against rsync's own wildmatch.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ExcludeMatcher, loadExcludeFiles, loadFilterSources, type FilterSource } from '../../src/config/excludes.js';
import { UsageError } from '../../src/errors.js';

const execFileAsync = promisify(execFile);

const rsyncProbe = spawnSync('rsync', ['--version'], { encoding: 'utf8' });
const rsyncMissing = rsyncProbe.error !== undefined || rsyncProbe.status !== 0;

function requireRsync(): void {
  assert.ok(!rsyncMissing, 'rsync is not installed, and this test compares warmsync with the real rsync: apt-get install rsync');
}

/**
 * The source tree: "name/" is a directory, "name -> target" a symlink, anything else an empty file.
 * Names that look like patterns, same names as files and directories, several depths of the same
 * name, non-ASCII names (rsync's "?" matches one byte), and names with spaces, backslash, newline.
 */
const TREE: readonly string[] = [
  'logs/', 'logs/app.log', 'logs/keep.txt', 'logs/sub/', 'logs/sub/deep.log',
  'data/', 'data/logs/', 'data/logs/req.log', 'data/tmp/', 'data/tmp/upload.bin', 'data/tmp.txt',
  'data/filestore/', 'data/filestore/_pre/', 'data/filestore/_pre/ab12', 'data/filestore/ab/',
  'data/filestore/ab/ab12cd', 'data/filestore/ab/_pre', 'data/db.lock', 'data/cache/', 'data/cache/c1',
  'x/', 'x/logs', 'x/data/', 'x/data/tmp/', 'x/data/tmp/deep.bin', 'x/data/filestore/', 'x/data/filestore/_pre/',
  'x/data/filestore/_pre/zz', 'x/y/', 'x/y/logs/', 'x/y/logs/old.log', 'x/y/z/', 'x/y/z/cache/', 'x/y/z/cache/c2',
  'x/empty/', 'x/dir3', 'x/etc/', 'x/etc/security/', 'x/etc/security/other.key',
  'backup/', 'backup/db.tar', 'backup/logs/', 'work/', 'work/job.lock', 'work/tmp/',
  'app.lock', 'd.lock/', 'd.lock/inner', 'tmp', 'empty/', 'cache', 'cache.bak', 'a.bak',
  'etc/', 'etc/security/', 'etc/security/master.key', 'etc/security/keep.key', 'etc/security/readme.txt',
  'etc/security/sub/', 'etc/security/sub/deep.key', 'etc/app.key',
  'with space/', 'with space/file name.txt', 'trailing space ', ' leading space', 'two  spaces',
  'café/', 'café/menu.txt', 'café/._menu.txt', 'cafe', 'naïve.txt', '日本語.txt', 'Ünïcödé/', 'Ünïcödé/x',
  '-dash', '--double', '-', '.hidden/', '.hidden/x', '.git/', '.git/config', '..dots', '.env',
  'star*name', 'starXname', 'q?mark', 'qXmark', 'br[ack]et', 'brket', 'bracket', 'back\\slash', 'backslash',
  'new\nline', '!bang', 'P foo', '#hash', ';semi',
  'a/', 'a/b/', 'a/b/c', 'a/b.txt', 'a/x/', 'a/x/y/', 'a/x/y/b', 'a/x/b', 'ab', 'aXb/', 'aXb/f',
  'dir3/', 'dir3/f', 'dir3/sub/', 'dir3/sub/g',
  'File9', 'file1', 'file10', 'UPPER/', 'UPPER/lower', 'v1.2.3', 'A-Z', ']x', 'x]',
  'link-file -> tmp', 'link-dir -> data', 'dangling -> nowhere', 'data/logs-link -> ../logs', 'logs-link -> logs',
];

/** Hand-written excludes files: each line of the DESIGN.md rule list, realistic and tricky. */
const CASES: ReadonlyArray<{ readonly name: string; readonly text: string; readonly matchesNothing?: true }> = [
  {
    name: 'artifactory standby',
    text: [
      '# Artifactory: what a standby must not copy',
      '; (rsync also takes ";" comments)',
      '',
      '+ /etc/security/keep.key',
      'logs/',
      'backup/',
      'work/',
      'data/tmp/',
      'data/filestore/_pre/',
      '*.lock',
      '/etc/security/*.key',
      '',
    ].join('\n'),
  },
  {
    name: 'explicit prefixes and first match wins',
    text: ['+ keep.txt', '+ logs/', '- *.log', '- keep.txt', '+ tmp', '- tmp', '- /etc/'].join('\n'),
  },
  {
    name: 'an include cannot rescue a child of an excluded directory',
    text: ['- logs/', '+ logs/keep.txt', '+ data/tmp/upload.bin', '- data/tmp', '+ x/y/', '- y/'].join('\n'),
  },
  {
    name: 'anchored versus unanchored',
    text: ['/tmp', '/data/logs/', 'filestore/_pre', '/x/data/', 'y/logs', '/cache'].join('\n'),
  },
  {
    name: 'directory-only patterns versus files of the same name',
    text: ['tmp/', 'logs/', 'cache/', 'dir3/', 'd.lock/'].join('\n'),
  },
  {
    name: 'inner slash matches at any depth',
    text: ['data/tmp/', 'data/filestore/_pre/', 'security/*.key', 'x/b'].join('\n'),
  },
  {
    name: 'single star stays within a name, double star crosses',
    text: ['/x/*/logs/', '/a/*', '**/cache/', '/etc/**/deep.key', '**.bak', 'a/**/b', '/a**c'].join('\n'),
  },
  {
    name: 'double star forms',
    text: ['/**/sub', 'x/**', '**/z/**', '/data/**/', 'data**ab'].join('\n'),
  },
  {
    name: 'triple star',
    text: ['dir3/***', '/x/***', '+ data/***', 'logs***'].join('\n'),
  },
  {
    name: 'question mark and classes',
    text: ['file?', '[A-Z]*', '[!a-z.]*.txt', '[[:digit:]]*', 'v[0-9].?.[[:digit:]]', '[]x]', 'x[]]', '[^b]ackup/', 'A[-]Z'].join('\n'),
  },
  {
    name: 'backslash escapes only count with a wildcard present',
    text: ['star\\*name', 'q\\?mark', 'br\\[ack]et', 'back\\slash', '\\-dash*', 'back\\\\slash*'].join('\n'),
  },
  {
    name: 'dot, dash and comment-like names',
    text: ['.*', '- --double', '-dash', '- -', '+ .git/', '- #hash', '- ;semi', '- !bang', '- P foo', ' # not a comment'].join('\n'),
  },
  {
    name: 'hidden files and dot-dirs',
    text: ['+ .git/', '.*/', '..dots', '._*'].join('\n'),
  },
  {
    name: 'spaces are part of the pattern',
    text: ['trailing space ', ' leading space', 'two  spaces', 'with space/', 'app.lock '].join('\n'),
  },
  {
    name: 'non-ASCII names are matched byte by byte',
    text: ['+ caf?', 'caf??/', 'naïve.???', '日本*', 'Ünïcödé/x', 'caf*'].join('\n'),
  },
  {
    name: 'CR LF line endings',
    text: ['logs/', '*.lock', '/tmp', ''].join('\r\n'),
  },
  {
    name: '"!" clears the rules before it',
    text: ['logs/', '*.lock', '!', 'backup/', '/tmp'].join('\n'),
  },
  {
    name: 'everything except directories and text files',
    text: ['+ */', '+ *.txt', '- *'].join('\n'),
  },
  {
    name: 'symlinks are not directories',
    text: ['link-dir/', 'logs-link/', 'dangling', '/link-file'].join('\n'),
  },
  {
    name: 'patterns that never match in rsync',
    text: ['[abc', 'logs[[:nope:]]', 'tmp*\\', 'foo//', '/'].join('\n'),
    matchesNothing: true,
  },
  {
    name: 'newline inside a name matches a wildcard',
    text: ['new?line', 'new*'].join('\n'),
  },
];

let root = '';
let src = '';
let sourcePaths: Map<string, boolean> = new Map();
let runCount = 0;

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'warmsync-excludes-'));
  src = path.join(root, 'src');
  fs.mkdirSync(src);
  for (const entry of TREE) {
    const [name, target] = entry.split(' -> ') as [string, string | undefined];
    const full = path.join(src, name);
    if (target !== undefined) fs.symlinkSync(target, full);
    else if (name.endsWith('/')) fs.mkdirSync(full);
    else fs.writeFileSync(full, name);
  }
  sourcePaths = listTree(src, () => false);
});

after(() => {
  if (root !== '') fs.rmSync(root, { recursive: true, force: true });
});

/** Relative path -> is-directory for everything under `dir`, not descending where `prune` says so. */
function listTree(dir: string, prune: (relPath: string, isDir: boolean) => boolean): Map<string, boolean> {
  const out = new Map<string, boolean>();
  const visit = (abs: string, rel: string): void => {
    for (const dirent of fs.readdirSync(abs, { withFileTypes: true })) {
      const relPath = rel === '' ? dirent.name : `${rel}/${dirent.name}`;
      const isDir = dirent.isDirectory(); // a symlink to a directory is not one, for rsync -a either
      if (prune(relPath, isDir)) continue;
      out.set(relPath, isDir);
      if (isDir) visit(path.join(abs, dirent.name), relPath);
    }
  };
  visit(dir, '');
  return out;
}

/** Writes `text` as an excludes file: rsync and warmsync then read the same file. */
function excludesFile(text: string): string {
  const file = path.join(root, `excludes-${++runCount}.txt`);
  fs.writeFileSync(file, text);
  return file;
}

/** The matcher the agent builds from `--exclude-from FILE` (src/cli/agent.ts, then src/agent/agent.ts). */
async function warmsyncMatcher(file: string): Promise<ExcludeMatcher> {
  return new ExcludeMatcher(await loadExcludeFiles([file]));
}

/** Runs the real rsync with the excludes file `file`; returns the relative paths it copied. */
async function rsyncKeeps(file: string): Promise<Set<string>> {
  return rsyncKeepsWith([`--exclude-from=${file}`], `excludes file ${JSON.stringify(fs.readFileSync(file, 'utf8'))}`);
}

/** Runs the real rsync with these filter flags; returns the relative paths it copied. */
async function rsyncKeepsWith(flags: readonly string[], what: string): Promise<Set<string>> {
  const dst = path.join(root, `dst-${++runCount}`);
  fs.mkdirSync(dst);
  try {
    // LC_ALL=C pins what [[:alpha:]] and friends mean to rsync.
    await execFileAsync('rsync', ['-a', ...flags, `${src}/`, `${dst}/`], { env: { ...process.env, LC_ALL: 'C' } });
  } catch (err) {
    assert.fail(`rsync failed for ${what}: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
  const kept = new Set(listTree(dst, () => false).keys());
  fs.rmSync(dst, { recursive: true, force: true });
  return kept;
}

/** Differences between rsync and the matcher, as lines for an assertion message (empty when they agree). */
function compare(matcher: ExcludeMatcher, rsyncKept: ReadonlySet<string>): string[] {
  const walked = listTree(src, (relPath, isDir) => matcher.excludes(relPath, isDir));
  const problems: string[] = [];
  for (const p of rsyncKept) if (!walked.has(p)) problems.push(`rsync copies ${JSON.stringify(p)}, the walker excludes it`);
  for (const p of walked.keys()) if (!rsyncKept.has(p)) problems.push(`rsync skips ${JSON.stringify(p)}, the walker keeps it`);
  for (const [p, isDir] of sourcePaths) {
    const hidden = matcher.hides(p, isDir);
    if (hidden === rsyncKept.has(p)) problems.push(`hides(${JSON.stringify(p)}, ${isDir}) is ${hidden}, but rsync ${hidden ? 'copies' : 'skips'} it`);
  }
  return problems;
}

for (const { name, text } of CASES) {
  test(`rsync and the matcher keep the same paths: ${name}`, async () => {
    requireRsync();
    const file = excludesFile(text);
    const problems = compare(await warmsyncMatcher(file), await rsyncKeeps(file));
    assert.deepEqual(problems, [], `excludes file ${JSON.stringify(text)}:\n  ${problems.join('\n  ')}`);
  });
}

/**
 * Several sources on one command line, in order: "!" (a file's line, or an --exclude flag) clears
 * every rule before it, from earlier files and flags too (issue 18). Each item is an --exclude flag,
 * or "@TEXT" for an --exclude-from file holding TEXT.
 */
const SOURCE_CASES: ReadonlyArray<{ readonly name: string; readonly sources: readonly string[] }> = [
  { name: 'issue 18: F1 = *.o, F2 = "!" then *.c', sources: ['@*.lock\n', '@!\n*.bak\n'] },
  { name: '"!" in a file clears --exclude flags before it', sources: ['logs/', '- *.txt', '@!\ntmp\n', 'cache'] },
  { name: '--exclude "!" clears earlier files', sources: ['@data/\n*.key\n', '!', '*.lock'] },
  { name: 'rules after "!" in the same file stay, later files add', sources: ['@a/\n!\n+ x/\n*.log\n', '@x/\n', 'etc/'] },
  { name: 'two clears in a row', sources: ['@logs/\n', '!', '@!\n', 'work/'] },
];

for (const { name, sources } of SOURCE_CASES) {
  test(`rsync and the agent's rule list agree across several sources: ${name}`, async () => {
    requireRsync();
    const parsed: FilterSource[] = [];
    const flags: string[] = [];
    for (const item of sources) {
      if (item.startsWith('@')) {
        const file = excludesFile(item.slice(1));
        parsed.push({ kind: 'exclude-from', value: file });
        flags.push(`--exclude-from=${file}`);
      } else {
        parsed.push({ kind: 'exclude', value: item });
        flags.push(`--exclude=${item}`);
      }
    }
    const matcher = new ExcludeMatcher(await loadFilterSources(parsed));
    const problems = compare(matcher, await rsyncKeepsWith(flags, JSON.stringify(sources)));
    assert.deepEqual(problems, [], `sources ${JSON.stringify(sources)}:\n  ${problems.join('\n  ')}`);
  });
}

test('every hand-written case excludes something and keeps something', async () => {
  // Guards the table itself: a case that keeps all or nothing proves little.
  for (const { name, text, matchesNothing } of CASES) {
    if (matchesNothing) continue;
    const matcher = await warmsyncMatcher(excludesFile(text));
    const kept = [...sourcePaths].filter(([p, isDir]) => !matcher.hides(p, isDir)).length;
    assert.ok(kept > 0 && kept < sourcePaths.size, `${name}: keeps ${kept} of ${sourcePaths.size}`);
  }
});

/** Small seeded PRNG (mulberry32) so the generated patterns are the same on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces drawn from the tree's names and from every wildcard form. */
const PATTERN_PIECES: readonly string[] = [
  'a', 'b', 'x', 'y', 'data', 'tmp', 'logs', 'log', 'lock', 'key', 'caf', 'é', 'e', '_pre', 'filestore',
  'security', 'file', '.', '-', ' ', '\\', '\\*', '\\?', '*', '*', '**', '***', '?', '?', '/', '/', '/',
  '[a-c]', '[!a]', '[^.]', '[[:digit:]]', '[[:upper:]]', '[]x]', '[/]', '[é]', '[a-]',
];

function generatedPattern(random: () => number): string {
  const pick = (): string => PATTERN_PIECES[Math.floor(random() * PATTERN_PIECES.length)] as string;
  let pattern = random() < 0.3 ? '/' : '';
  const pieces = 1 + Math.floor(random() * 4);
  for (let i = 0; i < pieces; i++) pattern += pick();
  if (random() < 0.2) pattern += '/';
  return pattern;
}

test('rsync and the matcher agree on generated patterns', async () => {
  requireRsync();
  const random = seededRandom(20240611);
  const generated: Array<{ text: string; file: string; matcher: ExcludeMatcher }> = [];
  while (generated.length < 96) {
    const rules = [generatedPattern(random)];
    if (random() < 0.25) rules.unshift(`+ ${generatedPattern(random)}`);
    const text = rules.join('\n');
    const file = excludesFile(text);
    try {
      generated.push({ text, file, matcher: await warmsyncMatcher(file) });
    } catch (err) {
      // Lines warmsync refuses on purpose (for example "-/ x" or "!x") have no rsync meaning to compare.
      if (err instanceof UsageError) continue;
      throw err;
    }
  }
  const failures: string[] = [];
  const PARALLEL = 8;
  for (let i = 0; i < generated.length; i += PARALLEL) {
    await Promise.all(generated.slice(i, i + PARALLEL).map(async ({ text, file, matcher }) => {
      const problems = compare(matcher, await rsyncKeeps(file));
      if (problems.length > 0) failures.push(`${JSON.stringify(text)}:\n    ${problems.slice(0, 5).join('\n    ')}`);
    }));
  }
  assert.deepEqual(failures, [], `patterns where the matcher and rsync disagree:\n  ${failures.join('\n  ')}`);
});
