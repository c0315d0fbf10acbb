/**
 * What the e2e tests share: a standby (temp dirs + a real `warmsync receiver` on 127.0.0.1), the
 * agent run the way cron would run it, tree building and comparison, read-only looks into the
 * receiver's manifest, the live agent (the daemon), convergence and bounded waits. Call `closeStandbys()` from after(): it stops every
 * process and removes every temp dir opened here.
 */
import assert from 'node:assert/strict';
import { chmod, lstat, lutimes, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { OnceSummary } from '../../src/agent/agent.js';
import {
  runCli, startAgentProcess, startReceiverProcess, stopAll, workspace, type AgentProcess, type Launcher, type ReceiverProcess,
  type RunResult, type Workspace,
} from '../../scripts/lib/cli-process.js';
import { describeTreeDiff, readTree, type TreeItem } from './tree.js';

export { runCli, type AgentProcess, type RunResult, type OnceSummary };

/** The default state dir, inside each root (agent cache on the source, manifest on the standby). */
export const STATE_DIR = '.warmsync';
export const MANIFEST = join(STATE_DIR, 'manifest.sqlite');
/** Receiver temporary files (src/receiver/staging.ts, TEMP_PREFIX). */
export const TEMP_PREFIX = '.warmsync-tmp.';

export function isStateDir(rel: string): boolean {
  return rel === STATE_DIR || rel.startsWith(STATE_DIR + '/');
}

/** A workspace (src/, dst/, token file) with a receiver running on dst/. */
export interface Standby extends Workspace {
  receiver: ReceiverProcess;
  readonly url: string;
}

const opened: Workspace[] = [];

/** A fresh workspace whose directories are removed by closeStandbys(). */
export async function openWorkspace(): Promise<Workspace> {
  const ws = await workspace();
  opened.push(ws);
  return ws;
}

export function receiverArgs(ws: Workspace): string[] {
  return ['--root', ws.dst, '--listen', '127.0.0.1:0', '--token-file', ws.tokenFile];
}

/** A fresh workspace with `warmsync receiver` listening on 127.0.0.1 (a free port), `env` added to its environment. */
export async function openStandby(env: NodeJS.ProcessEnv = {}): Promise<Standby> {
  const ws = await openWorkspace();
  const receiver = await startReceiverProcess(receiverArgs(ws), env);
  return { ...ws, receiver, url: receiver.url };
}

/**
 * Another standby of `source`'s tree (a DR site beside a local standby): its own dst/ and receiver,
 * `source.src` as its source, and the same token, so one agent can feed both.
 */
export async function openStandbyOf(source: Workspace): Promise<Standby> {
  const own = await openWorkspace();
  const ws = { ...own, src: source.src, tokenFile: source.tokenFile, token: source.token };
  const receiver = await startReceiverProcess(receiverArgs(ws));
  return { ...ws, receiver, url: receiver.url };
}

/** `--connect URL` for each standby, in order (they all share the first one's source and token). */
function connectArgs(standbys: Standby | readonly Standby[]): string[] {
  return (Array.isArray(standbys) ? standbys as readonly Standby[] : [standbys as Standby]).flatMap((s) => ['--connect', s.url]);
}

function firstOf(standbys: Standby | readonly Standby[]): Standby {
  const first = Array.isArray(standbys) ? (standbys as readonly Standby[])[0] : standbys as Standby;
  assert.ok(first !== undefined, 'at least one standby');
  return first;
}

/**
 * Starts a new receiver on `s`'s root and on the same port as before (after the previous one was
 * killed, say), and makes it `s.receiver`: an agent keeps dialling the same URL.
 */
export async function restartReceiver(s: Standby): Promise<ReceiverProcess> {
  const port = new URL(s.url).port;
  s.receiver = await startReceiverProcess(receiverArgs(s).map((a) => (a === '127.0.0.1:0' ? `127.0.0.1:${port}` : a)));
  assert.equal(s.receiver.url, s.url, 'the receiver came back on another address');
  return s.receiver;
}

/** Stops every process started here (SIGKILL stragglers) and removes every workspace. */
export async function closeStandbys(): Promise<void> {
  await stopAll();
  await Promise.all(opened.splice(0).map((ws) => ws.cleanup()));
}

/** `warmsync agent --root SRC --connect URL... --token-file F --once --json ...extra` (one --connect per standby). */
export function agentArgs(standbys: Standby | readonly Standby[], extra: readonly string[] = []): string[] {
  const s = firstOf(standbys);
  return ['agent', '--root', s.src, ...connectArgs(standbys), '--token-file', s.tokenFile, '--once', '--json', ...extra];
}

export function runAgent(s: Standby | readonly Standby[], extra: readonly string[] = [], timeoutMs = 60_000): Promise<RunResult> {
  return runCli(agentArgs(s, extra), { timeoutMs });
}

/** Runs `agent --once --json`, asserts exit 0 and returns the parsed summary. */
export async function syncOnce(s: Standby, extra: readonly string[] = [], timeoutMs = 60_000): Promise<OnceSummary> {
  const r = await runAgent(s, extra, timeoutMs);
  assert.equal(r.code, 0, `agent exited ${r.code}\nstderr: ${r.stderr}\nreceiver: ${s.receiver.stderr().slice(-4000)}`);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as OnceSummary;
}

/**
 * `warmsync agent` without --once (the daemon), against `standbys` (one --connect each), started
 * through `launcher` if given, with `env` added to its environment; stop it with `stop()` or closeStandbys().
 */
export function startLiveAgent(standbys: Standby | readonly Standby[], extra: readonly string[] = [], launcher: Launcher = [], env: NodeJS.ProcessEnv = {}): AgentProcess {
  const s = firstOf(standbys);
  return startAgentProcess(['--root', s.src, ...connectArgs(standbys), '--token-file', s.tokenFile, ...extra], env, launcher);
}

/**
 * The fields of `status --json` the CLI contract guarantees (shared/DESIGN.md), plus the skew it
 * judged with and what the live agent last said of its change feed and of deletions it holds.
 */
export interface StatusJson {
  safe: boolean; reason: string; snapshotTime: number | null; watermark: number | null; recoveryTarget: number | null;
  tombstonesPending: number; skewMs: number; feedIncomplete: { since: number; reason: string } | null; deletionsHeld: number;
}

/** `warmsync status --root DST --json`, parsed (asserts exit 0). */
export async function statusJson(dst: string): Promise<StatusJson> {
  const r = await runCli(['status', '--root', dst, '--json'], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `status exited ${r.code}\nstderr: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}

/**
 * A failed command's stderr: its last line carries the error (`warmsync: CODE: message`) and no
 * line is a stack frame. Returns the last line.
 */
export function assertCleanFailure(r: RunResult, code: number, pattern: RegExp): string {
  assert.equal(r.code, code, `expected exit ${code}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^ {4}at /m, `stack trace on stderr:\n${r.stderr}`);
  const last = r.stderr.trim().split('\n').at(-1) ?? '';
  assert.match(last, /^warmsync: [A-Z_]+: /, `not a one-line error: ${JSON.stringify(r.stderr)}`);
  assert.match(last, pattern);
  return last;
}

// ---- trees ------------------------------------------------------------------------------------

export type TreeSpec = Record<string, string | Buffer | { readonly dir: true; readonly mode?: number }
  | { readonly symlink: string } | { readonly content: string | Buffer; readonly mode: number }>;

/**
 * Creates the paths of `spec` below `root` (parents as needed), in the spec's order. Modes are set
 * with chmod, so the umask does not change them.
 */
export async function buildTree(root: string, spec: TreeSpec): Promise<void> {
  for (const [rel, what] of Object.entries(spec)) {
    const abs = join(root, rel);
    await mkdir(dirname(abs), { recursive: true });
    if (typeof what === 'string' || Buffer.isBuffer(what)) {
      await writeFile(abs, what);
    } else if ('dir' in what) {
      await mkdir(abs, { recursive: true });
      await chmod(abs, what.mode ?? 0o755);
    } else if ('symlink' in what) {
      await symlink(what.symlink, abs);
    } else {
      await writeFile(abs, what.content);
      await chmod(abs, what.mode);
    }
  }
}

/**
 * Sets the mtime (and atime) of `abs` itself, never of a symlink's target, so that it reads back
 * as exactly `ms` whole milliseconds (aiming at the middle of the millisecond, as the receiver does).
 */
export async function setTime(abs: string, ms: number): Promise<void> {
  const t = (ms + 0.5) / 1000;
  await lutimes(abs, t, t);
}

/**
 * Gives every path below `root` (the state dir aside) a distinct mtime with a millisecond part,
 * well in the past: nothing is "racily clean" for the agent's cache, and an mtime that does not
 * survive to the millisecond shows. Directories are stamped after their contents.
 */
export async function settleTimes(root: string, baseMs = Date.parse('2025-03-14T15:09:26.535Z')): Promise<void> {
  let n = 0;
  async function visit(dir: string, prefix: string): Promise<void> {
    for (const name of (await readdir(dir)).sort()) {
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      if (isStateDir(rel)) continue;
      const abs = join(dir, name);
      if ((await lstat(abs)).isDirectory()) await visit(abs, rel);
      await setTime(abs, baseMs + 1_001 * n++ + (n % 7));
    }
  }
  await visit(root, '');
}

/** Every path below `root` except the state dir, for comparisons. */
export function readSynced(root: string, skip: (rel: string) => boolean = () => false): Promise<Record<string, TreeItem>> {
  return readTree(root, { skip: (rel) => isStateDir(rel) || skip(rel) });
}

/** The standby holds exactly the source (content, mode, mtime ms incl. directories, link targets). */
export async function assertSameTree(src: string, dst: string, options: { skipSrc?: (rel: string) => boolean; skipDst?: (rel: string) => boolean } = {}): Promise<void> {
  const [source, standby] = await Promise.all([readSynced(src, options.skipSrc), readSynced(dst, options.skipDst)]);
  assert.deepEqual(standby, source);
}

/** Relative paths of the receiver's temporary files below `root` (the state dir aside). */
export async function findTempFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  async function visit(dir: string, prefix: string): Promise<void> {
    for (const child of await readdir(dir, { withFileTypes: true })) {
      const rel = prefix === '' ? child.name : `${prefix}/${child.name}`;
      if (isStateDir(rel)) continue;
      if (child.name.startsWith(TEMP_PREFIX)) found.push(rel);
      if (child.isDirectory()) await visit(join(dir, child.name), rel);
    }
  }
  await visit(root, '');
  return found;
}

export async function exists(abs: string): Promise<boolean> {
  return lstat(abs).then(() => true, () => false);
}

// ---- the agent's hash cache (read-only) -------------------------------------------------------

/** The agent's hash cache in the source's default state dir (src/scan/cache.ts). */
export const AGENT_CACHE = join(STATE_DIR, 'agent-cache.sqlite');

/**
 * Source files (the state dir aside) for which the agent's cache holds no row matching their
 * current size, mtime (whole ms) and inode: the files a restarted agent would have to hash.
 */
export async function uncachedFiles(src: string): Promise<string[]> {
  const files: Array<{ path: string; size: number; mtimeMs: number; ino: number }> = [];
  async function visit(dir: string, prefix: string): Promise<void> {
    for (const name of await readdir(dir)) {
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      if (isStateDir(rel)) continue;
      const st = await lstat(join(dir, name));
      if (st.isDirectory()) await visit(join(dir, name), rel);
      else if (st.isFile()) files.push({ path: rel, size: st.size, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino });
    }
  }
  await visit(src, '');
  const db = new Database(join(src, AGENT_CACHE), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const lookup = db.prepare('SELECT 1 FROM files WHERE path = ? AND size = ? AND mtime_ms = ? AND ino = ?').pluck();
    return files.filter((f) => lookup.get(f.path, f.size, f.mtimeMs, f.ino) === undefined).map((f) => f.path).sort();
  } finally {
    db.close();
  }
}

// ---- the receiver's manifest (read-only) ------------------------------------------------------

export interface ManifestRow {
  path: string; kind: 'file' | 'dir' | 'symlink'; size: number; mtime_ms: number; mode: number;
  hash: string | null; target: string | null; deleted_at: number | null;
}

function withManifest<T>(dst: string, fn: (db: Database.Database) => T): T {
  const db = new Database(join(dst, MANIFEST), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return fn(db);
  } finally {
    db.close();
  }
}

export function manifestRows(dst: string): ManifestRow[] {
  return withManifest(dst, (db) => db.prepare('SELECT path, kind, size, mtime_ms, mode, hash, target, deleted_at FROM entries ORDER BY path').all() as ManifestRow[]);
}

export function manifestRow(dst: string, path: string): ManifestRow | undefined {
  return manifestRows(dst).find((r) => r.path === path);
}

/** Paths the manifest holds as tombstones. */
export function tombstonePaths(dst: string): string[] {
  return manifestRows(dst).filter((r) => r.deleted_at !== null).map((r) => r.path);
}

function manifestState(dst: string, key: string): unknown {
  return withManifest(dst, (db) => (db.prepare('SELECT value FROM state WHERE key = ?').get(key) as { value: unknown } | undefined)?.value);
}

/** Polls `check` every 25 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * How the receiver's manifest disagrees with a source tree (one line per path, at most `max`), or
 * '' when its live rows are exactly the source's paths, with the same kind, size, mode, mtime and
 * link target. Paths deleted on the source must be tombstones by then.
 */
export function describeManifestDiff(source: Record<string, TreeItem>, dst: string, max = 30): string {
  const live = new Map(manifestRows(dst).filter((r) => r.deleted_at === null).map((r) => [r.path, r]));
  const lines: string[] = [];
  for (const [path, item] of Object.entries(source)) {
    const row = live.get(path);
    live.delete(path);
    if (row === undefined) {
      lines.push(`- ${path}: no live manifest row`);
      continue;
    }
    const want = { kind: item.kind, size: item.kind === 'file' ? item.size : null, mode: item.kind === 'symlink' ? null : item.mode, mtime: item.mtimeMs, target: item.target };
    const got = { kind: row.kind, size: row.kind === 'file' ? row.size : null, mode: row.kind === 'symlink' ? null : row.mode, mtime: row.mtime_ms, target: row.target };
    const fields = (Object.keys(want) as Array<keyof typeof want>).filter((k) => want[k] !== got[k]);
    if (fields.length > 0) lines.push(`~ ${path}: manifest ${fields.map((k) => `${k} ${String(got[k])}, source ${String(want[k])}`).join('; ')}`);
  }
  for (const path of live.keys()) lines.push(`+ ${path}: live manifest row, not on the source (no tombstone)`);
  const shown = lines.slice(0, max);
  if (lines.length > max) shown.push(`... and ${lines.length - max} more`);
  return shown.join('\n');
}

/**
 * Polls until the standby holds exactly the source (content, mode, mtimes, link targets), apart
 * from the state dir and the paths the manifest holds as tombstones (the gate keeps those on the
 * standby), and the manifest records exactly that (describeManifestDiff): applied, then recorded.
 * Fails after `timeoutMs` with a readable diff; `context()` adds, say, process logs.
 */
export async function waitForConvergence(s: Workspace, options: { timeoutMs?: number; what?: string; context?: () => string } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (true) {
    try {
      const tombstones = new Set(tombstonePaths(s.dst));
      const [source, standby] = await Promise.all([readSynced(s.src), readSynced(s.dst, (rel) => tombstones.has(rel))]);
      last = describeTreeDiff(source, standby);
      if (last === '') last = describeManifestDiff(source, s.dst);
      if (last === '') return;
    } catch (err) {
      // A path vanished between readdir and lstat (a temp file renamed into place, a source edit): look again.
      last = `could not read the trees: ${(err as Error).message}`;
    }
    if (Date.now() > deadline) {
      assert.fail(`${options.what ?? 'the standby'} did not converge within ${timeoutMs} ms:\n${withManifestRows(last, s.dst)}${options.context ? '\n' + options.context() : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A tree diff with the manifest's row for each path only on the standby: recorded, tombstoned, or never recorded? */
function withManifestRows(diff: string, dst: string): string {
  return diff.split('\n').map((line) => {
    const m = /^\+ (.+): only on the standby/.exec(line);
    if (m === null) return line;
    try {
      return `${line} [manifest: ${JSON.stringify(manifestRow(dst, m[1] as string) ?? 'no row')}]`;
    } catch (err) {
      return `${line} [manifest unreadable: ${(err as Error).message}]`;
    }
  }).join('\n');
}

/** Waits until the receiver on `dst` has no agent session (it admits one agent at a time). */
export function waitForReceiverIdle(dst: string, timeoutMs = 10_000): Promise<void> {
  return waitFor('the receiver to end the previous session', () => Number(manifestState(dst, 'agentConnected') ?? 0) === 0, timeoutMs);
}
