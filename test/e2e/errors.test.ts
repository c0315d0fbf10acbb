// e2e: failures a user meets, through bin/warmsync: a wrong token (exit 1, nothing written), an
// unreachable receiver (bounded retries, exit 1), bad flags and bad input files (exit 2, one line
// naming the problem, no stack trace), a receiver without a token, a second receiver on one root,
// and the safety halts (missing or emptied source, mass deletion, and --max-delete lifting it).
import assert from 'node:assert/strict';
import { readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  assertCleanFailure, buildTree, closeStandbys, exists, manifestRows, openStandby, openWorkspace, readSynced, receiverArgs,
  runAgent, runCli, settleTimes, syncOnce, tombstonePaths, type Standby,
} from '../helpers/e2e.js';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';

after(closeStandbys);

/** A standby whose source holds `count` files under filestore/, already synced once. */
async function syncedStandby(count: number): Promise<Standby> {
  const s = await openStandby();
  const spec: Record<string, string> = {};
  for (let i = 0; i < count; i++) spec[`filestore/${(i % 4).toString(16).padStart(2, '0')}/blob-${i}`] = `blob ${i}\n`;
  await buildTree(s.src, spec);
  await settleTimes(s.src);
  await syncOnce(s);
  return s;
}

/** The standby tree and manifest, to show that a failed run changed nothing. */
async function standbyState(s: Standby): Promise<{ tree: Awaited<ReturnType<typeof readSynced>>; manifest: ReturnType<typeof manifestRows> }> {
  return { tree: await readSynced(s.dst), manifest: manifestRows(s.dst) };
}

describe('errors', { concurrency: true }, () => {
  test('wrong token: the agent exits 1 saying authentication failed, and nothing is written', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'a.txt': 'a\n', 'dir/b.txt': 'b\n' });
    const wrong = join(s.dir, 'wrong-token');
    await writeFile(wrong, 'not-the-receivers-token-0123456789\n', { mode: 0o600 });
    const r = await runCli(['agent', '--root', s.src, '--connect', s.url, '--token-file', wrong, '--once'], { timeoutMs: 30_000 });
    assertCleanFailure(r, 1, /authentication failed/);
    assert.deepEqual(await readdir(s.dst), ['.warmsync']);
    assert.deepEqual(manifestRows(s.dst), []);
  });

  test('unreachable receiver: bounded retries, then exit 1 saying it cannot reach it', { timeout: 60_000 }, async () => {
    const ws = await openWorkspace();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const r = await runCli(['agent', '--root', ws.src, '--connect', `ws://127.0.0.1:${port}`, '--token-file', ws.tokenFile, '--once', '--connect-attempts', '2'], { timeoutMs: 30_000 });
    assertCleanFailure(r, 1, /cannot reach/);
    assert.match(r.stderr, /2 attempts/);
  });

  describe('bad usage exits 2 with one line naming the problem', { concurrency: true }, () => {
    const cases: Array<{ name: string; args: (dir: string, tokenFile: string) => string[] | Promise<string[]>; pattern: RegExp; env?: NodeJS.ProcessEnv }> = [
      { name: 'receiver: unknown flag', args: (d, t) => ['receiver', '--root', d, '--listen', '127.0.0.1:0', '--token-file', t, '--bogus'], pattern: /--bogus/ },
      { name: 'receiver: missing --root', args: (_d, t) => ['receiver', '--listen', '127.0.0.1:0', '--token-file', t], pattern: /--root is required/ },
      { name: 'receiver: --listen nope', args: (d, t) => ['receiver', '--root', d, '--listen', 'nope', '--token-file', t], pattern: /--listen "nope"/ },
      { name: 'receiver: --listen with port 99999', args: (d, t) => ['receiver', '--root', d, '--listen', '127.0.0.1:99999', '--token-file', t], pattern: /--listen "127\.0\.0\.1:99999"/ },
      {
        name: 'receiver: no --token-file and no WARMSYNC_TOKEN', args: (d) => ['receiver', '--root', d, '--listen', '127.0.0.1:0'],
        pattern: /NO_TOKEN: .*token/, env: { WARMSYNC_TOKEN: undefined },
      },
      { name: 'agent: unknown flag', args: (d, t) => ['agent', '--root', d, '--connect', 'ws://127.0.0.1:9', '--token-file', t, '--once', '--frobnicate'], pattern: /--frobnicate/ },
      { name: 'agent: missing --root', args: (_d, t) => ['agent', '--connect', 'ws://127.0.0.1:9', '--token-file', t, '--once'], pattern: /--root is required/ },
      { name: 'agent: --connect http://x', args: (d, t) => ['agent', '--root', d, '--connect', 'http://x', '--token-file', t, '--once'], pattern: /--connect.*"http:\/\/x"/ },
      {
        name: 'agent: missing --exclude-from file',
        args: (d, t) => ['agent', '--root', d, '--connect', 'ws://127.0.0.1:9', '--token-file', t, '--once', '--exclude-from', join(d, 'no-such-excludes.txt')],
        pattern: /no-such-excludes\.txt/,
      },
      {
        name: 'agent: an excludes line rsync reads as a merge rule',
        args: async (d, t) => {
          const file = join(d, 'rsync-excludes.txt');
          await writeFile(file, 'logs/\n. other.txt\n');
          return ['agent', '--root', d, '--connect', 'ws://127.0.0.1:9', '--token-file', t, '--once', '--exclude-from', file];
        },
        pattern: /rsync-excludes\.txt:2: .*\. other\.txt/,
      },
    ];
    for (const c of cases) {
      test(c.name, { timeout: 30_000 }, async () => {
        const ws = await openWorkspace();
        const r = await runCli(await c.args(ws.dst, ws.tokenFile), { env: c.env ?? {}, timeoutMs: 20_000 });
        assertCleanFailure(r, 2, c.pattern);
        assert.equal(r.stderr.trim().split('\n').length, 1, `more than one line:\n${r.stderr}`);
        assert.doesNotMatch(r.stdout, /listening on/);
      });
    }
  });

  test('a second receiver on the same root exits 1 naming the running one, which keeps serving', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    const r = await runCli(['receiver', ...receiverArgs(s)], { timeoutMs: 20_000 });
    assertCleanFailure(r, 1, new RegExp(`RECEIVER_RUNNING: .*pid ${s.receiver.child.pid}`));
    await buildTree(s.src, { 'still.txt': 'served\n' });
    await settleTimes(s.src);
    await syncOnce(s);
    assert.equal((await readSynced(s.dst))['still.txt']?.kind, 'file');
  });

  test('a --listen address it cannot take: the receiver exits 1 LISTEN_FAILED naming why, and stops cleanly', { timeout: 60_000 }, async () => {
    const ws = await openWorkspace();
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', () => resolve()));
    const taken = (holder.address() as AddressInfo).port;
    try {
      // A port in use, and an address no interface of this host has (TEST-NET-1, RFC 5737).
      const busy = await runCli(['receiver', ...receiverArgs(ws), '--listen', `127.0.0.1:${taken}`], { timeoutMs: 30_000 });
      assertCleanFailure(busy, 1, new RegExp(`LISTEN_FAILED: cannot listen on 127\\.0\\.0\\.1:${taken}: EADDRINUSE`));
      const foreign = await runCli(['receiver', ...receiverArgs(ws), '--listen', '192.0.2.1:7000'], { timeoutMs: 30_000 });
      assertCleanFailure(foreign, 1, /LISTEN_FAILED: cannot listen on 192\.0\.2\.1:7000: EADDRNOTAVAIL/);
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
    // Both stopped as a receiver stops: the next one finds nothing to recover, and serves.
    const receiver = await startReceiverProcess(receiverArgs(ws));
    await buildTree(ws.src, { 'after.txt': 'served\n' });
    await settleTimes(ws.src);
    await syncOnce({ ...ws, receiver, url: receiver.url });
    assert.equal((await readSynced(ws.dst))['after.txt']?.kind, 'file');
    assert.doesNotMatch(receiver.stderr(), /RECOVERED/);
  });

  test('safety halt: a missing source root exits 1 and sends nothing', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await rm(s.src, { recursive: true });
    const r = await runAgent(s, [], 30_000);
    assertCleanFailure(r, 1, /SOURCE_MISSING: .*does not exist/);
    assert.equal(await exists(s.src), false, 'the agent created the missing source root');
    assert.deepEqual(await readdir(s.dst), ['.warmsync']);
  });

  test('a state dir that cannot be made: agent and receiver exit 1 STATE_DIR_UNUSABLE saying why, before dialling or listening', { timeout: 60_000 }, async () => {
    const ws = await openWorkspace();
    const blocker = join(ws.dir, 'a-file');
    await writeFile(blocker, 'not a directory\n');
    // A port nothing listens on: an agent that dialled first would log CONNECT_RETRY before the error.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const agent = await runCli(['agent', '--root', ws.src, '--state-dir', blocker, '--connect', `ws://127.0.0.1:${port}`, '--token-file', ws.tokenFile, '--once'], { timeoutMs: 30_000 });
    assertCleanFailure(agent, 1, new RegExp(`STATE_DIR_UNUSABLE: cannot create the state directory ${blocker}: it exists and is not a directory`));
    assert.doesNotMatch(agent.stderr, /CONNECT_RETRY/);
    const receiver = await runCli(['receiver', ...receiverArgs(ws), '--state-dir', join(blocker, 'state')], { timeoutMs: 30_000 });
    assertCleanFailure(receiver, 1, /STATE_DIR_UNUSABLE: .*a component of its path is not a directory/);
    assert.deepEqual(await readdir(ws.dst), []);
  });

  test('safety halt: a source emptied after a sync exits 1 SOURCE_EMPTY, the standby untouched', { timeout: 60_000 }, async () => {
    const s = await syncedStandby(12);
    const before = await standbyState(s);
    await rm(join(s.src, 'filestore'), { recursive: true });
    const r = await runAgent(s, [], 30_000);
    assertCleanFailure(r, 1, /SOURCE_EMPTY/);
    assert.deepEqual(await standbyState(s), before);
    assert.deepEqual(tombstonePaths(s.dst), []);
  });

  test('safety halt: deleting 80 % of 50 files exits 1 MASS_DELETE; --max-delete 90 lets it through as tombstones', { timeout: 60_000 }, async () => {
    const s = await syncedStandby(50);
    const before = await standbyState(s);
    const files = Object.entries(await readSynced(s.src)).filter(([, item]) => item.kind === 'file').map(([rel]) => rel);
    assert.equal(files.length, 50);
    const doomed = files.slice(0, 40);
    for (const rel of doomed) await unlink(join(s.src, rel));
    await writeFile(join(s.src, 'arrived.txt'), 'arrived with the deletions\n');

    const r = await runAgent(s, [], 30_000);
    assertCleanFailure(r, 1, /MASS_DELETE: .*40 of 50.*no deletion was sent/);
    // The creation went out as the scan found it (and the directories' new mtimes); no deletion did.
    assert.equal(await readFile(join(s.dst, 'arrived.txt'), 'utf8'), 'arrived with the deletions\n');
    const filesOf = (state: typeof before): unknown => ({
      tree: Object.entries(state.tree).filter(([rel, item]) => item.kind === 'file' && rel !== 'arrived.txt'),
      manifest: state.manifest.filter((row) => row.kind === 'file' && row.path !== 'arrived.txt'),
    });
    assert.deepEqual(filesOf(await standbyState(s)), filesOf(before));
    assert.deepEqual(tombstonePaths(s.dst), []);

    const summary = await syncOnce(s, ['--max-delete', '90']);
    assert.equal(summary.tombstones, 40);
    assert.equal(summary.filesSent, 0, 'arrived.txt went with the halted run');
    assert.deepEqual(tombstonePaths(s.dst).sort(), [...doomed].sort());
    const standby = await readSynced(s.dst);
    for (const rel of files) assert.equal(standby[rel]?.kind, 'file', `${rel} left the standby`);
  });
});
