/**
 * A seeded, Artifactory-like source tree (the shape warmsync is built for):
 *
 *   data/filestore/xx/<sha1>   binaries named by the SHA-1 of their content; sizes lognormal around a
 *                              20 KiB median (sigma 1.2, clamped to 64 B..4 MiB), plus one 2-8 MiB
 *                              file per 2,000 (at least 2)
 *   etc/...                    configuration files (text)
 *   logs/ work/ backup/ data/tmp/ data/filestore/_pre/
 *                              what EXCLUDES skips: ~3 % more files that neither side may copy
 *
 * With `small` (the --scale corpus, issue 19) the binaries are 100-2,000 bytes, uniform, with no large
 * ones, as in a filestore of millions of small artifacts; the SHA-1 names still spread them over the
 * 256 dirs 00..ff.
 *
 * Everything (names, sizes, contents, mtimes) follows from the seed. `mutate` changes a tree the way a
 * day of use does (add 1 % binaries, delete 0.5 %, edit some etc/ files, append to a log), also from a
 * seed. Content is AES-128-CTR keystream: incompressible and fast to make.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';

/** The rsync --exclude-from file both sides use. */
export const EXCLUDES = [
  '# Artifactory: what a standby must not copy',
  '/logs/',
  '/work/',
  '/backup/',
  '/data/tmp/',
  '/data/filestore/_pre/',
  '',
].join('\n');

const KiB = 1024;
const MiB = 1024 * KiB;
const MEDIAN = 20 * KiB;
const SIGMA = 1.2;
/** 2024-01-01T00:00:00Z: base mtimes are spread over the year after it. */
const EPOCH_S = 1_704_067_200;

/** A small fast PRNG (mulberry32), seeded from a string (hashed) or a 32-bit number (as is). */
export class Rng {
  private state: number;

  constructor(seed: string | number) {
    this.state = typeof seed === 'number' ? seed >>> 0 : createHash('sha256').update(seed).digest().readUInt32LE(0);
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  int(min: number, maxInclusive: number): number {
    return min + Math.floor(this.next() * (maxInclusive - min + 1));
  }

  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** `n` bytes derived from the stream (cheap: one random word stepped by an LCG). */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let word = this.int(0, 0xffffffff);
    for (let i = 0; i + 4 <= n; i += 4) {
      word = (Math.imul(word, 1664525) + 1013904223) >>> 0;
      out.writeUInt32LE(word, i);
    }
    for (let i = n - (n % 4); i < n; i++) out[i] = this.int(0, 255);
    return out;
  }

  hex(chars: number): string {
    let s = '';
    while (s.length < chars) s += Math.floor(this.next() * 0x1_0000_0000).toString(16).padStart(8, '0');
    return s.slice(0, chars);
  }
}

/** `size` bytes of keystream for `label` under `seed`. */
export function content(seed: string, label: string, size: number): Buffer {
  const key = createHash('sha256').update(`${seed}\0${label}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return cipher.update(Buffer.alloc(size));
}

/** A binary size: lognormal, median 20 KiB. */
export function binarySize(rng: Rng, max = 4 * MiB): number {
  return Math.max(64, Math.min(max, Math.round(MEDIAN * Math.exp(SIGMA * rng.normal()))));
}

/** `made`: directories this caller has already made (at a million files a mkdir per file is a cost of its own). */
function write(root: string, rel: string, data: Buffer | string, mtimeS?: number, made?: Set<string>): number {
  const abs = join(root, rel);
  const dir = dirname(abs);
  if (made === undefined || !made.has(dir)) {
    mkdirSync(dir, { recursive: true });
    made?.add(dir);
  }
  writeFileSync(abs, data);
  if (mtimeS !== undefined) utimesSync(abs, mtimeS, mtimeS);
  return typeof data === 'string' ? Buffer.byteLength(data) : data.length;
}

/** Writes a binary into data/filestore/xx/<sha1>; returns its relative path and size. */
export function writeBinary(root: string, seed: string, label: string, size: number, mtimeS?: number, made?: Set<string>): { rel: string; bytes: number } {
  const data = content(seed, label, size);
  const sha1 = createHash('sha1').update(data).digest('hex');
  const rel = `data/filestore/${sha1.slice(0, 2)}/${sha1}`;
  return { rel, bytes: write(root, rel, data, mtimeS, made) };
}

function configText(rng: Rng, lines: number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) out.push(`  ${rng.hex(6)}.${rng.hex(4)}: "${rng.hex(rng.int(8, 40))}"`);
  return out.join('\n') + '\n';
}

const CONFIGS: ReadonlyArray<readonly [string, number]> = [
  ['etc/system.yaml', 80], ['etc/artifactory/artifactory.config.latest.xml', 900], ['etc/artifactory/artifactory.system.properties', 60],
  ['etc/artifactory/binarystore.xml', 30], ['etc/artifactory/logback.xml', 120], ['etc/artifactory/artifactory.lic', 10],
  ['etc/access/access.config.latest.yml', 200], ['etc/access/logback.xml', 90], ['etc/security/master.key', 1], ['etc/security/join.key', 1],
  ['etc/router/logback.xml', 60], ['etc/metadata/logback.xml', 60], ['etc/frontend/logback.xml', 40], ['etc/event/logback.xml', 40],
  ['etc/artifactory/plugins/cleanup.groovy', 150], ['etc/artifactory/plugins/replication.groovy', 200], ['etc/artifactory/plugins/README.md', 20],
  ['etc/artifactory/ui/logo.svg', 40], ['etc/replicator/replicator.yaml', 50], ['etc/observability/observability.yaml', 30],
];

export interface CorpusStats { readonly files: number; readonly bytes: number; readonly excludedFiles: number; readonly excludedBytes: number }

export interface CorpusShape {
  /** Binaries of 100-2,000 bytes (uniform) and no large ones: the --scale corpus. */
  readonly small?: boolean;
  /** Called every `progressEvery` binaries with how many are written. */
  readonly onProgress?: (written: number) => void;
  readonly progressEvery?: number;
}

/**
 * An etc/-like text tree of about `bytes`: configuration (XML, YAML, properties), scripts and logs,
 * in files of 4-256 KiB, their lines drawn from a vocabulary with numbers and short ids as values, so
 * they compress as such text does (zstd level 3: to about a fifth), not as random hex would.
 */
export function writeTextTree(root: string, seed: string, bytes: number): { files: number; bytes: number } {
  const rng = new Rng(`${seed}:text`);
  const words = ['artifactory', 'access', 'router', 'database', 'url', 'username', 'maxOpenConnections', 'timeout', 'enabled',
    'replication', 'cron', 'repoKey', 'includesPattern', 'excludesPattern', 'checksum', 'sha256', 'logger', 'level', 'appender',
    'pattern', 'maxHistory', 'filestore', 'binarystore', 'provider', 'cache-fs', 'maxCacheSize', 'node', 'id', 'port', 'host'];
  const kinds = [
    (): string => `  <${rng.pick(words)} ${rng.pick(words)}="${rng.pick(words)}-${rng.int(0, 999)}">${rng.pick(words)}</${rng.pick(words)}>`,
    (): string => `${'  '.repeat(rng.int(0, 3))}${rng.pick(words)}: ${rng.next() < 0.5 ? rng.int(0, 100000) : `"${rng.pick(words)}/${rng.hex(8)}"`}`,
    (): string => `${rng.pick(words)}.${rng.pick(words)}.${rng.pick(words)}=${rng.int(0, 65535)}`,
    (): string => `2026-12-06T${String(rng.int(0, 23)).padStart(2, '0')}:${String(rng.int(0, 59)).padStart(2, '0')}:00.${rng.int(100, 999)}Z [${rng.pick(['INFO', 'WARN', 'DEBUG'])}] [${rng.pick(words)}] - ${rng.pick(words)} ${rng.pick(words)} ${rng.hex(12)} took ${rng.int(1, 900)} ms`,
  ];
  let written = 0;
  let files = 0;
  for (; written < bytes; files++) {
    const rel = join('etc', `d${files % 16}`, `conf-${files}.${rng.pick(['xml', 'yaml', 'properties', 'log'])}`);
    const target = rng.int(4096, 256 * 1024);
    const kind = rng.pick(kinds);
    const lines: string[] = [];
    let size = 0;
    while (size < target) {
      const line = kind();
      lines.push(line);
      size += line.length + 1;
    }
    const text = lines.join('\n') + '\n';
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
    written += Buffer.byteLength(text);
  }
  return { files, bytes: written };
}

/** The text files `copyTextTree` takes: code, configuration and docs. */
const TEXT_FILE = /\.(?:js|cjs|mjs|ts|json|md|ya?ml|xml|txt|properties|sh)$/;

/**
 * A tree of real text: the text files under `from`, walked in name order (build output and `.bin`
 * skipped), copied to `root` until about `bytes`. From the project's node_modules this is the same
 * tree wherever package-lock.json installed it: JavaScript, TypeScript, JSON, YAML and Markdown as
 * people write them, where a generator's vocabulary text is not.
 */
export function copyTextTree(from: string, root: string, bytes: number): { files: number; bytes: number } {
  let files = 0;
  let copied = 0;
  const walk = (rel: string): void => {
    for (const entry of readdirSync(join(from, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (copied >= bytes) return;
      const child = join(rel, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'build' && entry.name !== '.bin') walk(child);
      } else if (entry.isFile() && TEXT_FILE.test(entry.name)) {
        mkdirSync(join(root, rel), { recursive: true });
        copyFileSync(join(from, child), join(root, child));
        copied += statSync(join(root, child)).size;
        files++;
      }
    }
  };
  walk('');
  return { files, bytes: copied };
}

/** A small binary's size: 100-2,000 bytes, uniform. */
export const smallSize = (rng: Rng): number => rng.int(100, 2000);

/** Generates the tree for `seed` with `binaries` filestore files under `root` (which may exist, empty). */
export function generateCorpus(root: string, seed: string, binaries: number, shape: CorpusShape = {}): CorpusStats {
  const made = new Set<string>();
  const rng = new Rng(`${seed}:corpus`);
  let files = 0;
  let bytes = 0;
  const mtime = (): number => EPOCH_S + rng.int(0, 365 * 86_400);
  for (const [rel, lines] of CONFIGS) {
    bytes += write(root, rel, configText(rng, lines), mtime());
    files++;
  }
  const big = shape.small === true ? 0 : Math.max(2, Math.round(binaries / 2000));
  const every = shape.progressEvery ?? 50_000;
  for (let i = 0; i < binaries; i++) {
    const size = i < big ? rng.int(2 * MiB, 8 * MiB) : shape.small === true ? smallSize(rng) : binarySize(rng);
    bytes += writeBinary(root, seed, `bin-${i}`, size, mtime(), made).bytes;
    files++;
    if (shape.onProgress !== undefined && (i + 1) % every === 0) shape.onProgress(i + 1);
  }
  // What the excludes file skips (~3 % of the binaries' count): logs, work, backups, temp, partial uploads.
  let excludedFiles = 0;
  let excludedBytes = 0;
  const extra = Math.max(5, Math.round(binaries * 0.006));
  const extraSize = (): number => (shape.small === true ? smallSize(rng) : binarySize(rng, 256 * KiB));
  const skipped = (rel: string, data: Buffer | string): void => {
    excludedBytes += write(root, rel, data, mtime());
    excludedFiles++;
  };
  for (let i = 0; i < extra; i++) {
    skipped(`logs/artifactory-service.${i}.log`, configText(rng, 200));
    skipped(`work/artifactory/tomcat/${rng.hex(8)}.tmp`, content(seed, `work-${i}`, extraSize()));
    skipped(`backup/backup-daily/current/repositories/${rng.hex(12)}.xml`, configText(rng, 50));
    skipped(`data/tmp/${rng.hex(16)}`, content(seed, `tmp-${i}`, extraSize()));
    skipped(`data/filestore/_pre/${rng.hex(40)}`, content(seed, `pre-${i}`, extraSize()));
  }
  return { files, bytes, excludedFiles, excludedBytes };
}

/** The filestore binaries now in the tree (sorted, relative paths), skipping _pre/. */
export function listBinaries(root: string): string[] {
  const base = join(root, 'data/filestore');
  const out: string[] = [];
  for (const dir of readdirSync(base).sort()) {
    if (dir === '_pre') continue;
    for (const name of readdirSync(join(base, dir)).sort()) out.push(`data/filestore/${dir}/${name}`);
  }
  return out;
}

export interface MutationStats { readonly added: number; readonly addedBytes: number; readonly deleted: number; readonly edited: number }

/** A day of use: add 1 % binaries, delete 0.5 %, edit 5 etc/ files, append to a log (excluded). `small`: the added binaries are 100-2,000 bytes. */
export function mutate(root: string, seed: string, shape: Pick<CorpusShape, 'small'> = {}): MutationStats {
  const rng = new Rng(`${seed}:mutate`);
  const binaries = listBinaries(root);
  const nDelete = Math.max(1, Math.round(binaries.length * 0.005));
  const nAdd = Math.max(1, Math.round(binaries.length * 0.01));
  const victims = new Set<number>();
  for (let guard = 0; victims.size < nDelete && guard < nDelete * 100; guard++) victims.add(rng.int(0, binaries.length - 1));
  for (const i of victims) unlinkSync(join(root, binaries[i] as string));
  let addedBytes = 0;
  for (let i = 0; i < nAdd; i++) addedBytes += writeBinary(root, seed, `mut-${i}`, shape.small === true ? smallSize(rng) : binarySize(rng)).bytes;
  const configs = CONFIGS.map(([rel]) => rel);
  let edited = 0;
  for (let i = 0; i < 5; i++) {
    const rel = configs[rng.int(0, configs.length - 1)] as string;
    const fd = openSync(join(root, rel), 'a');
    try {
      writeSync(fd, `# edited ${seed} ${i}: ${rng.hex(24)}\n`);
    } finally {
      closeSync(fd);
    }
    edited++;
  }
  const log = join(root, 'logs/artifactory-service.0.log');
  writeFileSync(log, `mutate ${seed}: ${rng.hex(32)}\n`, { flag: 'a' });
  return { added: nAdd, addedBytes, deleted: victims.size, edited };
}

/** One `bytes`-long binary under data/filestore/, written in 8 MiB pieces (named by its SHA-1). */
export function writeBigBinary(root: string, seed: string, bytes: number): string {
  const key = createHash('sha256').update(`${seed}\0big`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const sha1 = createHash('sha1');
  const tmp = join(root, 'data/filestore/big.partial');
  mkdirSync(dirname(tmp), { recursive: true });
  const fd = openSync(tmp, 'w');
  const zeros = Buffer.alloc(8 * MiB);
  try {
    for (let done = 0; done < bytes;) {
      const n = Math.min(zeros.length, bytes - done);
      const piece = cipher.update(zeros.subarray(0, n));
      sha1.update(piece);
      for (let off = 0; off < piece.length;) off += writeSync(fd, piece, off);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  const hex = sha1.digest('hex');
  const rel = `data/filestore/${hex.slice(0, 2)}/${hex}`;
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  renameSync(tmp, join(root, rel));
  return rel;
}

/**
 * Writes `bytes` of keystream to `root/rel` in place (no temp name: a live watcher sees it grow),
 * 1 MiB per write, asynchronously so that the caller's timers keep running meanwhile. Calls
 * `onStarted` once the first MiB is written; resolves with performance.now() at its close.
 */
export async function writeLargeFile(root: string, seed: string, rel: string, bytes: number, onStarted: () => void): Promise<number> {
  const key = createHash('sha256').update(`${seed}\0large:${rel}`).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  const zeros = Buffer.alloc(MiB);
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  const handle = await open(join(root, rel), 'w');
  try {
    for (let done = 0; done < bytes;) {
      const piece = cipher.update(zeros.subarray(0, Math.min(MiB, bytes - done)));
      for (let off = 0; off < piece.length;) off += (await handle.write(piece, off)).bytesWritten;
      if (done === 0) onStarted();
      done += piece.length;
    }
  } finally {
    await handle.close();
  }
  return performance.now();
}

/**
 * A wide, shallow tree for the watch-memory scenario: `files` 1-byte files spread over `dirs`
 * directories named 00, 01, ... (hex). Fast: ~100k files in a few seconds.
 */
export function generateFlatTree(root: string, files: number, dirs: number): void {
  const names: string[] = [];
  for (let d = 0; d < dirs; d++) {
    const name = d.toString(16).padStart(2, '0');
    mkdirSync(join(root, name), { recursive: true });
    names.push(name);
  }
  for (let i = 0; i < files; i++) writeFileSync(join(root, names[i % dirs] as string, `f${i}`), 'x');
}

/** Files and bytes under `root` (for reports). */
export function treeSize(root: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const abs = join(dir, d.name);
      if (d.isDirectory()) stack.push(abs);
      else if (d.isFile()) {
        files++;
        bytes += statSync(abs).size;
      }
    }
  }
  return { files, bytes };
}
