// Faults: SAFE must never lie (DESIGN.md invariant 4). A live agent replicates a source tree while
// seeded random workloads hit it the ways a restore, an upload storm or an operator do: bursts of
// new directory trees, deep trees moved in from outside, `rm -rf d && cp -a backup d`, renames of
// whole trees, rm -rf and re-create, edits, and a burst past the kernel's inotify queue
// (fs.inotify.max_queued_events) made while the agent is stopped with SIGSTOP, so the queue
// overflows. All along a checker reads the watermark W the receiver records (what `status` prints)
// many times a second and, for every W it sees, checks the promise itself: every source file whose
// last change happened before W is on the standby with the same content. A file's last change is
// its ctime, or the ctime of a directory above it if later (a tree moved in keeps its files' old
// ctimes; the move stamps the moved directory), plus the kernel's coarse-clock tick (ctime can read
// a few ms before the change). ctime, not mtime: `cp -a` and `tar` keep old mtimes. At the end the
// standby must hold everything, and the checker must have judged W many times.
// The quick mode runs one seed in `npm test`; `npm run test:faults -- --long` runs 20, the first
// ending with a restore of 60,000 files (`rm -rf d && cp -a backup d`), and prints how long after
// the last workload W passed its end (the moment the agent vouches for all of it). A second test
// runs the same with one agent feeding two standbys (issue 21), a checker on each, the second
// standby's receiver SIGKILLed at a drawn step and restarted later: each W keeps the promise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import {
  MANIFEST, closeStandbys, exists, isStateDir, openStandby, openStandbyOf, restartReceiver, startLiveAgent, waitFor, waitForConvergence, type AgentProcess, type Standby,
} from '../helpers/e2e.js';
import { LONG, Rng, faultSeed } from '../helpers/faults.js';

after(closeStandbys);

/** How far a ctime may read before the change it stamps: the kernel's coarse clock ticks at HZ >= 100. */
const CTIME_TICK_NS = 10_000_000n;
const MAX_QUEUED_EVENTS = Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'));

/**
 * Reads W where `status` reads it (the receiver's manifest) every few ms and checks each new W
 * against the source and the standby, in the background until stop().
 */
class WatermarkChecker {
  readonly lies: string[] = [];
  /** Distinct watermarks judged, and files compared (a file is compared again only once it changed). */
  watermarks = 0;
  comparisons = 0;
  highest = 0;
  private stopped = false;
  private readonly loop: Promise<void>;
  /** Source path -> the state of it already found on the standby. */
  private readonly verified = new Map<string, string>();
  private readonly db: Database.Database;

  /**
   * `checkers`: how many run in this process. Each check reads synchronously, and each checker
   * pauses long enough after it that all of them together hold the event loop half the time, as
   * one does alone: two at half each left the tree comparison's asynchronous reads no time at all
   * (it had not finished 6 minutes after both standbys' W had passed the end of the workloads).
   */
  constructor(private readonly src: string, private readonly dst: string, private readonly checkers = 1) {
    this.db = new Database(join(dst, MANIFEST), { readonly: true, fileMustExist: true });
    this.db.pragma('busy_timeout = 5000');
    this.loop = this.run();
  }

  private watermark(): number | null {
    const row = this.db.prepare("SELECT value FROM state WHERE key = 'watermark'").get() as { value: number } | undefined;
    return row?.value ?? null;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const w = this.watermark();
      let took = 0;
      if (w !== null && w > this.highest) {
        this.highest = w;
        this.watermarks++;
        const started = Date.now();
        this.check(w);
        took = Date.now() - started;
      }
      // A check reads the whole source synchronously (over a second at 95,000 files) and W moves
      // every 200 ms: pausing as long as the checks took leaves the test's own waits half the time.
      await sleep(Math.max(20, took * (2 * this.checkers - 1)));
    }
  }

  /** Every file changed before `w` must be on the standby, byte for byte. */
  private check(w: number): void {
    const limit = BigInt(w) * 1_000_000n;
    const visit = (rel: string, dirChanged: bigint): void => {
      let names: string[];
      try {
        names = readdirSync(join(this.src, rel));
      } catch {
        return; // removed or replaced by a workload meanwhile
      }
      for (const name of names) {
        const path = rel === '' ? name : `${rel}/${name}`;
        if (isStateDir(path)) continue;
        const abs = join(this.src, path);
        let st;
        try {
          st = lstatSync(abs, { bigint: true });
        } catch {
          continue;
        }
        const changed = st.ctimeNs > dirChanged ? st.ctimeNs : dirChanged;
        if (st.isDirectory()) {
          visit(path, changed);
          continue;
        }
        if (!st.isFile() || changed + CTIME_TICK_NS >= limit) continue;
        const key = `${st.ino}:${st.ctimeNs}`;
        if (this.verified.get(path) === key) continue;
        this.compare(path, abs, key, w);
      }
    };
    visit('', 0n);
  }

  private compare(path: string, abs: string, key: string, w: number): void {
    let source: Buffer;
    try {
      source = readFileSync(abs);
    } catch {
      return;
    }
    // Judge only content that stayed put while it was read.
    try {
      const again = lstatSync(abs, { bigint: true });
      if (`${again.ino}:${again.ctimeNs}` !== key) return;
    } catch {
      return;
    }
    this.comparisons++;
    let standby: Buffer | null = null;
    try {
      standby = readFileSync(join(this.dst, path));
    } catch {
      standby = null;
    }
    if (standby !== null && standby.equals(source)) {
      this.verified.set(path, key);
      return;
    }
    const why = standby === null ? 'missing on the standby' : `standby holds ${standby.length} other bytes`;
    if (this.lies.length < 50) this.lies.push(`W ${new Date(w).toISOString()}: ${path} (changed before W) ${why}`);
    else this.lies.length++;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.db.close();
  }
}

/** The workloads: each changes the source one way and returns when its writes are done. */
class Workloads {
  private next = 0;
  readonly dirs: string[] = [];

  constructor(private readonly rng: Rng, private readonly s: Standby, private readonly stash: string, private readonly agent: () => AgentProcess) {}

  private name(prefix: string): string {
    return `${prefix}-${this.next++}`;
  }

  /** Writes `files` small files in a tree of `dirs` new directories under `base` (absolute), up to 4 deep. */
  private writeTree(base: string, files: number, dirs: number): void {
    const made = [base];
    mkdirSync(base, { recursive: true });
    for (let d = 0; d < dirs; d++) {
      const parent = this.rng.pick(made);
      const dir = join(parent, `d${d}`);
      if (parent.split('/').length - base.split('/').length >= 4) continue;
      mkdirSync(dir);
      made.push(dir);
    }
    for (let f = 0; f < files; f++) writeFileSync(join(this.rng.pick(made), `f${f}`), this.rng.bytes(this.rng.int(1, 2048)));
  }

  /** mkdir -p and files, as an upload storm into new filestore directories. */
  burst(files: number): void {
    const rel = this.name('burst');
    this.writeTree(join(this.s.src, rel), files, Math.ceil(files / 50));
    this.dirs.push(rel);
  }

  /** A deep tree built outside the source, then moved in with one rename. */
  moveIn(files: number): void {
    const rel = this.name('moved');
    this.writeTree(join(this.stash, rel), files, Math.ceil(files / 40));
    renameSync(join(this.stash, rel), join(this.s.src, rel));
    this.dirs.push(rel);
  }

  /** A restore: the old directory removed, then `cp -a` of a backup (old mtimes) in its place. */
  restore(files: number): void {
    const backup = join(this.stash, this.name('backup'));
    this.writeTree(backup, files, Math.ceil(files / 60));
    execFileSync('touch', ['-d', '2020-01-01', ...readdirSync(backup).map((n) => join(backup, n))]);
    const rel = this.dirs.length > 0 ? this.rng.pick(this.dirs) : this.name('restored');
    rmSync(join(this.s.src, rel), { recursive: true, force: true });
    execFileSync('cp', ['-a', backup, join(this.s.src, rel)]);
    if (!this.dirs.includes(rel)) this.dirs.push(rel);
  }

  /** A whole tree renamed within the source. */
  renameTree(): void {
    if (this.dirs.length === 0) return this.burst(200);
    const from = this.rng.pick(this.dirs);
    const to = this.name('renamed');
    renameSync(join(this.s.src, from), join(this.s.src, to));
    this.dirs.splice(this.dirs.indexOf(from), 1, to);
  }

  /** rm -rf of a tree, then the same names written again at once. */
  recreate(files: number): void {
    const rel = this.dirs.length > 0 ? this.rng.pick(this.dirs) : this.name('recreated');
    rmSync(join(this.s.src, rel), { recursive: true, force: true });
    this.writeTree(join(this.s.src, rel), files, Math.ceil(files / 50));
    if (!this.dirs.includes(rel)) this.dirs.push(rel);
  }

  /** Rewrites of files already synced. */
  edit(count: number): void {
    const files: string[] = [];
    const visit = (rel: string): void => {
      for (const d of readdirSync(join(this.s.src, rel), { withFileTypes: true })) {
        const path = rel === '' ? d.name : `${rel}/${d.name}`;
        if (isStateDir(path)) continue;
        if (d.isDirectory()) visit(path);
        else if (d.isFile()) files.push(path);
      }
    };
    visit('');
    for (let i = 0; i < count && files.length > 0; i++) writeFileSync(join(this.s.src, this.rng.pick(files)), this.rng.bytes(this.rng.int(0, 4096)));
  }

  /**
   * More events than the kernel queues while the agent cannot read them (SIGSTOP): the queue
   * overflows and events are lost; the agent must notice and hold W until a rescan covers them.
   * The files go into a directory the agent already watches (a new one would hold a single event,
   * its creation, and be scanned whole), and the overflow must be seen: WATCH_OVERFLOW logged.
   */
  async overflow(): Promise<void> {
    const agent = this.agent();
    const rel = this.name('flood');
    mkdirSync(join(this.s.src, rel));
    await waitFor(`${rel} on the standby`, () => exists(join(this.s.dst, rel)), 30_000);
    // On the standby is not yet watched: the new directory's own mark can send its mkdir before its
    // watch is in place (the subtree mark follows once it is, and W waits for it). Files written
    // into it before that raise no event, so nothing would overflow: wait for the watch itself, in
    // the kernel's list of the agent's inotify watches.
    const ino = lstatSync(join(this.s.src, rel)).ino;
    await waitFor(`${rel} watched by the agent`, () => inotifyWatchedInodes(agent.child.pid).has(ino), 30_000);
    const from = agent.stderr().length;
    agent.child.kill('SIGSTOP');
    try {
      for (let f = 0; f < MAX_QUEUED_EVENTS + 4000; f++) writeFileSync(join(this.s.src, rel, `f${f}`), this.rng.bytes(this.rng.int(1, 512)));
      await sleep(this.rng.int(200, 1500));
    } finally {
      agent.child.kill('SIGCONT');
    }
    this.dirs.push(rel);
    await agent.waitForLog(/"code":"WATCH_OVERFLOW"/, 30_000, from);
  }
}

/** The inodes process `pid`'s inotify instances watch, as the kernel lists them (/proc/PID/fdinfo). */
function inotifyWatchedInodes(pid: number | undefined): Set<number> {
  const found = new Set<number>();
  if (pid === undefined) return found;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    for (const m of info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+) /gm)) found.add(parseInt(m[1] as string, 16));
  }
  return found;
}

interface SeedResult { watermarks: number; comparisons: number }

/**
 * One seeded run: a live agent feeding `standbys` standbys of one source, a checker on each, the
 * drawn workloads (with one overflow), and with `bounce` the last standby's receiver SIGKILLed at
 * a drawn step and restarted a step or more later (its W must hold while it is down, and never
 * lie); with `largeRestore` it ends with a restore of 60,000 files.
 */
async function runSeed(seed: number, standbys: number, bounce: boolean, largeRestore: boolean): Promise<SeedResult> {
  const rng = new Rng(seed);
  const s = await openStandby();
  const all = [s];
  while (all.length < standbys) all.push(await openStandbyOf(s));
  const stash = join(s.dir, 'stash');
  mkdirSync(stash);
  mkdirSync(join(s.src, 'etc'));
  writeFileSync(join(s.src, 'etc/system.yaml'), 'shared: {}\n');
  // --max-delete 100: restores and re-creates delete whole trees on purpose; the guard is tested elsewhere.
  const agent = startLiveAgent(all, ['--max-delete', '100']);
  const checkers: WatermarkChecker[] = [];
  const context = (): string => `--- W judged last: ${checkers.map((c) => new Date(c.highest).toISOString()).join(', ')}\n--- agent stderr (tail):\n${agent.stderr().slice(-6000)}\n--- receiver stderr (tail):\n${all.map((each) => each.receiver.stderr().slice(-3000)).join('\n---\n')}`;
  for (const each of all) await waitForConvergence(each, { what: `the initial sync of ${each.url}`, timeoutMs: 60_000, context });
  await agent.waitForLog(/watching /, 30_000);
  for (const each of all) checkers.push(new WatermarkChecker(each.src, each.dst, all.length));
  let convergedMs = -1;
  const work = new Workloads(rng, s, stash, () => agent);
  const steps = LONG ? 12 : 7;
  const size = (): number => rng.int(300, LONG ? 6000 : 2500);
  const plan = Array.from({ length: steps }, () => rng.pick(['burst', 'moveIn', 'restore', 'renameTree', 'recreate', 'edit'] as const)) as string[];
  // Every seed has one overflow, at a drawn step; the long run's first seed ends with a large restore.
  plan.splice(rng.int(0, plan.length), 0, 'overflow');
  if (largeRestore) plan.push('restore60k');
  if (bounce) {
    const down = rng.int(0, plan.length - 1);
    plan.splice(down, 0, 'kill');
    plan.splice(rng.int(down + 2, plan.length), 0, 'restart');
  }
  const bounced = all[all.length - 1] as Standby;
  try {
    for (const step of plan) {
      if (step === 'overflow') await work.overflow();
      else if (step === 'kill') {
        const killed = new Promise((r) => bounced.receiver.child.once('close', r));
        bounced.receiver.child.kill('SIGKILL');
        await killed;
      } else if (step === 'restart') await restartReceiver(bounced);
      else if (step === 'burst') work.burst(size());
      else if (step === 'moveIn') work.moveIn(size());
      else if (step === 'restore') work.restore(size());
      else if (step === 'restore60k') work.restore(60_000);
      else if (step === 'renameTree') work.renameTree();
      else if (step === 'recreate') work.recreate(size());
      else work.edit(rng.int(10, 200));
      await sleep(rng.int(0, 800));
    }
    const quiet = Date.now();
    // W passes the end of the workloads by itself, and the checker judges it there: the agent then
    // vouches for every change, so that moment is when the standby caught up. Slow is allowed
    // here, wrong is not (the checker reads the whole source at every W, competing for the 2 cores).
    const deadline = Date.now() + 360_000;
    while (checkers.some((c) => c.highest <= quiet) && Date.now() < deadline) await sleep(50);
    for (const c of checkers) assert.ok(c.highest > quiet, `W did not pass the end of the workloads within 360 s (W ${c.highest}, end ${quiet})\n${context()}`);
    convergedMs = Date.now() - quiet;
    // And the standby holds exactly the source (comparing two trees of 60,000 files takes a while).
    for (const each of all) await waitForConvergence(each, { what: `${each.url} after the workloads (seed ${seed}: ${plan.join(', ')})`, timeoutMs: 180_000, context });
    assert.equal(agent.child.exitCode, null, `the agent exited\n${context()}`);
    assert.equal(await agent.stop(), 0);
  } finally {
    for (const c of checkers) await c.stop();
    agent.child.kill('SIGCONT');
  }
  const result = { watermarks: 0, comparisons: 0 };
  for (const [i, c] of checkers.entries()) {
    process.stdout.write(`# watermark: seed ${seed}, standby ${i + 1} of ${standbys}: ${plan.join(', ')}: ${c.watermarks} watermarks judged, ${c.comparisons} files compared, ${c.lies.length} lies; W passed the last workload's end ${convergedMs} ms after it (all standbys)\n`);
    assert.deepEqual(c.lies.slice(0, 20), [], `seed ${seed}, standby ${i + 1}: ${c.lies.length} file(s) missing below a reported W\n${context()}`);
    assert.ok(c.watermarks >= 10, `seed ${seed}, standby ${i + 1}: only ${c.watermarks} watermarks judged`);
    result.watermarks += c.watermarks;
    result.comparisons += c.comparisons;
  }
  return result;
}

test('no watermark W ever passes a change the standby lacks, under seeded bursts, moves, restores and a queue overflow', { timeout: LONG ? 7_200_000 : 720_000 }, async () => {
  const seeds = LONG ? 20 : 1;
  const first = faultSeed('watermark');
  let totalWatermarks = 0;
  let totalComparisons = 0;
  for (let i = 0; i < seeds; i++) {
    const { watermarks, comparisons } = await runSeed((first + i) >>> 0, 1, false, LONG && i === 0);
    totalWatermarks += watermarks;
    totalComparisons += comparisons;
  }
  process.stdout.write(`# watermark: ${seeds} seed(s) from ${first}: ${totalWatermarks} watermarks judged, ${totalComparisons} files compared, 0 lies\n`);
});

test('two standbys, one SIGKILLed and restarted mid-workload: neither W ever passes a change its standby lacks', { timeout: LONG ? 3_600_000 : 720_000 }, async () => {
  const seeds = LONG ? 5 : 1;
  const first = faultSeed('watermark, two standbys');
  for (let i = 0; i < seeds; i++) await runSeed((first + i) >>> 0, 2, true, false);
});
