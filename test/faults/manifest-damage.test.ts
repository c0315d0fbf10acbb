// Faults: the receiver's manifest damaged while it was stopped (truncated, a page overwritten,
// emptied, replaced by another application's SQLite file or by garbage). The receiver and the
// operator commands refuse it with one clear line (never a silent fresh start, which would forget
// the tombstones), and `warmsync verify --rebuild` recovers: the damaged file is kept, the tree is
// re-hashed into a new manifest, readable tombstones are carried over, and the next agent run
// converges to a verify-clean standby.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';
import {
  assertCleanFailure, assertSameTree, buildTree, closeStandbys, manifestRows, openStandby, receiverArgs, restartReceiver, runCli,
  settleTimes, syncOnce, tombstonePaths, type Standby,
} from '../helpers/e2e.js';

after(closeStandbys);

const MANIFEST = '.warmsync/manifest.sqlite';
const FILES = 150;

/** A synced standby holding a tombstone (gone.bin), its receiver stopped cleanly. */
async function stoppedStandby(): Promise<Standby> {
  const s = await openStandby();
  const spec: Record<string, Buffer> = { 'gone.bin': randomBytes(5000) };
  for (let i = 0; i < FILES; i++) spec[`filestore/${(i % 8).toString(16).padStart(2, '0')}/blob-${i}`] = randomBytes(200 + (i % 50) * 40);
  await buildTree(s.src, spec);
  await settleTimes(s.src);
  await syncOnce(s);
  await rm(join(s.src, 'gone.bin'));
  await syncOnce(s);
  assert.deepEqual(tombstonePaths(s.dst), ['gone.bin']);
  assert.equal(await s.receiver.stop(), 0);
  return s;
}

async function overwritePage(file: string, page: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.write(randomBytes(4096), 0, 4096, page * 4096);
  } finally {
    await handle.close();
  }
}

/** The refusals an operator meets, all one line with `code`; the manifest file is left as it was. */
async function assertRefused(s: Standby, code: string, commands: readonly string[] = []): Promise<void> {
  const receiver = await runCli(['receiver', ...receiverArgs(s)], { timeoutMs: 30_000 });
  const line = assertCleanFailure(receiver, 1, new RegExp(`^warmsync: ${code}: `));
  if (code === 'MANIFEST_CORRUPT') assert.match(line, /verify --root ROOT --rebuild/);
  assert.doesNotMatch(receiver.stdout, /listening on/, 'the receiver started on a damaged manifest');
  for (const command of commands) {
    const [name, ...rest] = command.split(' ');
    assertCleanFailure(await runCli([name as string, '--root', s.dst, ...rest], { timeoutMs: 30_000 }), 1, new RegExp(`^warmsync: ${code}: `));
  }
}

/** verify --rebuild, then a receiver and an agent run: the standby converges, verify is clean. */
async function assertRebuilds(s: Standby, expectTombstone: boolean): Promise<void> {
  const r = await runCli(['verify', '--root', s.dst, '--rebuild'], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `rebuild failed:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /^old manifest kept as .*manifest\.sqlite\.damaged-/m);
  assert.match(r.stdout, new RegExp(`REBUILT: ${FILES + 1} files`));
  assert.match(r.stdout, expectTombstone ? /1 tombstone\(s\) carried over/ : /tombstone/);
  assert.ok((await readdir(join(s.dst, '.warmsync'))).some((n) => /^manifest\.sqlite\.damaged-/.test(n)), 'the damaged file was not kept');
  if (expectTombstone) assert.deepEqual(tombstonePaths(s.dst), ['gone.bin']);
  await restartReceiver(s);
  await syncOnce(s);
  // A lost tombstone is recorded again by the agent: the file is kept, never forgotten.
  assert.deepEqual(tombstonePaths(s.dst), ['gone.bin']);
  await assertSameTree(s.src, s.dst, { skipDst: (rel) => rel === 'gone.bin' });
  const final = await runCli(['verify', '--root', s.dst], { timeoutMs: 60_000 });
  assert.equal(final.code, 0, `verify after the agent run:\n${final.stdout}${final.stderr}`);
  // The files, filestore/ and its 8 subdirectories, and the tombstone.
  assert.equal(manifestRows(s.dst).length, FILES + 1 + 8 + 1);
}

describe('manifest damage', { concurrency: true }, () => {
  test('truncated to half: refused as MANIFEST_CORRUPT, rebuilt from the tree', { timeout: 120_000 }, async () => {
    const s = await stoppedStandby();
    const file = join(s.dst, MANIFEST);
    const { size } = await stat(file);
    await truncate(file, Math.floor(size / 2 / 4096) * 4096);
    await assertRefused(s, 'MANIFEST_CORRUPT', ['status', 'verify', 'snapshot --time 0', 'promote --dry-run --time 0']);
    await assertRebuilds(s, false);
  });

  test('a page overwritten with garbage: found by the integrity check at start, rebuilt', { timeout: 120_000 }, async () => {
    const s = await stoppedStandby();
    const db = new Database(join(s.dst, MANIFEST), { readonly: true });
    // The last page of the entries table: damage the receiver would otherwise only meet mid-session.
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.close();
    await overwritePage(join(s.dst, MANIFEST), pages - 2);
    await assertRefused(s, 'MANIFEST_CORRUPT', ['status']);
    await assertRebuilds(s, false);
  });

  test('emptied (0 bytes) while the root holds data: refused, not taken as a new manifest', { timeout: 120_000 }, async () => {
    const s = await stoppedStandby();
    await truncate(join(s.dst, MANIFEST), 0);
    const r = await runCli(['receiver', ...receiverArgs(s)], { timeoutMs: 30_000 });
    assertCleanFailure(r, 1, /^warmsync: MANIFEST_CORRUPT: .*empty, but the root holds data/);
    await assertRebuilds(s, false);
  });

  test('another application\'s SQLite file: MANIFEST_FOREIGN; rebuild moves it aside', { timeout: 120_000 }, async () => {
    const s = await stoppedStandby();
    const file = join(s.dst, MANIFEST);
    await rm(file);
    const db = new Database(file);
    db.exec('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES (\'alice\')');
    db.close();
    await assertRefused(s, 'MANIFEST_FOREIGN', ['status']);
    await assertRebuilds(s, false);
  });

  test('garbage bytes: MANIFEST_CORRUPT, rebuilt', { timeout: 120_000 }, async () => {
    const s = await stoppedStandby();
    await writeFile(join(s.dst, MANIFEST), randomBytes(64 * 1024));
    await assertRefused(s, 'MANIFEST_CORRUPT');
    await assertRebuilds(s, false);
  });

  test('rebuild of a readable manifest carries its tombstones over; refused while a receiver runs', { timeout: 120_000 }, async () => {
    const s = await stoppedStandby();
    const running = await startReceiverProcess(receiverArgs(s));
    const busy = await runCli(['verify', '--root', s.dst, '--rebuild'], { timeoutMs: 30_000 });
    assertCleanFailure(busy, 1, /^warmsync: RECEIVER_RUNNING: /);
    assert.equal(await running.stop(), 0);
    await assertRebuilds(s, true);
  });
});
