/**
 * rsync `--exclude-from` files -> one matcher shared by the scanner and the watcher (DESIGN.md,
 * "Exclude rules"). The semantics are those of `rsync -a --exclude-from=F src/ dst/`, taken from
 * rsync's exclude.c (line parsing, rule_matches) and lib/wildmatch.c, and checked against the real
 * rsync by test/integration/excludes-rsync.test.ts.
 *
 * rsync matches bytes, not characters: `?` matches one byte of a UTF-8 name and a class matches one
 * byte. So patterns, and paths that are not plain ASCII, are matched as "byte strings" (each UTF-8
 * byte as one latin1 character). Patterns are translated to RegExp here rather than by picomatch,
 * which cannot express per-byte `?`, `**` inside a name (`a**b`), a `**` between slashes that must
 * not match an empty directory level (rsync's "a/" + "**" + "/b" does not match "a/b"), or rsync's
 * rule that a backslash escapes only in a pattern that also holds a wildcard.
 */
import { Buffer } from 'node:buffer';
import { TextDecoder } from 'node:util';
import { UsageError, describeError } from '../errors.js';
import { InputFileProblem, readInputFile } from '../inputfile.js';

export interface FilterRule {
  readonly action: 'exclude' | 'include';
  /** The pattern as rsync keeps it: the "- " or "+ " prefix removed, every other character kept. */
  readonly pattern: string;
  /** Where the rule came from, for messages: "FILE:LINE" or "--exclude". */
  readonly origin: string;
}

/** The largest `--exclude-from` file read (4 MiB: some 100,000 patterns, far past any real list). */
export const MAX_EXCLUDE_FILE_BYTES = 4 * 1024 * 1024;

/** rsync discards a pattern of MAXPATHLEN (4096) bytes or more. */
const MAX_PATTERN_BYTES = 4095;

/**
 * Lines written in rsync's full filter-rule syntax (`--filter`, merge files). `--exclude-from` does
 * not parse that syntax, so rsync would take such a line as a file name; a line of this shape is
 * almost surely meant as a rule, so it is refused rather than read either way. Only a space counts
 * as the separator: rsync also accepts "_", but then common names such as "._*" (macOS resource
 * files) and "include_dirs" would look like rules, so those stay plain patterns.
 */
const FILTER_RULE_SYNTAX =
  /^(?:[-+.:HSPR],?[-+/!Cenprswx]* |(?:exclude|include|merge|dir-merge|hide|show|protect|risk)(?:,[-+/!Cenprswx]*)? |[-:],?C$)/;

const LONG_RULE_NAME = /^(?:exclude|include|merge|dir-merge|hide|show|protect|risk)/;

const SHORT_RULE_NAMES: Readonly<Record<string, string>> = {
  '-': 'exclude in --filter syntax',
  '+': 'include in --filter syntax',
  '.': 'merge',
  ':': 'dir-merge',
  H: 'hide',
  S: 'show',
  P: 'protect',
  R: 'risk',
};

/** One source of rules on the command line: an `--exclude PATTERN` flag or an `--exclude-from FILE`. */
export interface FilterSource {
  readonly kind: 'exclude' | 'exclude-from';
  /** The pattern, or the file's path. */
  readonly value: string;
}

/**
 * The rules of `--exclude` and `--exclude-from` sources in command-line order, as rsync builds its
 * one list: a "!" (a line of a file, or an `--exclude '!'` flag) clears every rule before it, from
 * earlier files and flags too. Every bad line of every file is reported at once, in one BAD_EXCLUDE
 * error of one line per problem; a file that cannot be read is EXCLUDE_FILE.
 */
export async function loadFilterSources(sources: readonly FilterSource[]): Promise<FilterRule[]> {
  let rules: FilterRule[] = [];
  const problems: string[] = [];
  for (const source of sources) {
    if (source.kind === 'exclude') {
      if (source.value === '!') {
        rules = [];
        continue;
      }
      try {
        rules.push(excludeRule(source.value));
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        problems.push(err.message);
      }
      continue;
    }
    const path = source.value;
    const parsed = parseLines(decodeLines(readExcludeFile(path)), (line) => `${path}:${line}`, problems);
    if (parsed.cleared) rules = [];
    rules.push(...parsed.rules);
  }
  if (problems.length > 0) throw new UsageError('BAD_EXCLUDE', problems.join('\n'));
  return rules;
}

/** Reads and parses excludes files in order, as rsync does with several `--exclude-from` options (see loadFilterSources). */
export function loadExcludeFiles(paths: readonly string[]): Promise<FilterRule[]> {
  return loadFilterSources(paths.map((value) => ({ kind: 'exclude-from', value })));
}

/**
 * The rule for one `--exclude PATTERN` flag: like rsync, a "- " or "+ " prefix picks the action.
 * "!" (clear the rules so far) is not a rule: loadFilterSources handles it.
 */
export function excludeRule(pattern: string): FilterRule {
  const origin = '--exclude';
  if (pattern === '!') {
    throw badExclude(origin, '"!" clears the rules before it: it is not a rule of its own (see loadFilterSources)');
  }
  return ruleFromText(pattern, origin);
}

export class ExcludeMatcher {
  readonly rules: readonly FilterRule[];
  readonly #compiled: readonly CompiledRule[];

  constructor(rules: readonly FilterRule[]) {
    this.rules = Object.freeze([...rules]);
    this.#compiled = this.rules.map(compileRule);
  }

  /** Is this entry excluded, judging only its own path (the caller has already checked its ancestors: used by the directory walker, which prunes excluded directories). */
  excludes(relPath: string, isDir: boolean): boolean {
    return this.#excludesText(toByteString(relPath), isDir);
  }

  /** Is this path excluded itself or hidden by an excluded ancestor directory (used for watcher events and the planner). */
  hides(relPath: string, isDir: boolean): boolean {
    const text = toByteString(relPath);
    // rsync never descends into an excluded directory, so no rule can bring back anything below it.
    for (let slash = text.indexOf('/'); slash >= 0; slash = text.indexOf('/', slash + 1)) {
      if (this.#excludesText(text.slice(0, slash), true)) return true;
    }
    return this.#excludesText(text, isDir);
  }

  /** First matching rule wins; a path no rule matches is kept. */
  #excludesText(text: string, isDir: boolean): boolean {
    const rules = this.#compiled;
    let textWithSlash: string | undefined;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i] as CompiledRule;
      if (rule.dirOnly && !isDir) continue;
      const subject = isDir && rule.slashAfterDir ? (textWithSlash ??= `${text}/`) : text;
      if (rule.matches(subject)) return rule.exclude;
    }
    return false;
  }
}

export interface ParsedRules {
  readonly rules: FilterRule[];
  /** A "!" line cleared the rules before it, which in rsync includes rules from earlier sources. */
  readonly cleared: boolean;
}

/**
 * Parses the text of one rsync `--exclude-from` file (loadFilterSources reads and decodes it);
 * `origin` (the file name) prefixes each rule's line number. Every bad line is reported, in one
 * BAD_EXCLUDE error with a line per problem.
 */
export function parseFilterText(text: string, origin: string): ParsedRules {
  const problems: string[] = [];
  // rsync ends a line at LF and at CR; taking CR LF as one break keeps line numbers as editors show them.
  const parsed = parseLines(text.split(/\r\n|\r|\n/), (line) => `${origin}:${line}`, problems);
  if (problems.length > 0) throw new UsageError('BAD_EXCLUDE', problems.join('\n'));
  return parsed;
}

/** The bytes of one line that is not valid UTF-8. */
class NotUtf8 {}

/**
 * Parses lines (a NotUtf8 for one that could not be decoded), adding a "WHERE: problem" to
 * `problems` for each bad one instead of stopping at the first.
 */
function parseLines(lines: ReadonlyArray<string | NotUtf8>, where: (line: number) => string, problems: string[]): ParsedRules {
  let rules: FilterRule[] = [];
  let cleared = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string | NotUtf8;
    if (line instanceof NotUtf8) {
      problems.push(`${where(i + 1)}: not valid UTF-8, so its patterns cannot name the UTF-8 paths warmsync sees`);
      continue;
    }
    if (i === 0 && line.startsWith('\uFEFF')) {
      problems.push(`${where(1)}: starts with a byte-order mark, which rsync reads as part of the first pattern; save the file without it`);
      continue;
    }
    // Only the first character makes a comment: to rsync "  # x" and "a # x" are patterns.
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line === '!') {
      rules = [];
      cleared = true;
      continue;
    }
    try {
      rules.push(ruleFromText(line, where(i + 1)));
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      problems.push(err.message);
    }
  }
  return { rules, cleared };
}

/** One rule from an excludes-file line or an --exclude flag; `where` names it in errors. */
function ruleFromText(text: string, where: string): FilterRule {
  const quoted = JSON.stringify(text);
  const include = text.startsWith('+ ');
  const prefixed = include || text.startsWith('- ');
  if (!prefixed && text.startsWith('!')) {
    throw badExclude(where, `${quoted} is not a negation in rsync (it would exclude a name starting with "!"); put "+ PATTERN" before the rule it should override, or write "- ${text}" for that literal name`);
  }
  if (!prefixed && FILTER_RULE_SYNTAX.test(text)) {
    throw badExclude(where, `unsupported filter rule ${quoted} (${filterRuleName(text)}): only "- PATTERN", "+ PATTERN", "!" and plain patterns are supported, and rsync would read this line as a file name; write "- ${text}" if that is what you mean`);
  }
  const pattern = prefixed ? text.slice(2) : text;
  if (pattern === '') {
    throw badExclude(where, prefixed ? `${quoted} has no pattern after it (rsync stops: "unexpected end of filter rule")` : 'empty pattern');
  }
  checkPattern(pattern, where);
  return { action: include ? 'include' : 'exclude', pattern, origin: where };
}

function filterRuleName(text: string): string {
  if (/^[-:],?C$/.test(text)) return 'CVS excludes';
  return LONG_RULE_NAME.exec(text)?.[0] ?? SHORT_RULE_NAMES[text.charAt(0)] ?? 'filter rule';
}

function checkPattern(pattern: string, where: string): void {
  if (pattern.includes('\0')) throw badExclude(where, 'pattern contains a NUL character');
  if (Buffer.byteLength(pattern) > MAX_PATTERN_BYTES) {
    throw badExclude(where, `pattern longer than ${MAX_PATTERN_BYTES} bytes (rsync discards it)`);
  }
}

function badExclude(where: string, problem: string): UsageError {
  return new UsageError('BAD_EXCLUDE', `${where}: ${problem}`);
}

function readExcludeFile(path: string): Buffer {
  if (path === '-') {
    throw new UsageError('EXCLUDE_FILE', `cannot read excludes file ${path}: reading rules from standard input is not supported, name a file`);
  }
  try {
    // A FIFO or device is refused at once (never a hang), a file past the limit before it is read.
    return readInputFile(path, MAX_EXCLUDE_FILE_BYTES);
  } catch (err) {
    const reason = err instanceof InputFileProblem && err.cause === undefined ? err.message : systemErrorReason(err instanceof InputFileProblem ? err.cause : err);
    throw new UsageError('EXCLUDE_FILE', `cannot read excludes file ${path}: ${reason}`, { cause: err });
  }
}

/** "ENOENT: no such file or directory" without the syscall and path Node appends. */
function systemErrorReason(err: unknown): string {
  const message = describeError(err);
  const comma = message.indexOf(', ');
  return typeof (err as { syscall?: unknown }).syscall === 'string' && comma > 0 ? message.slice(0, comma) : message;
}

// ignoreBOM keeps a byte-order mark in the text so that parsing can refuse it.
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The file's lines, split as parseFilterText splits them, each decoded on its own (a NotUtf8 where that fails). */
function decodeLines(bytes: Uint8Array): Array<string | NotUtf8> {
  const CR = 0x0d;
  const LF = 0x0a;
  const lines: Array<string | NotUtf8> = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    const byte = bytes[i];
    if (i < bytes.length && byte !== CR && byte !== LF) continue;
    try {
      lines.push(STRICT_UTF8.decode(bytes.subarray(start, i)));
    } catch {
      lines.push(new NotUtf8());
    }
    if (byte === CR && bytes[i + 1] === LF) i++;
    start = i + 1;
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Matching

interface CompiledRule {
  readonly exclude: boolean;
  /** A trailing "/" in the pattern: only directories can match. */
  readonly dirOnly: boolean;
  /** rsync appends "/" to a directory's path for patterns ending in "***", so "dir/***" matches "dir". */
  readonly slashAfterDir: boolean;
  /** Does the rule match this path (a byte string, "/" appended when slashAfterDir applies)? */
  readonly matches: (text: string) => boolean;
}

const NON_ASCII = /[\u0080-\uffff]/;

/** The path with each UTF-8 byte as one character, which is how rsync's matcher sees it. */
function toByteString(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

const NEVER = (): boolean => false;

function compileRule(rule: FilterRule): CompiledRule {
  if (rule.pattern === '') throw badExclude(rule.origin, 'empty pattern');
  checkPattern(rule.pattern, rule.origin);
  const exclude = rule.action === 'exclude';
  let pattern = toByteString(rule.pattern);
  // rsync strips one trailing slash (but not from "/" alone) and then matches only directories.
  const dirOnly = pattern.length > 1 && pattern.endsWith('/');
  if (dirOnly) pattern = pattern.slice(0, -1);
  const slashCount = pattern.split('/').length - 1;
  const anchored = pattern.startsWith('/');
  const body = anchored ? pattern.slice(1) : pattern;

  if (!/[*?[]/.test(pattern)) {
    // Without a wildcard rsync compares plainly: a backslash is an ordinary character here.
    const matches = anchored ? (text: string) => text === body : endsWithElements(body);
    return { exclude, dirOnly, slashAfterDir: false, matches };
  }

  const hasDoubleStar = pattern.includes('**');
  const slashAfterDir = hasDoubleStar && pattern.endsWith('***');
  const tokens = wildTokens(body);
  // A pattern rsync's matcher cannot finish reading (an unclosed "[", an unknown "[:class:]", a
  // trailing backslash) aborts every match: the rule is kept but never matches, as in rsync.
  if (tokens === null) return { exclude, dirOnly, slashAfterDir, matches: NEVER };

  if (slashCount === 0 && !hasDoubleStar) {
    // No "/" and no "**": rsync matches the last path element only.
    const [first, ...rest] = tokens;
    if (first?.kind === 'star' && rest.every((token) => token.kind === 'literal')) {
      // "*.lock" and the like, most patterns in practice: a suffix test is enough.
      const suffix = rest.map((token) => token.literal).join('');
      return { exclude, dirOnly, slashAfterDir, matches: (text) => text.endsWith(suffix) && text.lastIndexOf('/') < text.length - suffix.length };
    }
    const regex = new RegExp(`${joinSources(tokens)}$`, 'y');
    return { exclude, dirOnly, slashAfterDir, matches: (text) => stickyTest(regex, text, text.lastIndexOf('/') + 1) };
  }
  if (anchored) {
    const regex = new RegExp(`^${sourceToEnd(tokens)}`);
    return { exclude, dirOnly, slashAfterDir, matches: (text) => regex.test(text) };
  }
  if (pattern.startsWith('**')) {
    // rsync matches "/" + path, so that "**/x" also matches a top-level "x". The leading "**" then
    // matches any prefix of that string, which leaves two cases: the rest matches a suffix of the
    // path, or the rest starts with "/" and what follows it matches the whole path.
    const rest = tokens.slice(1);
    const regex = rest[0]?.literal === '/'
      ? new RegExp(`(?:^|/)${sourceToEnd(rest.slice(1))}`)
      : new RegExp(sourceToEnd(rest));
    return { exclude, dirOnly, slashAfterDir, matches: (text) => regex.test(text) };
  }
  if (hasDoubleStar) {
    // An inner or trailing "**": rsync tries the pattern at the start and after every "/".
    const regex = new RegExp(`(?:^|/)${sourceToEnd(tokens)}`);
    return { exclude, dirOnly, slashAfterDir, matches: (text) => regex.test(text) };
  }
  // An inner "/" and no "**": rsync matches the last (number of "/" + 1) path elements.
  const elements = slashCount + 1;
  const regex = new RegExp(`${joinSources(tokens)}$`, 'y');
  return {
    exclude,
    dirOnly,
    slashAfterDir,
    matches: (text) => {
      const start = lastElementsStart(text, elements);
      return start >= 0 && stickyTest(regex, text, start);
    },
  };
}

/** A plain pattern matches the path's last elements: "b/c" matches "b/c" and "a/b/c", not "ab/c". */
function endsWithElements(literal: string): (text: string) => boolean {
  const slashLiteral = `/${literal}`;
  return (text) => text === literal || text.endsWith(slashLiteral);
}

function stickyTest(regex: RegExp, text: string, start: number): boolean {
  regex.lastIndex = start;
  return regex.test(text);
}

/** Where the last `count` "/"-separated elements of `text` start, or -1 when it has fewer. */
function lastElementsStart(text: string, count: number): number {
  let slashesToFind = count;
  for (let i = text.length - 1; i >= 0; i--) {
    if (text.charCodeAt(i) === 0x2f && --slashesToFind === 0) return i + 1;
  }
  return slashesToFind === 1 ? 0 : -1;
}

interface WildToken {
  /** RegExp source matching what the token matches in rsync. */
  readonly source: string;
  /** "star" is a single "*", "doubleStar" a run of two or more, which crosses "/". */
  readonly kind: 'literal' | 'star' | 'doubleStar' | 'other';
  /** The character a literal token stands for ("" for other kinds). */
  readonly literal: string;
}

function joinSources(tokens: readonly WildToken[]): string {
  return tokens.map((token) => token.source).join('');
}

/** Source that must match up to the end of the text; a trailing "**" always does, so it is left out. */
function sourceToEnd(tokens: readonly WildToken[]): string {
  return tokens.at(-1)?.kind === 'doubleStar' ? joinSources(tokens.slice(0, -1)) : `${joinSources(tokens)}$`;
}

/** Translates a wildcard pattern (byte string) to RegExp pieces; null when rsync's matcher would abort. */
function wildTokens(pattern: string): WildToken[] | null {
  const tokens: WildToken[] = [];
  for (let i = 0; i < pattern.length;) {
    const c = pattern[i];
    if (c === '\\') {
      if (i + 1 === pattern.length) return null;
      tokens.push(literalToken(pattern.charCodeAt(i + 1)));
      i += 2;
    } else if (c === '?') {
      tokens.push({ source: '[^/]', kind: 'other', literal: '' });
      i++;
    } else if (c === '*') {
      let end = i + 1;
      while (pattern[end] === '*') end++;
      tokens.push(end - i > 1 ? { source: '[^]*', kind: 'doubleStar', literal: '' } : { source: '[^/]*', kind: 'star', literal: '' });
      i = end;
    } else if (c === '[') {
      const charClass = classToken(pattern, i);
      if (charClass === null) return null;
      tokens.push({ source: charClass.source, kind: 'other', literal: '' });
      i = charClass.end;
    } else {
      tokens.push(literalToken(pattern.charCodeAt(i)));
      i++;
    }
  }
  return tokens;
}

function literalToken(code: number): WildToken {
  return { source: escapeByte(code), kind: 'literal', literal: String.fromCharCode(code) };
}

function escapeByte(code: number): string {
  const c = String.fromCharCode(code);
  return /[A-Za-z0-9]/.test(c) ? c : `\\x${code.toString(16).padStart(2, '0')}`;
}

/** rsync's ctype tests, which accept only ASCII bytes in the C and UTF-8 locales. */
const POSIX_CLASSES: ReadonlyMap<string, string> = new Map([
  ['alnum', '0-9A-Za-z'],
  ['alpha', 'A-Za-z'],
  ['blank', '\\x20\\x09'],
  ['cntrl', '\\x00-\\x1f\\x7f'],
  ['digit', '0-9'],
  ['graph', '\\x21-\\x7e'],
  ['lower', 'a-z'],
  ['print', '\\x20-\\x7e'],
  ['punct', '\\x21-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7e'],
  ['space', '\\x09-\\x0d\\x20'],
  ['upper', 'A-Z'],
  ['xdigit', '0-9A-Fa-f'],
]);

/**
 * The "[...]" class opening at `open`, read the way wildmatch.c reads it: "!" or "^" negates, the
 * first member may be "]", "\x" is a literal x, "a-z" is a range unless "-" comes first or last,
 * "[:name:]" is a ctype class, and a class never matches "/". Null when rsync would abort.
 */
function classToken(pattern: string, open: number): { source: string; end: number } | null {
  let i = open + 1;
  const negated = pattern[i] === '!' || pattern[i] === '^';
  if (negated) i++;
  let members = '';
  let rangeStart = -1; // the previous single member, which a following "-" makes a range start
  do {
    if (i >= pattern.length) return null;
    const c = pattern[i];
    if (c === '\\') {
      if (++i >= pattern.length) return null;
      rangeStart = pattern.charCodeAt(i);
      members += escapeByte(rangeStart);
    } else if (c === '-' && rangeStart >= 0 && i + 1 < pattern.length && pattern[i + 1] !== ']') {
      if (pattern[++i] === '\\' && ++i >= pattern.length) return null;
      const rangeEnd = pattern.charCodeAt(i);
      if (rangeStart <= rangeEnd) members += `${escapeByte(rangeStart)}-${escapeByte(rangeEnd)}`;
      rangeStart = -1;
    } else if (c === '[' && pattern[i + 1] === ':') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) return null;
      if (close === i + 2 || pattern[close - 1] !== ':') {
        // Not "[:name:]" after all: an ordinary "[" member.
        rangeStart = 0x5b;
        members += escapeByte(rangeStart);
      } else {
        const set = POSIX_CLASSES.get(pattern.slice(i + 2, close - 1));
        if (set === undefined) return null;
        members += set;
        rangeStart = -1;
        i = close;
      }
    } else {
      rangeStart = pattern.charCodeAt(i);
      members += escapeByte(rangeStart);
    }
    i++;
  } while (pattern[i] !== ']');
  const source = negated ? `[^${members}\\x2f]` : `(?!\\x2f)[${members}]`;
  return { source, end: i + 1 };
}
