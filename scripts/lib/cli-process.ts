/**
 * Drives the real bin/warmsync as a user would: child processes, real sockets on 127.0.0.1,
 * real temp dirs. Every process started here is killed in `stopAll()` (call it from after()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/warmsync.js', import.meta.url));

export interface RunResult { code: number | null; stdout: string; stderr: string }

/** Runs `warmsync ...args` to completion (bounded by timeoutMs). */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  /** SIGTERM, then waits for exit; returns the exit code. */
  stop(): Promise<number | null>;
}

const live = new Set<ChildProcess>();

/** Starts `warmsync receiver` and waits for its "listening on" line. */
export function startReceiverProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ReceiverProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'receiver', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    const exited = new Promise<number | null>((r) => child.on('close', (code) => {
      live.delete(child);
      r(code);
    }));
    const timer = setTimeout(() => reject(new Error(`receiver did not start within 20 s\nstderr: ${stderr}`)), 20_000);
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (ws:\/\/\S+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1] as string, child, stderr: () => stderr,
          stop: async () => {
            child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`receiver exited with ${code} before listening\nstderr: ${stderr}`));
    });
  });
}

export function stopAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
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
