/**
 * Child processes for the benchmarks: every process is spawned in its own process group and
 * tracked, so `killAll()` (called by the runner in `finally` and on SIGINT/SIGTERM) ends it and
 * anything it forked. Timed runs go through `/usr/bin/time -v` when it exists (peak RSS from the
 * kernel's ru_maxrss), otherwise /proc/<pid>/status VmHWM is polled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const TIME_BIN = '/usr/bin/time';
export const HAVE_TIME = existsSync(TIME_BIN);

const tracked = new Set<ChildProcess>();

export interface Measured {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallMs: number;
  /** Date.now() at spawn and at exit, to line up with timestamps in the child's log. */
  readonly startedAt: number;
  readonly endedAt: number;
  /** Peak resident set of the command (and, through time -v, its largest reaped child), KiB. */
  readonly peakRssKiB: number | null;
  /** User + system CPU of the command and its reaped children (time -v), ms; null without /usr/bin/time. */
  readonly cpuMs: number | null;
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Spawns `cmd` in a new process group, tracked until it exits. */
export function spawnTracked(cmd: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd, args, {
    cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  tracked.add(child);
  child.on('close', () => tracked.delete(child));
  child.on('error', () => tracked.delete(child));
  return child;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  }
}

/** Waits for `child` to exit, at most `timeoutMs`; resolves false on timeout. */
export function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM to the process (not its group, so it can shut down cleanly), then SIGKILL to the group. */
export async function stopProcess(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, graceMs))) {
    killGroup(child, 'SIGKILL');
    await waitExit(child, 5_000);
  }
}

/** Kills every tracked process group. Safe to call more than once. */
export async function killAll(): Promise<void> {
  const children = [...tracked];
  for (const child of children) killGroup(child, 'SIGKILL');
  await Promise.all(children.map((c) => waitExit(c, 5_000)));
  tracked.clear();
}

/** VmRSS (resident set now) and VmHWM (its peak) of a live process, KiB, or null when unreadable. */
export function memoryKiB(pid: number | undefined): { rssKiB: number; hwmKiB: number } | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return rss && hwm ? { rssKiB: Number(rss[1]), hwmKiB: Number(hwm[1]) } : null;
  } catch {
    return null;
  }
}

/** VmHWM (peak resident set) of a live process, KiB, or null when it cannot be read. */
export function vmHwmKiB(pid: number | undefined): number | null {
  return memoryKiB(pid)?.hwmKiB ?? null;
}

/**
 * Resets a process's VmHWM to its current RSS (writes 5 to /proc/PID/clear_refs, Linux >= 4.0), so
 * that a later VmHWM is the peak of what happened in between. False when the kernel refuses.
 */
export function resetPeakRss(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Two fields of /proc/PID/stat summed (numbered as in proc(5)), or null when unreadable. */
function statFieldsSum(pid: number | undefined, first: number, second: number): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)" start at field 3 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const sum = Number(fields[first - 3]) + Number(fields[second - 3]);
    return Number.isFinite(sum) ? sum : null;
  } catch {
    return null;
  }
}

/** User + system CPU a live process has used, in clock ticks (USER_HZ, 100 per second on Linux), or null: utime + stime. */
export function cpuTicks(pid: number | undefined): number | null {
  return statFieldsSum(pid, 14, 15);
}
export const TICKS_PER_S = 100;

/**
 * CPU (user + system, clock ticks) of the children `pid` has reaped, and of theirs: cutime + cstime.
 * An rsync daemon forks a process per connection (which forks again) and reaps it when it ends, so the
 * growth of this over a run is what the daemon's side of that run cost. Null when unreadable.
 */
export function reapedChildCpuTicks(pid: number | undefined): number | null {
  return statFieldsSum(pid, 16, 17);
}

/** The live descendants of `pid` (children, theirs, ...), from /proc/PID/task/TID/children. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0 && out.length < 1000) {
    const p = stack.pop() as number;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch { /* gone meanwhile */ }
      for (const c of children.split(' ')) {
        const n = Number(c);
        if (c !== '' && Number.isInteger(n)) {
          out.push(n);
          stack.push(n);
        }
      }
    }
  }
  return out;
}

/** The inotify watches a live process holds: `inotify wd:` lines over /proc/PID/fdinfo/*, or null. */
export function inotifyWatches(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return null;
  }
  let watches = 0;
  for (const fd of fds) {
    try {
      watches += (readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8').match(/^inotify wd:/gm) ?? []).length;
    } catch { /* closed meanwhile */ }
  }
  return watches;
}

/** Collects a child's stdout and stderr as text. */
export function collect(child: ChildProcess): { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return { stdout: () => out, stderr: () => err };
}

/**
 * Runs `cmd args` to completion and times it (wall clock, spawn to exit). Killed (group-wide)
 * after `timeoutMs`, which rejects.
 */
export async function runMeasured(cmd: string, args: readonly string[], options: SpawnOptions & { timeoutMs: number }): Promise<Measured> {
  const scratch = HAVE_TIME ? await mkdtemp(join(tmpdir(), 'warmsync-bench-time-')) : null;
  const timeFile = scratch === null ? null : join(scratch, 'time.txt');
  try {
    const startedAt = Date.now();
    const t0 = performance.now();
    const child = timeFile === null
      ? spawnTracked(cmd, args, options)
      : spawnTracked(TIME_BIN, ['-v', '-o', timeFile, cmd, ...args], options);
    const output = collect(child);
    let polledKiB: number | null = null;
    const poll = timeFile === null
      ? setInterval(() => {
        const v = vmHwmKiB(child.pid);
        if (v !== null) polledKiB = Math.max(polledKiB ?? 0, v);
      }, 20)
      : null;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        killGroup(child, 'SIGKILL');
        reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${options.timeoutMs} ms\nstderr: ${output.stderr().slice(-2000)}`));
      }, options.timeoutMs);
    });
    try {
      const { code, signal } = await Promise.race([exit, timeout]);
      const wallMs = performance.now() - t0;
      const endedAt = Date.now();
      let peakRssKiB: number | null = polledKiB as number | null;
      let cpuMs: number | null = null;
      if (timeFile !== null) {
        const report = await readFile(timeFile, 'utf8').catch(() => '');
        const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(report);
        peakRssKiB = m ? Number(m[1]) : null;
        const user = /User time \(seconds\): ([\d.]+)/.exec(report);
        const system = /System time \(seconds\): ([\d.]+)/.exec(report);
        cpuMs = user && system ? Math.round((Number(user[1]) + Number(system[1])) * 1000) : null;
        // time -v reports the child's status as its own exit code: 128 + signal when killed.
      }
      return { code, signal, stdout: output.stdout(), stderr: output.stderr(), wallMs, startedAt, endedAt, peakRssKiB, cpuMs };
    } finally {
      clearTimeout(timer);
      if (poll !== null) clearInterval(poll);
    }
  } finally {
    if (scratch !== null) await rm(scratch, { recursive: true, force: true });
  }
}

/** Runs a command for its output only (set-up steps, version probes); bounded. */
export async function runQuiet(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnTracked(cmd, args);
  const output = collect(child);
  const done = await new Promise<number | null | 'timeout'>((resolve) => {
    const timer = setTimeout(() => {
      killGroup(child, 'SIGKILL');
      resolve('timeout');
    }, timeoutMs);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(127);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  if (done === 'timeout') return { code: null, stdout: output.stdout(), stderr: output.stderr() + `\n(killed after ${timeoutMs} ms)` };
  return { code: done, stdout: output.stdout(), stderr: output.stderr() };
}
