/**
 * gate/policy: table-driven boundaries of mayApplyTombstone, tombstonesAllowed, bornAfter and
 * failoverVerdict; then property-based tests (fast-check) of invariant 1 against a model of the DB
 * over random histories of one path set.
 *
 * The model (all times integer ms on the active's clock unless said otherwise):
 * - Source: each path lives several lives: created at c, rewritten 0..3 times (modify), deleted at d,
 *   re-created later. Artifactory semantics: an upload writes the file (create, modifies) and then
 *   commits the row some ms later; the binary is never rewritten after its row committed. GC deletes
 *   the file at d inside a transaction that commits up to `grace` ms later. The DB clock is the
 *   active's clock plus an offset within [-skew, skew].
 * - DB at T references a path when one of its lives has its row committed (DB clock) at or before T
 *   and its deletion not committed by T.
 * - Standby: the agent looks at a path at random times and records what it sees, as the receiver
 *   does (real Manifest in a temp dir: born = mtime when first recorded, a tombstone's deletedAt =
 *   the look that first saw the path gone, so >= the real deletion; a reappearing path cancels the
 *   tombstone and keeps its born time). Every life is seen at least once and every deletion is seen
 *   before the next life starts (no life passes entirely between two looks). Snapshots arrive at
 *   random times with monotonic T and apply their tombstones, resetting born for the next life.
 * - W at real time s: every source event at or before W was seen by a look at or before s.
 * Checked at every snapshot with W >= T + skew (the failover condition of invariant 4), and at a
 * final random T: every path the model DB references at T is on the standby, is never among
 * tombstonesAllowed and never among bornAfter; born time survives cancelled tombstones; the real
 * Manifest agrees with a pure model of it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Entry } from '../../../src/entry.js';
import {
  DEFAULT_DELETE_GRACE_MS, DEFAULT_SKEW_MS, bornAfter, failoverVerdict, mayApplyTombstone, snapshotAheadBy, tombstonesAllowed,
  type BornRow, type GateTimes, type TombstoneRow,
} from '../../../src/gate/policy.js';
import { Manifest } from '../../../src/manifest/manifest.js';

const D = 1_764_177_919_231;
const DEFAULTS: GateTimes = { skewMs: DEFAULT_SKEW_MS, deleteGraceMs: DEFAULT_DELETE_GRACE_MS };

describe('mayApplyTombstone', () => {
  const cases: Array<{ name: string; deletedAt: number; t: number; times: GateTimes; apply: boolean }> = [
    { name: 'D + skew + grace == T applies', deletedAt: D, t: D + 2000 + 600_000, times: DEFAULTS, apply: true },
    { name: 'one ms less does not', deletedAt: D, t: D + 2000 + 600_000 - 1, times: DEFAULTS, apply: false },
    { name: 'one ms more applies', deletedAt: D, t: D + 2000 + 600_000 + 1, times: DEFAULTS, apply: true },
    { name: 'T == D is far too early with the defaults', deletedAt: D, t: D, times: DEFAULTS, apply: false },
    { name: 'T before D never applies', deletedAt: D, t: D - 1, times: { skewMs: 0, deleteGraceMs: 0 }, apply: false },
    { name: 'skew 0, grace 0: T == D applies', deletedAt: D, t: D, times: { skewMs: 0, deleteGraceMs: 0 }, apply: true },
    { name: 'skew alone counts', deletedAt: D, t: D + 49, times: { skewMs: 50, deleteGraceMs: 0 }, apply: false },
    { name: 'grace alone counts', deletedAt: D, t: D + 99, times: { skewMs: 0, deleteGraceMs: 100 }, apply: false },
    { name: 'skew and grace add up', deletedAt: D, t: D + 150, times: { skewMs: 50, deleteGraceMs: 100 }, apply: true },
    { name: 'a deletion a day old applies', deletedAt: D - 86_400_000, t: D, times: DEFAULTS, apply: true },
    { name: 'deletion at epoch 0', deletedAt: 0, t: 2600, times: { skewMs: 600, deleteGraceMs: 2000 }, apply: true },
  ];
  for (const c of cases) {
    test(c.name, () => assert.equal(mayApplyTombstone(c.deletedAt, c.t, c.times), c.apply));
  }
});

describe('tombstonesAllowed', () => {
  const times: GateTimes = { skewMs: 10, deleteGraceMs: 100 };
  const T = D + 110;
  const row = (p: string, deletedAt: number, extra = 0): TombstoneRow & { extra: number } => ({ path: p, deletedAt, extra });

  test('null T allows nothing', () => {
    assert.deepEqual(tombstonesAllowed([row('a', 0)], null, times), []);
  });
  test('no tombstones, nothing allowed', () => {
    assert.deepEqual(tombstonesAllowed([], T, times), []);
  });
  test('only the rows at or past the boundary, keeping the caller\'s row objects', () => {
    const rows = [row('on-boundary', D, 1), row('one-ms-late', D + 1, 2), row('old', D - 5000, 3), row('future', D + 10_000, 4)];
    const allowed = tombstonesAllowed(rows, T, times);
    assert.deepEqual(allowed.map((r) => r.path).sort(), ['old', 'on-boundary']);
    assert.ok(allowed.every((r) => rows.includes(r)), 'returns the input rows themselves');
    assert.equal(rows.length, 4, 'the input is not changed');
    assert.deepEqual(rows.map((r) => r.path), ['on-boundary', 'one-ms-late', 'old', 'future']);
  });
  test('children come before their parents (a directory is emptied before it goes)', () => {
    const paths = ['a', 'a/b', 'a/b/c', 'a-b', 'a.b/x', 'b', 'a/b c', 'z/y/x'];
    const allowed = tombstonesAllowed(paths.map((p) => row(p, D)), T, times).map((r) => r.path);
    assert.equal(allowed.length, paths.length);
    for (const child of allowed) {
      for (const parent of allowed) {
        if (child.startsWith(parent + '/')) {
          assert.ok(allowed.indexOf(child) < allowed.indexOf(parent), `${child} before ${parent}: ${allowed.join(', ')}`);
        }
      }
    }
  });
});

describe('bornAfter', () => {
  const T = D;
  const r = (p: string, kind: BornRow['kind'], bornMs: number): BornRow => ({ path: p, kind, bornMs });
  const cases: Array<{ name: string; row: BornRow; skew: number; after: boolean }> = [
    { name: 'born exactly T + skew is kept', row: r('f', 'file', T + 2000), skew: 2000, after: false },
    { name: 'born T + skew + 1 goes', row: r('f', 'file', T + 2001), skew: 2000, after: true },
    { name: 'born at T is kept', row: r('f', 'file', T), skew: 2000, after: false },
    { name: 'born long before T is kept', row: r('f', 'file', T - 86_400_000), skew: 2000, after: false },
    { name: 'skew 0: born T + 1 goes', row: r('f', 'file', T + 1), skew: 0, after: true },
    { name: 'skew 0: born T is kept', row: r('f', 'file', T), skew: 0, after: false },
    { name: 'a symlink born after T + skew goes', row: r('l', 'symlink', T + 5000), skew: 2000, after: true },
    { name: 'a symlink born at T + skew is kept', row: r('l', 'symlink', T + 2000), skew: 2000, after: false },
    { name: 'a directory is never born-after', row: r('d', 'dir', T + 86_400_000), skew: 2000, after: false },
    { name: 'a directory born just after is never born-after', row: r('d', 'dir', T + 2001), skew: 2000, after: false },
    { name: 'pre-1970 born times are kept', row: r('f', 'file', -5000), skew: 0, after: false },
  ];
  for (const c of cases) {
    test(c.name, () => assert.deepEqual(bornAfter([c.row], T, c.skew), c.after ? [c.row] : []));
  }
  test('a mixed list keeps order and row objects', () => {
    const rows = [r('a', 'file', T + 9000), r('b', 'dir', T + 9000), r('c', 'file', T), r('d', 'symlink', T + 9000)];
    const out = bornAfter(rows, T, 2000);
    assert.deepEqual(out, [rows[0], rows[3]]);
    assert.ok(out[0] === rows[0]);
  });
});

describe('snapshotAheadBy: a T from the future is refused (issue 17, finding 7)', () => {
  const NOW = D;
  const cases: Array<{ name: string; t: number; skew: number; want: number | null }> = [
    { name: 'T in the past', t: NOW - 60_000, skew: 2000, want: null },
    { name: 'T = now', t: NOW, skew: 2000, want: null },
    { name: 'T = now + skew: the active clock may run ahead by skew', t: NOW + 2000, skew: 2000, want: null },
    { name: 'T = now + skew + 1 ms', t: NOW + 2001, skew: 2000, want: 1 },
    { name: 'skew 0: T = now + 1 ms', t: NOW + 1, skew: 0, want: 1 },
    { name: 'the typo 2099-01-01', t: Date.parse('2099-01-01T00:00:00Z'), skew: 2000, want: Date.parse('2099-01-01T00:00:00Z') - NOW - 2000 },
  ];
  for (const c of cases) test(c.name, () => assert.equal(snapshotAheadBy(c.t, NOW, c.skew), c.want));
});

describe('failoverVerdict', () => {
  const T = D;
  const cases: Array<{ name: string; t: number | null; w: number | null; skew: number; safe: boolean; target: number | null; reason: RegExp }> = [
    { name: 'no watermark: unsafe, no recovery target', t: T, w: null, skew: 2000, safe: false, target: null, reason: /no watermark/ },
    { name: 'neither T nor W: unsafe, no recovery target', t: null, w: null, skew: 2000, safe: false, target: null, reason: /no watermark/ },
    { name: 'no snapshot time: unsafe, recovery target still W - skew', t: null, w: T, skew: 2000, safe: false, target: T - 2000, reason: /no DB snapshot time/ },
    { name: 'W == T + skew is safe', t: T, w: T + 2000, skew: 2000, safe: true, target: T, reason: /0 ms ahead/ },
    { name: 'W == T + skew - 1 is unsafe, 1 ms behind', t: T, w: T + 1999, skew: 2000, safe: false, target: T - 1, reason: /1 ms behind/ },
    { name: 'W == T is unsafe with a skew', t: T, w: T, skew: 2000, safe: false, target: T - 2000, reason: /2000 ms behind/ },
    { name: 'W well ahead is safe', t: T, w: T + 60_000, skew: 2000, safe: true, target: T + 58_000, reason: /58000 ms ahead/ },
    { name: 'skew 0: W == T is safe, target W', t: T, w: T, skew: 0, safe: true, target: T, reason: /0 ms ahead/ },
    { name: 'skew 0: W == T - 1 is unsafe', t: T, w: T - 1, skew: 0, safe: false, target: T - 1, reason: /1 ms behind.*recovery target/ },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const v = failoverVerdict(c.t, c.w, c.skew);
      assert.equal(v.safe, c.safe);
      assert.equal(v.recoveryTarget, c.target);
      assert.match(v.reason, c.reason);
    });
  }
  test('files the standby lacks (its root lost, verify\'s finding) are unsafe whatever W and T, said why, the recovery target kept', () => {
    assert.deepEqual(failoverVerdict(T, T + 60_000, 2000, null, { kind: 'root', detail: '/srv/standby is missing' }), {
      safe: false, reason: 'the standby root /srv/standby is missing: a failover would not find its files there', recoveryTarget: T + 58_000,
    });
    assert.deepEqual(failoverVerdict(T, T + 60_000, 2000, null, { kind: 'verify', files: 3, at: T + 1000 }), {
      safe: false,
      reason: `verify found 3 file(s) missing or corrupt here at ${new Date(T + 1000).toISOString()}: the agent sends them again at its next full pass (restarting it starts one)`,
      recoveryTarget: T + 58_000,
    });
    const lack = fc.oneof(
      fc.record({ kind: fc.constant('root' as const), detail: fc.string() }),
      fc.record({ kind: fc.constant('verify' as const), files: fc.nat(), at: fc.nat() }),
    );
    fc.assert(fc.property(fc.option(fc.integer({ min: 0, max: 2 ** 45 })), fc.option(fc.integer({ min: 0, max: 2 ** 45 })), fc.integer({ min: 0, max: 86_400_000 }), lack, (t, w, skew, l) => {
      assert.equal(failoverVerdict(t, w, skew, null, l).safe, false);
    }), { numRuns: 200 });
  });
  test('recoveryTarget is always W - skew when W is known, whatever T', () => {
    fc.assert(fc.property(fc.option(fc.integer({ min: 0, max: 2 ** 45 })), fc.integer({ min: 0, max: 2 ** 45 }), fc.integer({ min: 0, max: 86_400_000 }), (t, w, skew) => {
      const v = failoverVerdict(t, w, skew);
      assert.equal(v.recoveryTarget, w - skew);
      assert.equal(v.safe, t !== null && w >= t + skew);
    }), { numRuns: 200 });
  });
});

// ---- the model --------------------------------------------------------------------------------

interface LifeSpec {
  createGap: number; writeGaps: number[]; commitDelay: number; deleteAfter: number;
  deleteCommitPermille: number; lookPermille: number; goneLookPermille: number;
}
interface HistorySpec {
  skew: number; grace: number; offsetPermille: number;
  paths: Array<{ lives: LifeSpec[]; lastStays: boolean }>;
  extraLooks: Array<{ path: number; atPermille: number }>;
  /**
   * At a random time, or aimed within 2 ms of a boundary: a life's deletion + skew + grace, its GC
   * transaction's commit, or its row's commit (both DB clock).
   */
  snapshots: Array<{ atPermille: number; lag: number; anchor: null | { path: number; life: number; on: 'delete' | 'gc' | 'commit'; delta: number } }>;
  finalPermille: number;
}

interface Life {
  readonly c: number;
  /** Write times, ascending; the first is c. All before `commit` (Artifactory: the binary is immutable once its row commits). */
  readonly writes: number[];
  /** Row commit, active's clock. */
  readonly commit: number;
  /** Deletion on the source, or null while it lives on. */
  readonly d: number | null;
  /** The GC transaction's commit, active's clock: within [d, d + grace]. */
  readonly delCommit: number | null;
}

interface History {
  readonly times: GateTimes;
  /** DB clock = active's clock + offset. */
  readonly offset: number;
  readonly lives: Life[][];
  readonly looks: Array<{ path: number; at: number }>;
  readonly snapshots: Array<{ at: number; t: number }>;
  readonly horizon: number;
  readonly finalPermille: number;
}

const PATHS = ['filestore/aa/aa01', 'filestore/aa/aa02', 'filestore/bb/bb01', 'etc/config'];
const BASE = 1_700_000_000_000;

/** An integer in [min, max], often exactly min or max: the boundaries are where the policy can be wrong. */
const edgy = (min: number, max: number): fc.Arbitrary<number> =>
  fc.oneof({ weight: 2, arbitrary: fc.constant(min) }, { weight: 2, arbitrary: fc.constant(max) }, { weight: 3, arbitrary: fc.integer({ min, max }) });

const lifeArb: fc.Arbitrary<LifeSpec> = fc.record({
  createGap: fc.integer({ min: 1, max: 120 }),
  writeGaps: fc.array(fc.integer({ min: 1, max: 20 }), { maxLength: 3 }),
  commitDelay: edgy(0, 40),
  deleteAfter: edgy(1, 250),
  deleteCommitPermille: edgy(0, 1000),
  lookPermille: edgy(0, 999),
  goneLookPermille: edgy(0, 999),
});

const historyArb: fc.Arbitrary<HistorySpec> = fc.record({
  skew: fc.integer({ min: 0, max: 60 }),
  grace: fc.integer({ min: 0, max: 200 }),
  offsetPermille: edgy(-1000, 1000),
  paths: fc.array(fc.record({ lives: fc.array(lifeArb, { minLength: 1, maxLength: 4 }), lastStays: fc.boolean() }), { minLength: 1, maxLength: PATHS.length }),
  extraLooks: fc.array(fc.record({ path: fc.nat({ max: PATHS.length - 1 }), atPermille: fc.integer({ min: 0, max: 1000 }) }), { maxLength: 12 }),
  snapshots: fc.array(fc.record({
    atPermille: fc.integer({ min: 0, max: 1000 }),
    lag: edgy(0, 300),
    anchor: fc.option(fc.record({
      path: fc.nat({ max: PATHS.length - 1 }), life: fc.nat({ max: 3 }), on: fc.constantFrom('delete' as const, 'gc' as const, 'commit' as const), delta: fc.integer({ min: -2, max: 2 }),
    }), { freq: 2 }),
  }), { maxLength: 8 }),
  finalPermille: fc.integer({ min: 0, max: 1000 }),
});

const frac = (lo: number, hi: number, permille: number): number => lo + Math.floor(((hi - lo) * permille) / 1000);

function buildHistory(spec: HistorySpec): History {
  const times: GateTimes = { skewMs: spec.skew, deleteGraceMs: spec.grace };
  const offset = Math.trunc((spec.skew * spec.offsetPermille) / 1000);
  const lives: Life[][] = spec.paths.map((p) => {
    let t = BASE;
    return p.lives.map((l, k) => {
      const c = t + l.createGap;
      const writes = [c];
      for (const g of l.writeGaps) writes.push((writes.at(-1) as number) + g);
      const commit = (writes.at(-1) as number) + l.commitDelay;
      const stays = k === p.lives.length - 1 && p.lastStays;
      const d = stays ? null : commit + l.deleteAfter;
      const delCommit = d === null ? null : d + Math.floor((spec.grace * l.deleteCommitPermille) / 1000);
      t = d ?? commit;
      return { c, writes, commit, d, delCommit };
    });
  });
  const lastEvent = Math.max(...lives.flat().map((l) => Math.max(l.commit, l.d ?? 0, l.delCommit ?? 0)));
  // Past every event and every anchored snapshot (at most lastEvent + skew + grace + 2 + skew + 300).
  const horizon = lastEvent + 2 * spec.skew + spec.grace + 400;
  const looks: Array<{ path: number; at: number }> = [];
  spec.paths.forEach((p, i) => {
    const mine = lives[i] as Life[];
    p.lives.forEach((l, k) => {
      const life = mine[k] as Life;
      // Every life is seen while it lasts, and every deletion before the next life begins.
      looks.push({ path: i, at: frac(life.c, life.d ?? horizon, l.lookPermille) });
      if (life.d !== null) looks.push({ path: i, at: frac(life.d, mine[k + 1]?.c ?? horizon, l.goneLookPermille) });
    });
    looks.push({ path: i, at: horizon });
  });
  for (const x of spec.extraLooks) if (x.path < spec.paths.length) looks.push({ path: x.path, at: frac(BASE, horizon, x.atPermille) });
  const snapshots = spec.snapshots.map((s) => {
    const life = s.anchor === null ? undefined : lives[s.anchor.path]?.[s.anchor.life];
    if (s.anchor === null || life === undefined || (s.anchor.on !== 'commit' && life.d === null)) {
      const at = frac(BASE, horizon, s.atPermille);
      return { at, t: at - s.lag };
    }
    const t = s.anchor.delta + (s.anchor.on === 'delete' ? (life.d as number) + spec.skew + spec.grace
      : s.anchor.on === 'gc' ? (life.delCommit as number) + offset
        : life.commit + offset);
    // Arrives at real time T + skew + lag: with lag 0, exactly when failing over at T could first be safe.
    return { at: t + spec.skew + s.lag, t };
  });
  return { times, offset, lives, looks, snapshots, horizon, finalPermille: spec.finalPermille };
}

/** The source state of a path at `at`: the live life's mtime, or null when absent. */
function mtimeAt(lives: readonly Life[], at: number): number | null {
  const life = lives.find((l) => l.c <= at && (l.d === null || at < l.d));
  if (life === undefined) return null;
  return Math.max(...life.writes.filter((w) => w <= at));
}

/** Does the model DB at `t` (DB clock) reference the path? */
function referenced(h: History, lives: readonly Life[], t: number): boolean {
  return lives.some((l) => l.commit + h.offset <= t && (l.delCommit === null || l.delCommit + h.offset > t));
}

/** Every source event at or before W was seen by a look at or before `now`. */
function watermarkAt(h: History, now: number): number {
  let w = now;
  h.lives.forEach((lives, i) => {
    const looksHere = h.looks.filter((x) => x.path === i && x.at <= now).map((x) => x.at);
    for (const l of lives) {
      for (const e of [...l.writes, ...(l.d === null ? [] : [l.d])]) {
        if (e <= now && !looksHere.some((at) => at >= e)) w = Math.min(w, e - 1);
      }
    }
  });
  return w;
}

const fileEntry = (p: string, mtimeMs: number): Entry =>
  ({ path: p, kind: 'file', size: 1, mtimeMs, mode: 0o644, hash: mtimeMs.toString(16).padStart(16, '0').slice(-16), target: null });

interface Stats { runs: number; checks: number; heldBack: number; applied: number; cancelled: number; bornAfterSeen: number }

/**
 * Replays one history into `m` (cleared first) and checks the properties; returns nothing, throws on
 * a violation. The pure model of each row (born, deletedAt) is kept alongside and compared.
 */
function replay(m: Manifest, h: History, stats: Stats): void {
  m.db.exec('DELETE FROM entries; DELETE FROM state; DELETE FROM removals');
  const model = new Map<string, { born: number; deletedAt: number | null }>();
  type Item = { at: number; look?: number; snapshot?: number };
  const items: Item[] = [...h.looks.map((x) => ({ at: x.at, look: x.path })), ...h.snapshots.map((s) => ({ at: s.at, snapshot: s.t }))];
  // Ties: looks first, so a snapshot sees what was looked at in the same ms.
  items.sort((a, b) => a.at - b.at || (a.look === undefined ? 1 : 0) - (b.look === undefined ? 1 : 0));
  let recorded: number | null = null;

  const check = (t: number, now: number, where: string): void => {
    if (watermarkAt(h, now) < t + h.times.skewMs) return; // failing over at t is not claimed safe here
    stats.checks++;
    const allowed = new Set(tombstonesAllowed(m.tombstones(), t, h.times).map((r) => r.path));
    const after = new Set(bornAfter([...m.live(), ...m.tombstones()], t, h.times.skewMs).map((r) => r.path));
    stats.bornAfterSeen += after.size;
    h.lives.forEach((lives, i) => {
      const p = PATHS[i] as string;
      const row = m.get(p);
      if (row?.deletedAt != null && !allowed.has(p)) stats.heldBack++;
      if (!referenced(h, lives, t)) return;
      const ctx = `${where}: ${p} is referenced by the DB at T=${t} (row ${JSON.stringify(row)})`;
      assert.ok(row !== undefined, `${ctx} but the standby has no row for it`);
      assert.ok(!allowed.has(p), `${ctx} but its tombstone is allowed`);
      assert.ok(!after.has(p), `${ctx} but it is born after T + skew`);
    });
  };

  for (const item of items) {
    if (item.look !== undefined) {
      const p = PATHS[item.look] as string;
      const mtime = mtimeAt(h.lives[item.look] as Life[], item.at);
      const before = m.get(p);
      const mod = model.get(p);
      if (mtime !== null) {
        // The receiver holds the watermark the agent last reported: everything observed before it.
        const held = watermarkAt(h, item.at - 1);
        m.setState('watermark', held);
        m.recordPresent(fileEntry(p, mtime), item.at);
        if (mod === undefined) model.set(p, { born: Math.min(mtime, held), deletedAt: null });
        else {
          if (mod.deletedAt !== null) stats.cancelled++;
          mod.deletedAt = null;
        }
        // Born survives a cancelled tombstone (and any re-record while the row exists).
        if (before !== undefined) assert.equal(m.get(p)?.bornMs, before.bornMs, `${p}: born changed from ${before.bornMs} when re-recorded at ${item.at}`);
      } else if (mod !== undefined && mod.deletedAt === null) {
        m.recordTombstone(p, item.at, item.at);
        mod.deletedAt = item.at;
      }
      const row = m.get(p);
      const now = model.get(p);
      assert.deepEqual(row === undefined ? undefined : { born: row.bornMs, deletedAt: row.deletedAt }, now, `${p}: manifest and model disagree after a look at ${item.at}`);
    } else {
      const t = Math.max(item.snapshot as number, recorded ?? -Infinity); // T never moves backwards
      recorded = t;
      check(t, item.at, `snapshot at ${item.at}`);
      for (const row of tombstonesAllowed(m.tombstones(), t, h.times)) {
        m.remove(row.path); // as GateExecutor.applySnapshot does once the file is gone
        model.delete(row.path);
        stats.applied++;
      }
    }
  }
  // A final T, no older than the recorded one, up to the latest T the end state is claimed safe for.
  const lo = recorded ?? BASE;
  const hi = h.horizon - h.times.skewMs;
  check(lo >= hi ? lo : frac(lo, hi, h.finalPermille), h.horizon, 'final');
}

describe('invariant 1 against a model of the DB (fast-check; real Manifest in a temp dir)', () => {
  let tmp: string;
  let manifest: Manifest;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-policy-'));
    manifest = Manifest.open(path.join(tmp, 'state'));
  });
  after(async () => {
    manifest.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('nothing the DB references at T is missing, tombstone-allowed or born-after; born survives cancelled tombstones', () => {
    const stats: Stats = { runs: 0, checks: 0, heldBack: 0, applied: 0, cancelled: 0, bornAfterSeen: 0 };
    fc.assert(fc.property(historyArb, (spec) => {
      stats.runs++;
      replay(manifest, buildHistory(spec), stats);
    }), { numRuns: 1000 });
    // Not vacuous: the gate had to hold tombstones back, applied others, saw cancellations and born-after rows.
    for (const [k, v] of Object.entries(stats)) assert.ok(v > 20, `too few ${k} over the runs: ${JSON.stringify(stats)}`);
  });

  test('the model itself: a tombstone applied too early would be caught', () => {
    // Guard against a model that cannot fail: with grace 0 but a GC transaction committing 100 ms
    // after the deletion, a policy that ignored grace would remove a referenced file.
    const h = buildHistory({
      skew: 0, grace: 0, offsetPermille: 0, finalPermille: 0,
      paths: [{ lives: [{ createGap: 1, writeGaps: [], commitDelay: 0, deleteAfter: 10, deleteCommitPermille: 0, lookPermille: 0, goneLookPermille: 0 }], lastStays: false }],
      extraLooks: [], snapshots: [],
    });
    const life = (h.lives[0] as Life[])[0] as Life;
    const slow: History = { ...h, lives: [[{ ...life, delCommit: (life.d as number) + 100 }]], snapshots: [{ at: h.horizon, t: (life.d as number) + 50 }] };
    const stats: Stats = { runs: 0, checks: 0, heldBack: 0, applied: 0, cancelled: 0, bornAfterSeen: 0 };
    assert.throws(() => replay(manifest, slow, stats), /its tombstone is allowed/);
  });

  test('a binary rewritten after its row committed, and first seen only then, is not born after T', () => {
    // Born is bounded by the watermark held at first record, not just the (late) mtime.
    // created 1000, row committed 1005, rewritten 1100, first seen by the agent at 1200; DB at T=1010.
    const h: History = {
      times: { skewMs: 0, deleteGraceMs: 0 }, offset: 0, horizon: 1300, finalPermille: 0,
      lives: [[{ c: 1000, writes: [1000, 1100], commit: 1005, d: null, delCommit: null }]],
      looks: [{ path: 0, at: 1200 }], snapshots: [{ at: 1250, t: 1010 }],
    };
    replay(manifest, h, { runs: 0, checks: 0, heldBack: 0, applied: 0, cancelled: 0, bornAfterSeen: 0 });
  });
});
