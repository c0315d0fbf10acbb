/**
 * `npm run demo`: the engine on local temp dirs. Builds a small Artifactory-like tree, starts a
 * real receiver and runs a real agent against it on 127.0.0.1, shows the standby matching the
 * source (minus what the excludes skip), then changes the source and syncs again.
 * Exits 0 with everything it started stopped and its temp dirs removed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { readTree } from '../test/helpers/tree.js';
import { runCli, startReceiverProcess, stopAll, workspace } from './lib/cli-process.js';

const say = (line = ''): void => void process.stdout.write(line + '\n');

async function upload(root: string, size: number): Promise<string> {
  const content = randomBytes(size);
  const sha1 = createHash('sha1').update(content).digest('hex');
  const dir = join(root, 'data/filestore', sha1.slice(0, 2));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, sha1), content);
  return `data/filestore/${sha1.slice(0, 2)}/${sha1}`;
}

async function main(): Promise<void> {
  const ws = await workspace();
  try {
    say('warmsync demo: an Artifactory-like tree replicated to a standby on 127.0.0.1');
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

    const agentArgs = ['agent', '--root', ws.src, '--connect', receiver.url, '--token-file', ws.tokenFile, '--exclude-from', excludes, '--once', '--json', '--log-level', 'warn'];
    const first = await runCli(agentArgs);
    say(`$ warmsync agent --root ${ws.src} --connect ${receiver.url} --exclude-from ${excludes} --once --json`);
    say(`  exit ${first.code}: ${first.stdout.trim()}`);
    if (first.code !== 0) throw new Error(`agent failed: ${first.stderr}`);

    const isExcluded = (rel: string): boolean => rel === 'logs' || rel === 'data/tmp' || rel === '.warmsync';
    const source = await readTree(ws.src, { skip: isExcluded });
    const standby = await readTree(ws.dst, { skip: isExcluded });
    const same = JSON.stringify(source) === JSON.stringify(standby);
    say(`  standby matches the source (content, modes, mtimes) for ${Object.keys(source).length} paths: ${same ? 'yes' : 'NO'}`);
    const skipped = await readFile(join(ws.dst, 'logs/request.log')).then(() => false, () => true);
    say(`  logs/ kept off the standby: ${skipped ? 'yes' : 'NO'}`);
    say();

    say('Now the source changes: 3 new uploads, one garbage-collected binary, an edited config.');
    for (let i = 0; i < 3; i++) await upload(ws.src, 2048);
    const collected = binaries[0] as string;
    await unlink(join(ws.src, collected));
    await writeFile(join(ws.src, 'etc/system.yaml'), 'shared:\n  database:\n    type: postgresql\n    maxOpenConnections: 100\n');
    const second = await runCli(agentArgs);
    say(`$ warmsync agent ... --once --json`);
    say(`  exit ${second.code}: ${second.stdout.trim()}`);
    if (second.code !== 0) throw new Error(`agent failed: ${second.stderr}`);
    const stillThere = await readFile(join(ws.dst, collected)).then(() => true, () => false);
    const db = new Database(join(ws.dst, '.warmsync/manifest.sqlite'), { readonly: true });
    const tomb = db.prepare('SELECT deleted_at FROM entries WHERE path = ?').get(collected) as { deleted_at: number } | undefined;
    db.close();
    say(`  ${collected}: deleted on the source, ${stillThere ? 'still on the standby' : 'GONE from the standby'}, tombstone recorded at ${tomb ? new Date(tomb.deleted_at).toISOString() : 'NONE'}`);
    say('  (it stays until the standby database\'s snapshot time has passed the deletion: the DB may still reference it)');

    const third = await runCli(agentArgs);
    say(`$ warmsync agent ... --once --json   # nothing changed`);
    say(`  exit ${third.code}: ${third.stdout.trim()}`);
    const code = await receiver.stop();
    say();
    say(`receiver stopped (exit ${code}); demo ${same && skipped && stillThere && tomb ? 'OK' : 'FAILED'}`);
    if (!(same && skipped && stillThere && tomb && code === 0)) process.exitCode = 1;
  } finally {
    await stopAll();
    await ws.cleanup();
  }
}

await main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
