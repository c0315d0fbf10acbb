/**
 * `npm run demo`: the engine on local temp dirs. Builds a small Artifactory-like tree, starts a
 * real receiver and a real live agent on 127.0.0.1, shows the standby matching the source (minus
 * what the excludes skip), then changes the source while the agent watches: new uploads arrive
 * within milliseconds, a garbage-collected binary is held as a tombstone, and `warmsync status`
 * says whether failing over is safe. Exits 0 with everything it started stopped and its temp dirs
 * removed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { readTree } from '../test/helpers/tree.js';
import { runCli, startAgentProcess, startReceiverProcess, stopAll, workspace } from './lib/cli-process.js';

const say = (line = ''): void => void process.stdout.write(line + '\n');

async function upload(root: string, size: number): Promise<string> {
  const content = randomBytes(size);
  const sha1 = createHash('sha1').update(content).digest('hex');
  const dir = join(root, 'data/filestore', sha1.slice(0, 2));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, sha1), content);
  return `data/filestore/${sha1.slice(0, 2)}/${sha1}`;
}

/** Polls `check` every 2 ms until it holds; returns the ms it took. Throws after `timeoutMs`. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
  return performance.now() - started;
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

async function main(): Promise<boolean> {
  const ws = await workspace();
  try {
    say('warmsync demo: an Artifactory-like tree replicated live to a standby on 127.0.0.1');
    say(`  source  ${ws.src}`);
    say(`  standby ${ws.dst}`);
    const binaries: string[] = [];
    for (let i = 0; i < 40; i++) binaries.push(await upload(ws.src, 1024 + Math.floor(Math.random() * 64 * 1024)));
    await mkdir(join(ws.src, 'etc/security'), { recursive: true });
    await writeFile(join(ws.src, 'etc/system.yaml'), 'shared:\n  database:\n    type: postgresql\n');
    await writeFile(join(ws.src, 'etc/security/master.key'), randomBytes(16).toString('hex') + '\n', { mode: 0o600 });
    await mkdir(join(ws.src, 'logs'), { recursive: true });
    await writeFile(join(ws.src, 'logs/request.log'), 'GET /artifactory/api/system/ping 200\n'.repeat(1000));
    await mkdir(join(ws.src, 'data/tmp'), { recursive: true });
    await writeFile(join(ws.src, 'data/tmp/upload.part'), randomBytes(4096));
    const excludes = join(ws.dir, 'rsync-excludes.txt');
    await writeFile(excludes, '# the same file rsync --exclude-from reads\nlogs/\n- data/tmp/\n*.lock\n');
    say(`  made ${binaries.length} binaries under data/filestore/, etc/ configs, and logs/ and data/tmp/ that ${excludes} skips`);
    say();

    const receiver = await startReceiverProcess(['--root', ws.dst, '--listen', '127.0.0.1:0', '--token-file', ws.tokenFile, '--log-level', 'warn']);
    say(`$ warmsync receiver --root ${ws.dst} --listen 127.0.0.1:0 --token-file ${ws.tokenFile}`);
    say(`  listening on ${receiver.url}`);
    const agent = startAgentProcess(['--root', ws.src, '--connect', receiver.url, '--token-file', ws.tokenFile, '--exclude-from', excludes]);
    say(`$ warmsync agent --root ${ws.src} --connect ${receiver.url} --token-file ${ws.tokenFile} --exclude-from ${excludes}`);

    const skip = (rel: string): boolean => rel === 'logs' || rel === 'data/tmp' || rel === '.warmsync';
    // The receiver's temporary files come and go while the tree is read: a vanished one means "not yet".
    const same = async (): Promise<boolean> => {
      try {
        return JSON.stringify(await readTree(ws.src, { skip })) === JSON.stringify(await readTree(ws.dst, { skip }));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
    };
    const initialMs = await until('the initial sync', same);
    say(`  initial sync: the standby matches the source (content, modes, mtimes) after ${Math.round(initialMs)} ms`);
    const logsKept = !(await exists(join(ws.dst, 'logs')));
    say(`  logs/ and data/tmp/ kept off the standby: ${logsKept && !(await exists(join(ws.dst, 'data/tmp'))) ? 'yes' : 'NO'}`);
    say();

    say('The agent keeps watching. Three uploads, one after another:');
    for (let i = 0; i < 3; i++) {
      const path = await upload(ws.src, 2048 + i);
      const ms = await until(path, () => exists(join(ws.dst, path)));
      say(`  ${path}: on the standby ${ms.toFixed(1)} ms after it was written`);
    }
    const collected = binaries[0] as string;
    await unlink(join(ws.src, collected));
    const manifest = join(ws.dst, '.warmsync/manifest.sqlite');
    const tombstone = (): number | null => {
      const db = new Database(manifest, { readonly: true });
      try {
        return (db.prepare('SELECT deleted_at FROM entries WHERE path = ?').get(collected) as { deleted_at: number | null } | undefined)?.deleted_at ?? null;
      } finally {
        db.close();
      }
    };
    await until('the tombstone', async () => tombstone() !== null);
    const held = await exists(join(ws.dst, collected));
    say(`  garbage collection deleted ${collected} on the source: tombstone recorded, file ${held ? 'still on the standby' : 'GONE'}`);
    say('  (it stays until the standby database has caught up past the deletion: the DB may still reference it)');
    say();

    await until('the watermark to pass the last change', async () => {
      const s = JSON.parse((await runCli(['status', '--root', ws.dst, '--json'])).stdout) as { watermark: number | null };
      return s.watermark !== null && s.watermark > Date.now() - 5000;
    });
    const status = JSON.parse((await runCli(['status', '--root', ws.dst, '--json'])).stdout) as { watermark: number; skewMs: number };
    const t = new Date(status.watermark - status.skewMs - 1000).toISOString();
    say(`Say the standby DB has replayed up to ${t} (its snapshot time T):`);
    const snap = await runCli(['snapshot', '--root', ws.dst, '--time', t]);
    say(`$ warmsync snapshot --root ${ws.dst} --time ${t}`);
    for (const line of snap.stdout.trim().split('\n')) say(`  ${line}`);
    const human = await runCli(['status', '--root', ws.dst]);
    say(`$ warmsync status --root ${ws.dst}`);
    for (const line of human.stdout.trim().split('\n')) say(`  ${line}`);
    say();

    const agentCode = await agent.stop('SIGTERM');
    const receiverCode = await receiver.stop();
    say(`agent stopped (exit ${agentCode}), receiver stopped (exit ${receiverCode})`);
    const ok = logsKept && held && human.stdout.startsWith('SAFE') && agentCode === 0 && receiverCode === 0;
    say(`demo ${ok ? 'OK' : 'FAILED'}`);
    return ok;
  } finally {
    await stopAll();
    await ws.cleanup();
  }
}

process.exitCode = await main().then(
  (ok) => (ok ? 0 : 1),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  },
);
