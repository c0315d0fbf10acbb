/**
 * What the fault suite (test/faults/) shares: the seed and the quick/long mode, a seeded random
 * source, a record of every version of every file the test wrote (the standby may only ever hold
 * one of them at a final path), a poller checking that while processes are being killed, process
 * memory (RSS from /proc), and a snapshot of a whole directory area to prove nothing was written
 * outside the standby root.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { lstat, readdir, readFile, readlink, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isStateDir, TEMP_PREFIX } from './e2e.js';

/** `npm run test:faults -- --long` sets this: more kill points, more iterations. */
export const LONG = process.env['WARMSYNC_FAULT_LONG'] === '1';

/** WARMSYNC_FAULT_SEED replays a run; otherwise a fresh seed, printed so a failure can be replayed. */
export function faultSeed(suite: string): number {
  const given = process.env['WARMSYNC_FAULT_SEED'];
  const seed = given !== undefined && given !== '' ? Number(given) >>> 0 : randomBytes(4).readUInt32BE(0);
  process.stdout.write(`# ${suite}: WARMSYNC_FAULT_SEED=${seed}${LONG ? ' (long mode)' : ''}\n`);
  return seed;
}

/** The seeded PRNG the benchmarks use: the same seed gives the same kill points and the same trees. */
export { Rng } from '../../benchmarks/corpus.js';

/** The unit in which a write in progress becomes visible to readers. */
const PAGE_BYTES = 4096;

/** Names of Versions.writeAtomic's temporary files. */
const WRITER_TEMP = '.writer-';

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Every content each source path ever had (sha256), recorded *before* it is written. A regular file
 * at a final path on the standby whose content is not among its path's versions is a torn,
 * partial or foreign file: the invariant this suite exists to check.
 */
export class Versions {
  private readonly byPath = new Map<string, Set<string>>();
  writes = 0;

  record(rel: string, content: Buffer): void {
    let set = this.byPath.get(rel);
    if (set === undefined) this.byPath.set(rel, (set = new Set()));
    set.add(sha256(content));
  }

  has(rel: string, digest: string): boolean {
    return this.byPath.get(rel)?.has(digest) ?? false;
  }

  /**
   * Writes `content` in place (non-atomically). Readers can see the file empty (the truncation)
   * and, while the write is under way, any page-sized prefix of it: the kernel grows the size a
   * page at a time and sets the mtime before copying, so such a state is a real state of the
   * source that no stat check can tell from a finished one. All of them are recorded as versions.
   */
  async writeInPlace(root: string, rel: string, content: Buffer): Promise<void> {
    for (let end = 0; end < content.length; end += PAGE_BYTES) this.record(rel, content.subarray(0, end));
    this.record(rel, content);
    this.writes++;
    await writeFile(join(root, rel), content);
  }

  /** Writes `content` atomically (temp + rename), as most writers of large files do. */
  async writeAtomic(root: string, rel: string, content: Buffer): Promise<void> {
    this.record(rel, content);
    this.writes++;
    const abs = join(root, rel);
    const temp = join(dirname(abs), `${WRITER_TEMP}${randomBytes(6).toString('hex')}`);
    await writeFile(temp, content);
    await rename(temp, abs);
  }
}

export interface TreeCheck { files: number; checks: number }

/**
 * Checks the standby's final paths again and again while faults are injected: every regular file
 * (outside the state dir, temp files aside) must hold one of its path's recorded versions. Files are
 * re-hashed only when their inode, size, mtime or ctime moved. Violations are collected, not thrown
 * (the poller runs in the background); `stop()` returns the tally and fails on any violation.
 * A test that fails before `stop()` leaves it running: `haltPollers()` (in an `after` hook) ends
 * every poller still running, so the test file's process can exit.
 */
const runningPollers = new Set<StandbyPoller>();

export async function haltPollers(): Promise<void> {
  await Promise.all([...runningPollers].map((p) => p.halt()));
}

export class StandbyPoller {
  private readonly seen = new Map<string, string>();
  private readonly violations: string[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;
  checks = 0;

  constructor(private readonly root: string, private readonly versions: Versions, private readonly intervalMs = 30) {
    this.loop = this.run();
    runningPollers.add(this);
  }

  /** Ends the background loop without judging what it saw. */
  async halt(): Promise<void> {
    this.stopped = true;
    runningPollers.delete(this);
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.checkOnce();
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  /** One pass over the tree; also usable on its own. */
  async checkOnce(): Promise<number> {
    let files = 0;
    const visit = async (dir: string, prefix: string): Promise<void> => {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const name of names) {
        const rel = prefix === '' ? name : `${prefix}/${name}`;
        // A writer's own temp file is not a tracked path: it passes through prefixes while being written.
        if (isStateDir(rel) || name.startsWith(TEMP_PREFIX) || name.startsWith(WRITER_TEMP)) continue;
        const abs = join(dir, name);
        const st = await lstat(abs).catch(() => null);
        if (st === null) continue;
        if (st.isDirectory()) {
          await visit(abs, rel);
          continue;
        }
        if (!st.isFile()) continue;
        files++;
        const key = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
        if (this.seen.get(rel) === key) continue;
        const content = await readFile(abs).catch(() => null);
        if (content === null) continue; // renamed over or removed between lstat and read
        const again = await lstat(abs).catch(() => null);
        // Only judge bytes that were at this path the whole time (a rename can land mid-read).
        if (again === null || again.ino !== st.ino || again.ctimeMs !== st.ctimeMs) continue;
        if (!this.versions.has(rel, sha256(content))) {
          this.violations.push(`${rel}: ${content.length} bytes at a final path, not a version the test wrote (sha256 ${sha256(content).slice(0, 16)})`);
        }
        this.seen.set(rel, key);
      }
    };
    await visit(this.root, '');
    this.checks++;
    return files;
  }

  async stop(): Promise<number> {
    await this.halt();
    await this.checkOnce();
    assert.deepEqual(this.violations.slice(0, 20), [], `${this.violations.length} partial or unverified file(s) seen at final paths`);
    return this.checks;
  }
}

/** Resident set size of a process in bytes (Linux /proc), or null when it has exited. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Samples the RSS of some processes every `intervalMs` until stopped; keeps the peak per name. */
export class RssSampler {
  readonly peak = new Map<string, number>();
  readonly samples = new Map<string, number[]>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pids: () => Record<string, number | undefined>, intervalMs = 100) {
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    for (const [name, pid] of Object.entries(this.pids())) {
      if (pid === undefined) continue;
      const rss = rssBytes(pid);
      if (rss === null) continue;
      this.peak.set(name, Math.max(this.peak.get(name) ?? 0, rss));
      const list = this.samples.get(name) ?? [];
      list.push(rss);
      this.samples.set(name, list);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export const MiB = 1 << 20;

/**
 * Every path below `dir` with its kind, size, mode and content hash (symlinks: target), skipping
 * `skip(rel)`: taken before and after an attack, two equal snapshots prove nothing was written.
 */
export async function snapshotArea(dir: string, skip: (rel: string) => boolean = () => false): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (abs: string, prefix: string): Promise<void> => {
    for (const name of (await readdir(abs)).sort()) {
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      if (skip(rel)) continue;
      const path = join(abs, name);
      const st = await lstat(path);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        await visit(path, rel);
      } else if (st.isSymbolicLink()) {
        out[rel] = `symlink ${await readlink(path)}`;
      } else {
        out[rel] = `file ${st.size} ${(st.mode & 0o7777).toString(8)} ${st.isFile() ? sha256(await readFile(path)) : 'special'}`;
      }
    }
  };
  await visit(dir, '');
  return out;
}

/**
 * Creates `depth` nested directories named `segment` below `root` and a file `leaf` in the deepest,
 * one relative step at a time (chdir), so the whole path may pass PATH_MAX. Returns the file's
 * relative path. Remove such a tree with removeDeep: Node's fs.rm goes by whole paths and fails.
 */
export function makeDeepTree(root: string, depth: number, segment: string, leaf: string, content: string): string {
  const cwd = process.cwd();
  try {
    process.chdir(root);
    for (let i = 0; i < depth; i++) {
      mkdirSync(segment);
      process.chdir(segment);
    }
    writeFileSync(leaf, content);
  } finally {
    process.chdir(cwd);
  }
  return `${`${segment}/`.repeat(depth)}${leaf}`;
}

/**
 * Removes `dir` and everything below it one relative step at a time (chdir), so trees deeper than
 * PATH_MAX go too (Node's fs.rm goes by whole paths and fails; GNU rm -rf takes seconds on them).
 */
export function removeDeep(dir: string): void {
  const cwd = process.cwd();
  const emptyHere = (): void => {
    for (const d of readdirSync('.', { withFileTypes: true })) {
      if (d.isDirectory()) {
        process.chdir(d.name);
        emptyHere();
        process.chdir('..');
        rmdirSync(d.name);
      } else {
        unlinkSync(d.name);
      }
    }
  };
  try {
    process.chdir(dir);
    emptyHere();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  } finally {
    process.chdir(cwd);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** The process's state letter from /proc (T: stopped), or null once it is gone. */
function procState(pid: number): string | null {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * Waits until `child` stops itself at a WARMSYNC_FAULT_STOP step (src/faultpoint.ts), then SIGKILLs
 * it and waits for its exit. Fails if it exits first or does not get there within 120 s: the step
 * must be one the process reaches.
 */
export async function killWhenStopped(child: ChildProcess, exited: Promise<unknown>, what: string, output: () => string): Promise<void> {
  const pid = child.pid as number;
  let ended = false;
  void exited.then(() => (ended = true));
  const deadline = Date.now() + 120_000;
  while (procState(pid) !== 'T') {
    assert.ok(!ended, `exited before ${what}:\n${output()}`);
    assert.ok(Date.now() < deadline, `did not reach ${what} within 120 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
  process.kill(pid, 'SIGKILL');
  await exited;
}
