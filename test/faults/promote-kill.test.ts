// Faults: SIGKILL `warmsync promote` and `warmsync restore` at seeded points of their own progress,
// then run the same command again (issue 17, finding 8; shared/DESIGN.md invariant 6). The standby
// is built by the real receiver and `agent --once`: a few thousand files, half of them born after
// the promotion time T. Each kill point is a step of the command (0: its journal is durable, k: k
// files moved, n + 1: the manifest change committed), and WARMSYNC_FAULT_STOP=NAME:STEP makes the
// command stop itself (SIGSTOP) exactly there before the test kills it: the kill lands at that point
// however fast or slow the machine. Each round, in turn:
// - promote killed; promote with another T is refused (PROMOTE_PENDING) and a dry run warns; promote
//   again with the same T: it finishes the same quarantine (same id, resumed), and the tree,
//   the manifest, the quarantine and the removals log are what a kill-free promotion gives; then
//   restore killed, restore again: the standby is as before the promotion;
// - promote killed, then restore (on the half-done promotion) killed, restore again: the standby is
//   as before the promotion, and the next promote starts afresh instead of resuming it.
// After every rerun `warmsync verify` is clean.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { BIN } from '../../scripts/lib/cli-process.js';
import { MANIFEST, assertCleanFailure, closeStandbys, isStateDir, openStandby, runCli, syncOnce, type Standby } from '../helpers/e2e.js';
import { LONG, Rng, faultSeed, killWhenStopped } from '../helpers/faults.js';
import { describeTreeDiff, readTree, type TreeItem } from '../helpers/tree.js';

after(closeStandbys);

const seed = faultSeed('promote-kill');
const rng = new Rng(seed);
const FILES = LONG ? 8000 : 3000;
const ROUNDS = LONG ? 16 : 4;
const DIRS = 32;
const HOUR = 3_600_000;

type Rows = Array<Record<string, unknown>>;
interface State { tree: Record<string, TreeItem>; rows: Rows }

function rows(dst: string): Rows {
  const db = new Database(join(dst, MANIFEST), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return db.prepare('SELECT path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged FROM entries ORDER BY path').all() as Rows;
  } finally {
    db.close();
  }
}

function removals(dst: string, id: string): { total: number; open: number; paths: number } {
  const db = new Database(join(dst, MANIFEST), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT count(*) AS total, coalesce(sum(restored_at IS NULL), 0) AS open, count(DISTINCT path) AS paths FROM removals WHERE quarantine = ?').get(id) as { total: number; open: number; paths: number };
  } finally {
    db.close();
  }
}

const standbyState = async (dst: string): Promise<State> => ({ tree: await readTree(dst, { dirTimes: false, skip: isStateDir }), rows: rows(dst) });

function assertState(actual: State, expected: State, what: string): void {
  assert.deepEqual(actual.tree, expected.tree, `${what}: tree differs\n${describeTreeDiff(expected.tree, actual.tree)}`);
  assert.deepEqual(actual.rows, expected.rows, `${what}: manifest differs`);
}

async function assertVerifyClean(dst: string, what: string): Promise<void> {
  const r = await runCli(['verify', '--root', dst], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, `${what}: verify exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /0 corrupt, 0 missing, 0 stray\n$/, what);
}

/**
 * Runs `warmsync ARGS` until it stops itself at `step` of `name`, then SIGKILLs it. Fails if it
 * exits first: the step must be one the command reaches.
 */
async function killAt(name: 'promote' | 'restore', step: number, args: string[]): Promise<void> {
  const child = spawn(BIN, args, { env: { ...process.env, WARMSYNC_FAULT_STOP: `${name}:${step}` }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await killWhenStopped(child, exited, `${name} step ${step}`, () => out);
}

/** A step from the start, the middle or the end of a run of n moves (0..n + 1), in turn. */
function drawStep(round: number, n: number): number {
  switch (round % 4) {
    case 0: return rng.int(0, Math.min(n + 1, 3));
    case 1: return rng.int(1, n);
    case 2: return rng.int(Math.max(0, n - 2), n + 1);
    default: return rng.int(0, n + 1);
  }
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (!e.isDirectory() && !(e.parentPath === dir && e.name === 'report.json')) n++;
  return n;
}

describe('promote and restore, killed at seeded points and run again', { concurrency: false }, () => {
  let s: Standby;
  let T: number;
  let before_: State;
  let planned: string[];
  let afterPromote: State;

  before(async () => {
    s = await openStandby();
    const now = Date.now();
    // A first sync gives the receiver a watermark, which bounds born times (an empty sync has none).
    await mkdir(join(s.src, 'etc'), { recursive: true });
    await writeFile(join(s.src, 'etc/first.conf'), 'first\n');
    await syncOnce(s);
    T = now - HOUR;
    for (let d = 0; d < DIRS; d++) await mkdir(join(s.src, `filestore/${d.toString(16).padStart(2, '0')}`), { recursive: true });
    for (let i = 0; i < FILES; i++) {
      const rel = `filestore/${(i % DIRS).toString(16).padStart(2, '0')}/blob-${i}`;
      await writeFile(join(s.src, rel), rng.bytes(rng.int(1, 2048)));
      // Half born well before T, half after it (the watermark of the first sync caps them at ~now).
      const mtime = rng.next() < 0.5 ? T - 24 * HOUR - i : T + HOUR + i;
      await utimes(join(s.src, rel), mtime / 1000, mtime / 1000);
    }
    await syncOnce(s, [], 300_000);
    before_ = await standbyState(s.dst);
    const dry = await runCli(['promote', '--root', s.dst, '--time', String(T), '--dry-run', '--json'], { timeoutMs: 120_000 });
    assert.equal(dry.code, 0, dry.stderr);
    planned = (JSON.parse(dry.stdout) as { paths: Array<{ path: string }> }).paths.map((p) => p.path);
    assert.ok(planned.length > FILES / 3 && planned.length < FILES * 2 / 3, `${planned.length} of ${FILES} planned`);
    const gone = new Set(planned);
    afterPromote = {
      tree: Object.fromEntries(Object.entries(before_.tree).filter(([p]) => !gone.has(p))),
      rows: before_.rows.filter((r) => !gone.has(r['path'] as string)),
    };
    await assertVerifyClean(s.dst, 'before any promotion');
  });

  const quarantines = async (): Promise<string[]> => (JSON.parse((await runCli(['restore', '--root', s.dst, '--list', '--json'])).stdout) as { quarantines: string[] }).quarantines;

  for (let round = 0; round < ROUNDS; round++) {
    const rerunPromote = round % 2 === 0;
    test(`round ${round}: promote killed, then ${rerunPromote ? 'promote again, restore killed, restore again' : 'restore (half-done promotion) killed, restore again'}`, { timeout: 600_000 }, async () => {
      const known = await quarantines();
      const promoteArgs = ['promote', '--root', s.dst, '--time', String(T), '--json'];
      const k = drawStep(round, planned.length);
      process.stdout.write(`# round ${round}: promote stopped and killed at step ${k} of 0..${planned.length + 1}\n`);
      await killAt('promote', k, promoteArgs);
      const ids = (await quarantines()).filter((id) => !known.includes(id));
      assert.equal(ids.length, 1, `one new quarantine after the kill at step ${k}: ${ids.join(', ')}`);
      const id = ids[0] as string;
      const qdir = join(s.dst, '.warmsync/quarantine', id);
      assert.equal(await countFiles(qdir), Math.min(k, planned.length), `files in the quarantine after a kill at step ${k}`);

      if (rerunPromote) {
        // Another T does not finish it (nor start a second promotion); a dry run says it is pending.
        const other = await runCli(['promote', '--root', s.dst, '--time', String(T - 1)], { timeoutMs: 60_000 });
        assertCleanFailure(other, 1, new RegExp(`^warmsync: PROMOTE_PENDING: the promotion ${id} at T .* was interrupted; rerun promote with --time ${new Date(T).toISOString().replace(/\./g, '\\.')} to finish it`));
        const dry = await runCli(['promote', '--root', s.dst, '--time', String(T), '--dry-run'], { timeoutMs: 60_000 });
        assert.match(dry.stderr, new RegExp(`"code":"PROMOTE_PENDING","msg":"the promotion ${id} at T `));
        const r = await runCli(promoteArgs, { timeoutMs: 300_000 });
        assert.equal(r.code, 0, `promote rerun after a kill at step ${k}:\n${r.stderr}`);
        const out = JSON.parse(r.stdout) as { quarantine: string; resumed: boolean; removed: string[]; failed: unknown[] };
        assert.equal(out.quarantine, id, 'the rerun finishes the same quarantine');
        assert.equal(out.resumed, true);
        assert.deepEqual(out.failed, []);
        assert.deepEqual(out.removed, planned);
        assert.deepEqual(await quarantines(), [...known, id]);
        assertState(await standbyState(s.dst), afterPromote, `after promote killed at step ${k} and rerun`);
        const q = await readTree(qdir, { dirTimes: false, skip: (rel) => rel === 'report.json' });
        assert.deepEqual(Object.keys(q).filter((p) => q[p]?.kind === 'file').sort(), [...planned].sort());
        for (const p of planned) assert.deepEqual(q[p], before_.tree[p], `${p} in the quarantine`);
        const report = JSON.parse(await readFile(join(qdir, 'report.json'), 'utf8')) as { state: string; entries: Array<{ path: string; wasPresent: boolean }> };
        assert.equal(report.state, 'done');
        assert.deepEqual(report.entries.map((e) => e.path), planned);
        assert.ok(report.entries.every((e) => e.wasPresent));
        assert.deepEqual(removals(s.dst, id), { total: planned.length, open: planned.length, paths: planned.length }, 'each removal logged exactly once');
        await assertVerifyClean(s.dst, `after promote killed at step ${k} and rerun`);
      }

      const inQuarantine = await countFiles(qdir);
      const j = drawStep(round + 1, inQuarantine);
      process.stdout.write(`# round ${round}: restore stopped and killed at step ${j} of 0..${inQuarantine + 1}\n`);
      await killAt('restore', j, ['restore', '--root', s.dst, '--id', id]);
      const r = await runCli(['restore', '--root', s.dst, '--id', id, '--json'], { timeoutMs: 300_000 });
      assert.equal(r.code, 0, `restore rerun after a kill at step ${j}:\n${r.stderr}`);
      assert.equal(await countFiles(qdir), 0, 'the quarantine is empty');
      assertState(await standbyState(s.dst), before_, `after promote killed at ${k}${rerunPromote ? ' and rerun' : ''}, restore killed at ${j} and rerun`);
      const logged = removals(s.dst, id);
      assert.equal(logged.open, 0, 'every logged removal is marked restored');
      assert.equal(logged.total, logged.paths, 'each removal logged at most once');
      if (!rerunPromote) {
        const report = JSON.parse(await readFile(join(qdir, 'report.json'), 'utf8')) as { state: string };
        assert.equal(report.state, 'undone', 'an undone promotion is never resumed');
      }
      await assertVerifyClean(s.dst, `after restore killed at step ${j} and rerun`);
    });
  }
});
