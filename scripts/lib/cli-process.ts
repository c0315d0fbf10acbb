/**
 * Drives the real bin/warmsync as a user would: child processes, real sockets on 127.0.0.1,
 * real temp dirs. Every process started here is killed in `stopAll()` (call it from after()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Run as an executable, as the installed command is: its first line holds node's flags. */
export const BIN = fileURLToPath(new URL('../../bin/warmsync.js', import.meta.url));

export interface RunResult { code: number | null; stdout: string; stderr: string }

/** Runs `warmsync ...args` to completion (bounded by timeoutMs). */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`warmsync ${args.join(' ')} did not finish within ${options.timeoutMs ?? 60_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ReceiverProcess {
  readonly url: string;
  readonly child: ChildProcess;
  stderr(): string;
  /** `signal` (SIGTERM by default), then waits for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const live = new Set<ChildProcess>();

/** A `warmsync` child process tracked for `stopAll()`, with its output collected as it arrives. */
interface Tracked {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Settles with the exit code (null when killed by a signal) once the process has exited. */
  readonly exited: Promise<number | null>;
  /** Calls `listener` after each chunk of output (stdout or stderr). */
  onOutput(listener: () => void): void;
}

/**
 * A command prefix that runs warmsync in a prepared environment (a namespace, say): bin/warmsync.js
 * and its arguments are appended. It must exec them, so that the pid signalled is warmsync's.
 */
export type Launcher = readonly string[];

function spawnTracked(args: string[], env: NodeJS.ProcessEnv, launcher: Launcher = []): Tracked {
  const argv = [...launcher, BIN, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  const listeners: Array<() => void> = [];
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const l of listeners) l();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const l of listeners) l();
  });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => {
    live.delete(child);
    r(code);
  }));
  return { child, stdout: () => stdout, stderr: () => stderr, exited, onOutput: (l) => listeners.push(l) };
}

/** Starts `warmsync receiver` and waits for its "listening on" line. */
export function startReceiverProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ReceiverProcess> {
  return new Promise((resolve, reject) => {
    const p = spawnTracked(['receiver', ...args], env);
    const timer = setTimeout(() => reject(new Error(`receiver did not start within 20 s\nstderr: ${p.stderr()}`)), 20_000);
    let started = false;
    p.onOutput(() => {
      const m = /listening on (wss?:\/\/\S+)/.exec(p.stdout());
      if (m === null || started) return;
      started = true;
      clearTimeout(timer);
      resolve({
        url: m[1] as string, child: p.child, stderr: p.stderr,
        stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
          p.child.kill(signal);
          return p.exited;
        },
      });
    });
    void p.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`receiver exited with ${code} before listening\nstderr: ${p.stderr()}`));
    });
  });
}

/** A long-running `warmsync agent` (without --once). */
export interface AgentProcess {
  readonly child: ChildProcess;
  stderr(): string;
  /** Exit code once the agent has exited (null when a signal killed it). */
  readonly exited: Promise<number | null>;
  /**
   * Waits until stderr, from character `from` on, matches `pattern`; returns the match. Rejects
   * after `timeoutMs` or when the agent exits first.
   */
  waitForLog(pattern: RegExp, timeoutMs: number, from?: number): Promise<RegExpExecArray>;
  /** Sends `signal` and waits (up to `timeoutMs`) for the exit; returns the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

/** Starts `warmsync agent ...args` (pass no --once: it keeps running until stopped). */
export function startAgentProcess(args: string[], env: NodeJS.ProcessEnv = {}, launcher: Launcher = []): AgentProcess {
  const p = spawnTracked(['agent', ...args], env, launcher);
  let exitCode: number | null | undefined;
  void p.exited.then((code) => {
    exitCode = code;
  });
  const waitForLog = (pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    let done = false;
    const check = (): void => {
      if (done) return;
      const m = pattern.exec(p.stderr().slice(from));
      if (m !== null) {
        done = true;
        clearTimeout(timer);
        resolve(m);
      } else if (exitCode !== undefined) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`agent exited with ${exitCode} before logging ${pattern}\nstderr: ${p.stderr()}`));
      }
    };
    const timer = setTimeout(() => {
      done = true;
      reject(new Error(`agent did not log ${pattern} within ${timeoutMs} ms\nstderr: ${p.stderr()}`));
    }, timeoutMs);
    p.onOutput(check);
    void p.exited.then(check);
    check();
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> => {
    if (exitCode !== undefined) return exitCode;
    p.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`agent did not exit within ${timeoutMs} ms of ${signal}\nstderr: ${p.stderr()}`)), timeoutMs);
    });
    try {
      return await Promise.race([p.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  return { child: p.child, stderr: p.stderr, exited: p.exited, waitForLog, stop };
}

/**
 * SIGKILLs every process started here. The returned promise settles once they have all exited
 * (bounded: 10 s), so that a temp dir removed next is not written to by a dying process.
 */
export function stopAll(): Promise<void> {
  const children = [...live];
  live.clear();
  const exits = children.map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('close', () => resolve());
    child.kill('SIGKILL');
  }));
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    void Promise.all(exits).then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export interface Workspace { dir: string; src: string; dst: string; tokenFile: string; token: string; cleanup(): Promise<void> }

/** A temp dir with src/, dst/ and a token file (mode 600). */
export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'warmsync-e2e-'));
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(src);
  await mkdir(dst);
  const token = 'e2e-token-0123456789abcdef';
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, token + '\n', { mode: 0o600 });
  return { dir, src, dst, tokenFile, token, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
