/**
 * Real PostgreSQL for the drill and its tests: finds (or installs) the server binaries, and builds a
 * primary plus a streaming standby (initdb, pg_basebackup -R) in temp dirs, on 127.0.0.1 and free
 * ports. The server refuses to run as root, so when we are root every server command runs as the
 * `postgres` user and the data dirs belong to it. Everything started here stops in `destroy()`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { freePort } from '../lib/net.js';
import { join } from 'node:path';
import pg from 'pg';

const PG_ROOT = '/usr/lib/postgresql';

/** The newest /usr/lib/postgresql/N/bin holding initdb, or null. */
export function findPgBin(): string | null {
  if (!existsSync(PG_ROOT)) return null;
  const versions = readdirSync(PG_ROOT).filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')));
  versions.sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : join(PG_ROOT, versions[0], 'bin');
}

/**
 * The PostgreSQL bin dir, installing Debian's `postgresql` package with apt when it is missing and
 * we may. Throws one clear sentence when there is no way to get it.
 */
export function ensurePostgres(say: (line: string) => void): string {
  const found = findPgBin();
  if (found !== null) return found;
  const apt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;
  if (process.getuid?.() !== 0 || !apt) {
    throw new Error(`PostgreSQL server binaries not found under ${PG_ROOT}/*/bin and cannot install them here (${apt ? 'not root' : 'no apt-get'}): install the "postgresql" package (Debian/Ubuntu) and rerun`);
  }
  say('PostgreSQL not found: installing the "postgresql" package with apt-get');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'postgresql']]) {
    const r = spawnSync('apt-get', args, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`);
  }
  const installed = findPgBin();
  if (installed === null) throw new Error(`apt-get installed "postgresql" but no ${PG_ROOT}/*/bin/initdb appeared`);
  return installed;
}

interface PgUser { uid: number; gid: number }

/** When root: the postgres user the servers run as. Otherwise we run them as ourselves. */
function pgUser(): PgUser | null {
  if (process.getuid?.() !== 0) return null;
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** Runs a server binary as the postgres user; throws with its output when it fails. */
function runPg(bin: string, tool: string, args: string[]): string {
  const user = pgUser();
  const r = spawnSync(join(bin, tool), args, { encoding: 'utf8', ...(user ?? {}), cwd: '/', env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' / ')}`);
  return r.stdout;
}

/** A directory the postgres user owns (and may enter: its parents must be traversable). */
/** For a test file: the bin dir (installing PostgreSQL when missing), or why the tests must skip (never under CI). */
export function postgresForTests(): { pgBin: string; skip: string | false } {
  try {
    return { pgBin: ensurePostgres((line) => process.stderr.write(`${line}\n`)), skip: false };
  } catch (err) {
    // CI installs PostgreSQL (.ci/run): there its absence fails the tests instead of skipping them.
    if (process.env['CI'] !== undefined) throw err;
    return { pgBin: '', skip: `PostgreSQL unavailable: ${(err as Error).message}` };
  }
}

export async function pgOwnedDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  const user = pgUser();
  if (user !== null) await chown(path, user.uid, user.gid);
}

export class PgServer {
  constructor(readonly bin: string, readonly dataDir: string, readonly port: number) {}

  url(user = 'postgres', password?: string): string {
    return `postgres://${user}${password === undefined ? '' : `:${password}`}@127.0.0.1:${this.port}/postgres`;
  }

  start(): void {
    runPg(this.bin, 'pg_ctl', ['start', '-D', this.dataDir, '-w', '-t', '60', '-l', join(this.dataDir, 'server.log')]);
  }

  /** immediate: like a crash (no checkpoint, nothing more sent to standbys); fast: a clean stop. */
  stop(mode: 'immediate' | 'fast'): void {
    if (!existsSync(join(this.dataDir, 'postmaster.pid'))) return;
    runPg(this.bin, 'pg_ctl', ['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', '60']);
  }

  /** Appends settings to postgresql.auto.conf (read at the next start). */
  async configure(lines: string[]): Promise<void> {
    await appendFile(join(this.dataDir, 'postgresql.auto.conf'), lines.join('\n') + '\n');
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url(), connectionTimeoutMillis: 20_000 });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  /** Waits (bounded) until the server answers queries. */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.query('SELECT 1');
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}

export interface PgPair { primary: PgServer; standby: PgServer }

/** Stops each server like a crash, skipping those that are not running (for cleanup after a failure). */
export function stopServers(servers: ReadonlyArray<PgServer | undefined>): void {
  for (const server of servers) {
    try {
      server?.stop('immediate');
    } catch {
      // already stopped, or never started
    }
  }
}

/**
 * A primary and a streaming standby under `dir` (which must exist and be traversable), the standby
 * replaying `applyDelayMs` behind. Password auth for the role `pwuser` (password `secret`), trust
 * for everything else on 127.0.0.1.
 */
export async function createPair(bin: string, dir: string, applyDelayMs: number): Promise<PgPair> {
  const pdir = join(dir, 'primary');
  const sdir = join(dir, 'standby');
  const socketDir = join(dir, 'sockets');
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await pgOwnedDir(pdir);
  await pgOwnedDir(socketDir);
  runPg(bin, 'initdb', ['-D', pdir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const primary = new PgServer(bin, pdir, await freePort());
  // scram for one role, ahead of initdb's trust lines, so that a wrong password really fails.
  const hba = join(pdir, 'pg_hba.conf');
  await writeFile(hba, `host all pwuser 127.0.0.1/32 scram-sha-256\n${await readFile(hba, 'utf8')}`);
  await primary.configure([
    "listen_addresses = '127.0.0.1'", `port = ${primary.port}`, `unix_socket_directories = '${socketDir}'`,
    'wal_level = replica', 'max_wal_senders = 5', 'wal_keep_size = 512', 'hot_standby = on',
    // Crash safety of the OS is not what the drill tests: a process crash loses nothing with fsync off.
    'fsync = off', 'shared_buffers = 32MB', 'max_connections = 40', "password_encryption = 'scram-sha-256'",
    // Tests compare the snapshot time with each row's exact commit time.
    'track_commit_timestamp = on',
  ]);
  primary.start();
  await primary.ready();
  await primary.query("CREATE ROLE pwuser LOGIN PASSWORD 'secret'");
  await primary.query('GRANT pg_monitor TO pwuser');

  await pgOwnedDir(sdir);
  runPg(bin, 'pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', sdir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
  const standby = new PgServer(bin, sdir, await freePort());
  await standby.configure([`port = ${standby.port}`, `recovery_min_apply_delay = '${applyDelayMs}ms'`]);
  standby.start();
  await standby.ready();
  return { primary, standby };
}

/** Waits (bounded) until `check` holds. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
