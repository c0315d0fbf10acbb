/**
 * gate/executor on a real temp dir with a real Manifest (SQLite): applySnapshot is monotonic (an
 * older T is reported and ignored, also when two calls race), applies exactly the tombstones T
 * allows (file off the disk, row gone, removal logged in the log and the removals table), keeps a
 * tombstoned directory that still has content, and never follows a symlinked ancestor out of the
 * root. promote quarantines exactly the born-after files plus the allowed tombstones (same relative
 * paths, report.json, removals logged), planning changes nothing, --purge deletes; restore puts files
 * and rows back with their original born times and skips paths that are occupied again.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { utimeValue, type Entry, type ManifestEntry } from '../../src/entry.js';
import { WarmsyncError } from '../../src/errors.js';
import { GateExecutor, REPORT_FILE } from '../../src/gate/executor.js';
import type { GateTimes } from '../../src/gate/policy.js';
import { createLogger } from '../../src/log.js';
import { Manifest } from '../../src/manifest/manifest.js';
import { resolveStateDir, type StateDir } from '../../src/statedir.js';
import { readTree } from '../helpers/tree.js';

const T = Date.parse('2026-11-26T10:00:00.000Z');
const TIMES: GateTimes = { skewMs: 2000, deleteGraceMs: 600_000 };
const HOLD = TIMES.skewMs + TIMES.deleteGraceMs;

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-gate-'));
});
after(async () => {
  fx?.manifest.close();
  await rm(tmp, { recursive: true, force: true });
});

interface Fixture {
  root: string;
  outside: string;
  stateDir: StateDir;
  manifest: Manifest;
  executor: GateExecutor;
  lines: string[];
}

let fx: Fixture | undefined;
let counter = 0;

beforeEach(async () => {
  fx?.manifest.close();
  const base = path.join(tmp, `case-${counter++}`);
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  await mkdir(root, { recursive: true });
  await mkdir(outside);
  const stateDir = resolveStateDir(root, undefined);
  const manifest = Manifest.open(stateDir.abs);
  // A watermark far ahead: born = mtime here (the watermark bound is tested with the manifest).
  manifest.setState('watermark', Number.MAX_SAFE_INTEGER);
  const lines: string[] = [];
  fx = { root, outside, stateDir, manifest, lines, executor: new GateExecutor(manifest, root, stateDir, createLogger('info', (l) => lines.push(l))) };
});

const f = (): Fixture => fx as Fixture;
const abs = (rel: string): string => path.join(f().root, rel);

/** Writes `rel` with mtime `born` and records it (born = mtime, as the receiver does). */
async function addFile(rel: string, born: number, content = `content of ${rel}\n`): Promise<void> {
  await mkdir(path.dirname(abs(rel)), { recursive: true });
  await writeFile(abs(rel), content);
  await utimes(abs(rel), utimeValue(born), utimeValue(born));
  const e: Entry = { path: rel, kind: 'file', size: Buffer.byteLength(content), mtimeMs: born, mode: 0o644, hash: '0123456789abcdef', target: null };
  f().manifest.recordPresent(e, born);
}
async function addDir(rel: string, born: number): Promise<void> {
  await mkdir(abs(rel), { recursive: true });
  f().manifest.recordPresent({ path: rel, kind: 'dir', size: 0, mtimeMs: born, mode: 0o755, hash: null, target: null }, born);
}
async function addLink(rel: string, target: string, born: number): Promise<void> {
  await mkdir(path.dirname(abs(rel)), { recursive: true });
  await symlink(target, abs(rel));
  f().manifest.recordPresent({ path: rel, kind: 'symlink', size: Buffer.byteLength(target), mtimeMs: born, mode: 0o777, hash: null, target }, born);
}
const tombstone = (rel: string, deletedAt: number): void => f().manifest.recordTombstone(rel, deletedAt, deletedAt);

interface RemovalRow { path: string; kind: string; reason: string; snapshot_time: number | null; quarantine: string | null; restored_at: number | null }
const removals = (): RemovalRow[] =>
  f().manifest.db.prepare('SELECT path, kind, reason, snapshot_time, quarantine, restored_at FROM removals ORDER BY id').all() as RemovalRow[];
const rows = (): ManifestEntry[] => [...f().manifest.entries()];
/** The tree minus the state dir. Directory mtimes are left out: moving a file out or back in touches its parent. */
const tree = () => readTree(f().root, { dirTimes: false, skip: (rel) => rel === '.warmsync' || rel.startsWith('.warmsync/') });

describe('applySnapshot', () => {
  test('records T; an older T is reported and ignored; an equal T is accepted', async () => {
    const first = await f().executor.applySnapshot(T, TIMES);
    assert.deepEqual({ t: first.snapshotTime, advanced: first.advanced, previous: first.previous }, { t: T, advanced: true, previous: null });
    const older = await f().executor.applySnapshot(T - 1, TIMES);
    assert.deepEqual({ t: older.snapshotTime, advanced: older.advanced, previous: older.previous }, { t: T, advanced: false, previous: T });
    assert.equal(f().manifest.getNumber('snapshotTime'), T);
    const same = await f().executor.applySnapshot(T, TIMES);
    assert.equal(same.advanced, true);
    const newer = await f().executor.applySnapshot(T + 1, TIMES);
    assert.deepEqual({ t: newer.snapshotTime, previous: newer.previous }, { t: T + 1, previous: T });
    assert.equal(f().manifest.getNumber('snapshotTime'), T + 1);
  });

  test('two snapshots racing (a newer one first): T still never moves backwards', async () => {
    await f().executor.applySnapshot(T - 10_000, TIMES);
    const [a, b] = await Promise.all([f().executor.applySnapshot(T, TIMES), f().executor.applySnapshot(T - 5000, TIMES)]);
    assert.equal(a.advanced, true);
    assert.equal(b.advanced, false, 'the older one, applied second, is ignored');
    assert.equal(b.previous, T);
    assert.equal(f().manifest.getNumber('snapshotTime'), T);
  });

  test('an ignored older T still applies, at the recorded T, tombstones recorded since', async () => {
    await f().executor.applySnapshot(T, TIMES);
    await addFile('late.bin', T - 2 * HOLD);
    tombstone('late.bin', T - HOLD);
    const outcome = await f().executor.applySnapshot(T - 60_000, TIMES);
    assert.equal(outcome.advanced, false);
    assert.deepEqual(outcome.removed.map((r) => r.path), ['late.bin']);
    assert.equal(outcome.removed[0]?.reason.includes('2026-11-26T10:00:00.000Z'), true, outcome.removed[0]?.reason);
  });

  test('applies only the tombstones T allows: off the disk, row gone, logged with its reason', async () => {
    const old = T - 3_600_000;
    await addFile('filestore/aa/boundary', old);
    await addFile('filestore/aa/just-late', old);
    await addFile('filestore/bb/old', old);
    await addFile('filestore/bb/live', old);
    tombstone('filestore/aa/boundary', T - HOLD); // D + skew + grace == T: applies
    tombstone('filestore/aa/just-late', T - HOLD + 1); // one ms later: held
    tombstone('filestore/bb/old', old);
    const outcome = await f().executor.applySnapshot(T, TIMES);

    assert.deepEqual(outcome.removed.map((r) => r.path).sort(), ['filestore/aa/boundary', 'filestore/bb/old']);
    assert.deepEqual(outcome.held, []);
    assert.equal(outcome.pending, 1);
    for (const gone of ['filestore/aa/boundary', 'filestore/bb/old']) {
      assert.equal(existsSync(abs(gone)), false, `${gone} still on disk`);
      assert.equal(f().manifest.get(gone), undefined, `${gone} still in the manifest`);
    }
    assert.ok(existsSync(abs('filestore/aa/just-late')));
    assert.equal(f().manifest.get('filestore/aa/just-late')?.deletedAt, T - HOLD + 1);
    assert.ok(existsSync(abs('filestore/bb/live')));
    assert.equal(f().manifest.get('filestore/bb/live')?.deletedAt, null);

    // Invariant 6: every removal logged, in the removals table and the log.
    const logged = removals();
    assert.deepEqual(logged.map((r) => r.path).sort(), ['filestore/aa/boundary', 'filestore/bb/old']);
    for (const r of logged) {
      assert.equal(r.kind, 'file');
      assert.equal(r.snapshot_time, T);
      assert.equal(r.quarantine, null);
      assert.match(r.reason, /^tombstone applied: deleted on the source at .*, DB snapshot 2026-11-26T10:00:00.000Z$/);
    }
    assert.ok(f().lines.some((l) => /INFO +removed filestore\/aa\/boundary: tombstone applied/.test(l)), f().lines.join('\n'));
    assert.ok(f().lines.some((l) => /INFO +removed filestore\/bb\/old: tombstone applied/.test(l)), f().lines.join('\n'));
  });

  test('keeps a tombstoned directory that still holds something; empties and removes one whose children go too', async () => {
    const old = T - 3_600_000;
    await addDir('full', old);
    await addFile('full/unrecorded-but-there', old);
    f().manifest.remove('full/unrecorded-but-there');
    await writeFile(abs('full/unrecorded-but-there'), 'x');
    await addDir('gone', old);
    await addDir('gone/sub', old);
    await addFile('gone/sub/x', old);
    for (const p of ['full', 'gone', 'gone/sub', 'gone/sub/x']) tombstone(p, old);

    const outcome = await f().executor.applySnapshot(T, TIMES);
    assert.deepEqual(outcome.removed.map((r) => r.path), ['gone/sub/x', 'gone/sub', 'gone'], 'children before parents');
    assert.deepEqual(outcome.held, [{ path: 'full', why: 'directory still holds 1 entry' }]);
    assert.ok((await stat(abs('full'))).isDirectory());
    assert.ok(existsSync(abs('full/unrecorded-but-there')));
    assert.equal(f().manifest.get('full')?.deletedAt, old, 'its tombstone stays for a later snapshot');
    assert.equal(existsSync(abs('gone')), false);
    assert.equal(outcome.pending, 1);
  });

  test('a file whose path now holds a directory is kept, and said why', async () => {
    const old = T - 3_600_000;
    await addFile('was-a-file', old);
    tombstone('was-a-file', old);
    await unlink(abs('was-a-file'));
    await mkdir(abs('was-a-file'));
    const outcome = await f().executor.applySnapshot(T, TIMES);
    assert.deepEqual(outcome.held, [{ path: 'was-a-file', why: 'a directory now stands where a file was recorded' }]);
    assert.ok((await stat(abs('was-a-file'))).isDirectory());
  });

  test('a tombstone whose file is already gone just drops its row (logged)', async () => {
    const old = T - 3_600_000;
    await addFile('a/already-gone', old);
    tombstone('a/already-gone', old);
    await rm(abs('a'), { recursive: true });
    const outcome = await f().executor.applySnapshot(T, TIMES);
    assert.deepEqual(outcome.removed.map((r) => r.path), ['a/already-gone']);
    assert.equal(f().manifest.get('a/already-gone'), undefined);
    assert.deepEqual(removals().map((r) => r.path), ['a/already-gone']);
  });

  test('never follows a symlinked ancestor out of the root: the outside file survives', async () => {
    const old = T - 3_600_000;
    await addDir('sub', old);
    await addFile('sub/blob', old);
    tombstone('sub/blob', old);
    // Someone replaced sub/ with a symlink to a directory outside the root holding a same-named file.
    await writeFile(path.join(f().outside, 'blob'), 'precious\n');
    await rename(abs('sub'), abs('sub-moved'));
    await symlink(f().outside, abs('sub'));

    const outcome = await f().executor.applySnapshot(T, TIMES);
    assert.deepEqual(outcome.removed, []);
    assert.equal(outcome.held.length, 1);
    assert.equal(outcome.held[0]?.path, 'sub/blob');
    assert.match(outcome.held[0]?.why ?? '', /UNSAFE_PATH|not a directory on the standby/);
    assert.equal(readFileSync(path.join(f().outside, 'blob'), 'utf8'), 'precious\n');
    assert.equal(f().manifest.get('sub/blob')?.deletedAt, old, 'the tombstone stays');
    assert.deepEqual(removals(), []);
  });
});

describe('promote and restore', () => {
  const OLD = T - 86_400_000;
  /** A standby with every kind of row around T; returns what a promotion at T must take. */
  async function standby(): Promise<string[]> {
    await addFile('filestore/aa/old', OLD);
    await addFile('filestore/aa/boundary', T + TIMES.skewMs); // born exactly T + skew: kept
    await addFile('filestore/bb/new', T + TIMES.skewMs + 1); // born after T + skew: goes
    await addFile('filestore/cc/future', T + 86_400_000);
    await addDir('filestore/dd', T + 86_400_000); // directories are never born-after
    await addFile('filestore/dd/nested-new', T + 86_400_000);
    await addLink('links/new-link', '../filestore/aa/old', T + 60_000);
    await addLink('links/old-link', '../filestore/aa/old', OLD);
    await addFile('filestore/ee/deleted-long-ago', OLD);
    tombstone('filestore/ee/deleted-long-ago', T - HOLD); // allowed at T: goes
    await addFile('filestore/ee/deleted-recently', OLD);
    tombstone('filestore/ee/deleted-recently', T - HOLD + 1); // held at T: kept
    await addFile('filestore/ff/born-after-missing', T + 60_000);
    await unlink(abs('filestore/ff/born-after-missing')); // recorded, but not on disk any more
    return ['filestore/bb/new', 'filestore/cc/future', 'filestore/dd/nested-new', 'filestore/ee/deleted-long-ago', 'filestore/ff/born-after-missing', 'links/new-link'];
  }

  test('planPromotion names exactly the born-after files plus the allowed tombstones, and changes nothing', async () => {
    const expected = await standby();
    const [treeBefore, rowsBefore] = [await tree(), rows()];
    const plan = f().executor.planPromotion(T, TIMES);
    assert.deepEqual(plan.map((p) => p.path), expected);
    assert.match(plan.find((p) => p.path === 'filestore/bb/new')?.reason ?? '', /^born .*, after the DB snapshot 2026-11-26T10:00:00.000Z \+ skew$/);
    assert.match(plan.find((p) => p.path === 'filestore/ee/deleted-long-ago')?.reason ?? '', /^deleted on the source at .*, before the DB snapshot/);
    assert.deepEqual(await tree(), treeBefore);
    assert.deepEqual(rows(), rowsBefore);
    assert.deepEqual(removals(), []);
    assert.equal(existsSync(path.join(f().stateDir.abs, 'quarantine')), false);
  });

  test('promote quarantines exactly those, under their relative paths, with report.json; the rest stays', async () => {
    const expected = await standby();
    const treeBefore = await tree();
    const outcome = await f().executor.promote(T, TIMES, false);
    assert.deepEqual(outcome.failed, []);
    assert.deepEqual(outcome.removed.map((r) => r.path), expected);
    assert.ok(outcome.id !== null && /^[0-9T-]+Z$/.test(outcome.id), String(outcome.id));
    const qdir = path.join(f().stateDir.abs, 'quarantine', outcome.id);

    const after = await tree();
    const present = expected.filter((p) => p !== 'filestore/ff/born-after-missing');
    for (const p of present) {
      assert.equal(after[p], undefined, `${p} still in the tree`);
      assert.equal(f().manifest.get(p), undefined, `${p} still in the manifest`);
    }
    // Everything else is untouched, directories included.
    const kept = Object.fromEntries(Object.entries(treeBefore).filter(([p]) => !present.includes(p) && p !== 'filestore/dd' && p !== 'links' && !/^filestore\/(bb|cc)$/.test(p)));
    for (const [p, item] of Object.entries(kept)) assert.deepEqual(after[p], item, `${p} changed`);
    assert.ok(after['filestore/dd']?.kind === 'dir');
    assert.equal(f().manifest.get('filestore/ee/deleted-recently')?.deletedAt, T - HOLD + 1);

    // The quarantine holds the same relative paths, content and mtimes.
    const quarantined = await readTree(qdir, { skip: (rel) => rel === REPORT_FILE });
    for (const p of present) assert.deepEqual(quarantined[p], treeBefore[p], `${p} in the quarantine`);
    assert.equal(quarantined['filestore/ff/born-after-missing'], undefined);

    const report = JSON.parse(readFileSync(path.join(qdir, REPORT_FILE), 'utf8')) as {
      id: string; snapshotTime: number; skewMs: number; deleteGraceMs: number; root: string;
      entries: Array<{ path: string; bornMs: number; deletedAt: number | null; reason: string; wasPresent: boolean; kind: string }>;
    };
    assert.equal(report.id, outcome.id);
    assert.equal(report.snapshotTime, T);
    assert.equal(report.skewMs, TIMES.skewMs);
    assert.equal(report.deleteGraceMs, TIMES.deleteGraceMs);
    assert.equal(report.root, f().root);
    assert.deepEqual(report.entries.map((e) => e.path), expected);
    const byPath = new Map(report.entries.map((e) => [e.path, e]));
    assert.equal(byPath.get('filestore/bb/new')?.bornMs, T + TIMES.skewMs + 1);
    assert.equal(byPath.get('filestore/ee/deleted-long-ago')?.deletedAt, T - HOLD);
    assert.equal(byPath.get('filestore/ff/born-after-missing')?.wasPresent, false);
    assert.equal(byPath.get('links/new-link')?.kind, 'symlink');
    assert.ok(report.entries.every((e) => e.reason.length > 0));

    // Invariant 6: each removal logged with the quarantine it went to.
    assert.deepEqual(removals().map((r) => [r.path, r.quarantine]), expected.map((p) => [p, outcome.id]));
    assert.ok(removals().every((r) => /^quarantined at promotion: /.test(r.reason) && r.snapshot_time === T));
    assert.equal(f().manifest.quarantinedCount(), expected.length);
    assert.deepEqual(await f().executor.quarantines(), [outcome.id]);
  });

  test('--purge deletes instead: no quarantine, removals logged as purged', async () => {
    const expected = await standby();
    const outcome = await f().executor.promote(T, TIMES, true);
    assert.equal(outcome.id, null);
    assert.deepEqual(outcome.removed.map((r) => r.path), expected);
    for (const p of expected) assert.equal(existsSync(abs(p)), false, p);
    assert.ok(existsSync(abs('filestore/aa/old')));
    assert.equal(existsSync(path.join(f().stateDir.abs, 'quarantine')), false);
    assert.ok(removals().every((r) => /^purged at promotion: /.test(r.reason) && r.quarantine === null));
    assert.equal(f().manifest.quarantinedCount(), 0);
  });

  test('promote never follows a symlinked ancestor: the path fails, the outside file survives', async () => {
    await addDir('sub', OLD);
    await addFile('sub/new', T + 60_000);
    await addFile('elsewhere/new', T + 60_000);
    await writeFile(path.join(f().outside, 'new'), 'precious\n');
    await rename(abs('sub'), abs('sub-moved'));
    await symlink(f().outside, abs('sub'));
    const outcome = await f().executor.promote(T, TIMES, true);
    assert.deepEqual(outcome.removed.map((r) => r.path), ['elsewhere/new']);
    assert.equal(outcome.failed.length, 1);
    assert.equal(outcome.failed[0]?.path, 'sub/new');
    assert.equal(readFileSync(path.join(f().outside, 'new'), 'utf8'), 'precious\n');
    assert.notEqual(f().manifest.get('sub/new'), undefined, 'its row stays');
  });

  test('restore puts files and rows back with their original born times and tombstones', async () => {
    const expected = await standby();
    const treeBefore = await tree();
    const rowsBefore = new Map(rows().map((r) => [r.path, r]));
    const { id } = await f().executor.promote(T, TIMES, false);
    const outcome = await f().executor.restore(id as string);
    const present = expected.filter((p) => p !== 'filestore/ff/born-after-missing');
    assert.deepEqual(outcome.restored, present);
    assert.deepEqual(outcome.skipped.map((s) => s.path), ['filestore/ff/born-after-missing']);
    assert.deepEqual(await tree(), treeBefore);
    for (const p of present) {
      const before = rowsBefore.get(p) as ManifestEntry;
      const now = f().manifest.get(p);
      assert.deepEqual(now, { ...before, damaged: false }, `${p} row`);
    }
    assert.equal(f().manifest.get('filestore/ee/deleted-long-ago')?.deletedAt, T - HOLD, 'a restored tombstone is a tombstone again');
    assert.equal(f().manifest.quarantinedCount(), 1, 'only the entry that was never on disk stays counted');
    assert.ok(removals().filter((r) => present.includes(r.path)).every((r) => r.restored_at !== null));
  });

  test('restore skips paths occupied again (on disk or in the manifest) and names them', async () => {
    await standby();
    const { id } = await f().executor.promote(T, TIMES, false);
    await writeFile(abs('filestore/bb/new'), 'a newer file, sent by the agent since\n');
    f().manifest.recordPresent({ path: 'links/new-link', kind: 'file', size: 1, mtimeMs: T, mode: 0o644, hash: 'fedcba9876543210', target: null }, T);
    const outcome = await f().executor.restore(id as string);
    const skipped = new Map(outcome.skipped.map((s) => [s.path, s.why]));
    assert.equal(skipped.get('filestore/bb/new'), 'something is at that path again');
    assert.equal(skipped.get('links/new-link'), 'something is at that path again');
    assert.equal(readFileSync(abs('filestore/bb/new'), 'utf8'), 'a newer file, sent by the agent since\n');
    assert.ok(outcome.restored.includes('filestore/cc/future'));
    // What was skipped is still in the quarantine, not lost.
    const qdir = path.join(f().stateDir.abs, 'quarantine', id as string);
    assert.ok(existsSync(path.join(qdir, 'filestore/bb/new')));
    assert.ok((await readdir(path.join(qdir, 'links'))).includes('new-link'));
  });

  test('restore of an unknown quarantine fails with NO_QUARANTINE', async () => {
    await assert.rejects(f().executor.restore('no-such-id'), (err: unknown) => err instanceof WarmsyncError && err.code === 'NO_QUARANTINE');
  });
});
