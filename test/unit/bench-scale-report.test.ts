/**
 * The --scale benchmark's report (benchmarks/scale-report.ts), from hand-made measurements: the
 * cost-growth table's cells (medians, per-file CPU, paired ratios), the verdict lines against issue
 * 19's targets (met, missed, not judged), --scale-sizes parsing and the docs section splice.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSizes, scaleTable, spliceSection, verdicts, type IdleRun, type Rounds, type SideRun, type SizeResult } from '../../benchmarks/scale-report.js';

const MiB_KiB = 1024;

function run(wallMs: number, sendCpuMs: number, recvCpuMs: number, sendMB = 100, recvMB = 100): SideRun {
  return { wallMs, sendCpuMs, recvCpuMs, sendPeakKiB: sendMB * MiB_KiB, recvPeakKiB: recvMB * MiB_KiB };
}

function rounds(warmsync: SideRun[], rsync: SideRun[]): Rounds {
  return { warmsync, rsync };
}

function idle(agentMB: number, receiverMB: number): IdleRun {
  return {
    firstPass: run(3000, 2000, 500, agentMB, receiverMB), idleS: 20,
    agentCpuMs: 40, agentPeakKiB: agentMB * MiB_KiB, agentRssKiB: agentMB * MiB_KiB,
    receiverCpuMs: 10, receiverPeakKiB: receiverMB * MiB_KiB, receiverRssKiB: receiverMB * MiB_KiB,
  };
}

/**
 * A size where warmsync costs `k` times rsync everywhere (per file: rsync 100 us sending, 200 us
 * receiving), warmsync's per-file CPU times `growth` on top (rsync's stays flat).
 */
function size(binaries: number, k: number, mb = 100, growth = 1): SizeResult {
  const files = binaries + 20;
  const cpu = (usPerFile: number): number => (usPerFile * files) / 1000;
  const pairOf = (wall: number): Rounds => rounds([run(wall * k, cpu(100) * k * growth, cpu(200) * k * growth, mb, mb)], [run(wall, cpu(100), cpu(200), 10, 5)]);
  return {
    binaries, files, errors: [],
    scenarios: { initial: pairOf(1000), noop: pairOf(200), mutation: pairOf(300) },
    idle: idle(mb, mb),
  };
}

describe('scaleTable', () => {
  test('one row per scenario and two for the live agent, with medians, CPU per file and per-round ratios', () => {
    const r: SizeResult = {
      binaries: 10_000, files: 10_000, errors: [], idle: idle(150, 90),
      scenarios: {
        // Three rounds: medians 2 s / 1 s; ratios per round 2.0, 3.0, 1.0 -> median 2.0.
        initial: rounds([run(2000, 1000, 3000), run(3000, 1000, 3000), run(1000, 1000, 3000)], [run(1000, 500, 1000), run(1000, 500, 1000), run(1000, 500, 1000)]),
      },
    };
    const lines = scaleTable([r]);
    assert.equal(lines.length, 2 + 1 + 2);
    const initial = lines[2] as string;
    assert.match(initial, /^\| 10,000 \| initial sync \| 3 \| 2\.00 s \/ 1\.00 s \(2\.00×\) \|/);
    // 1000 ms over 10,000 files = 100 us a file; rsync's client 50 us.
    assert.match(initial, /\| 100 us \/ 50\.0 us \(2\.00×\) \| 300 us \/ 100 us \(3\.00×\) \|/);
    assert.match(initial, /\| 100 MB \/ 100 MB \| 100 MB \/ 100 MB \|$/);
    assert.match(lines[3] as string, /live agent: first pass .*\| 3\.00 s \(warmsync alone\) \| 200 us \| 50\.0 us \| 150 MB \| 90 MB \|/);
    assert.match(lines[4] as string, /live agent: idle 20 s .*\| 40 ms of CPU in all \| 10 ms of CPU in all \| 150 MB \(150 MB at the end\) \| 90 MB \(90 MB at the end\) \|/);
  });

  test('a failed size gets a row with its error', () => {
    const lines = scaleTable([{ binaries: 5, files: 25, scenarios: {}, idle: null, errors: ['rsync exited 23: boom\nmore'] }]);
    assert.deepEqual(lines.slice(2), ['| 25 | failed | | rsync exited 23: boom | | | | |']);
  });
});

describe('verdicts', () => {
  test('all met at 100k and 1M when warmsync costs as much as rsync, under 200 MB, with a flat slope', () => {
    const lines = verdicts([size(10_000, 1), size(100_000, 1), size(1_000_000, 1)]);
    assert.equal(lines.length, 8);
    for (const l of lines) assert.match(l, /\*\*met\*\*/, l);
    assert.match(lines[1] as string, /^- no-op wall <= 1\.0× the rsync daemon's, at 100,000 and 1,000,000 files: \*\*met\*\* — 100,020: met \(1\.00×\); 1,000,020: met \(1\.00×\); for reference, 10,020: 1\.00×$/);
  });

  test('missed, with the figure, when warmsync is 2× rsync and holds 300 MB at 1M', () => {
    const lines = verdicts([size(100_000, 2, 300), size(1_000_000, 2, 300)]);
    assert.match(lines[0] as string, /^- initial sync wall .*\*\*missed\*\* — 100,020: missed \(2\.00×\); 1,000,020: missed \(2\.00×\)$/);
    assert.match(lines[3] as string, /^- CPU per file, sender .*\*\*missed\*\* — 100,020: missed \(initial sync 2\.00×, no-op 2\.00×, 1 % mutation 2\.00×\)/);
    assert.match(lines[5] as string, /^- agent peak RSS <= 200 MB .*\*\*missed\*\* — 1,000,020: missed \(initial sync 300 MB, no-op 300 MB, idle 300 MB\); for reference, 100,020: /);
  });

  test('the 1.5× CPU bound: 1.4× is met', () => {
    assert.match(verdicts([size(10_000, 1.4)])[4] as string, /^- CPU per file, receiving end .*\*\*met\*\* — 10,020: met \(initial sync 1\.40×/);
  });

  test('sizes the issue names but the run lacks are not judged, and say so', () => {
    const lines = verdicts([size(2_000, 1), size(10_000, 1)]);
    assert.match(lines[1] as string, /^- no-op wall .*: not judged \(100,000 and 1,000,000 files not in this run; for reference, 2,020: 1\.00×, 10,020: 1\.00×\)$/);
    assert.match(lines[6] as string, /^- receiver peak RSS .*: not judged \(1,000,000 files not in this run; for reference, 2,020: initial sync 100 MB, no-op 100 MB, idle 100 MB; 10,020: /);
  });

  test('slope: per-file CPU growing 1.5× from the smallest to the largest size is missed, 1.2× met; one size is not judged', () => {
    const steep = verdicts([size(10_000, 1), size(100_000, 1, 100, 1.5)])[7] as string;
    assert.match(steep, /^- slope flat: .*\(10,020 -> 100,020 files\): \*\*missed\*\* — initial sync, agent: missed \(1\.50×; rsync's client 1\.00×\)/);
    assert.match(verdicts([size(10_000, 1), size(100_000, 1, 100, 1.2)])[7] as string, /\*\*met\*\* — initial sync, agent: met \(1\.20×/);
    assert.match(verdicts([size(10_000, 1)])[7] as string, /not judged \(needs two sizes or more\)$/);
  });
});

describe('parseSizes', () => {
  test('comma-separated counts, spaces and underscores allowed', () => {
    assert.deepEqual(parseSizes('10000, 100_000,1000000'), [10_000, 100_000, 1_000_000]);
  });
  for (const bad of ['', '10k', '0', '-5', '1e6', '10000,,20000', '1.5']) {
    test(`refuses ${JSON.stringify(bad)}, naming it`, () => {
      assert.throws(() => parseSizes(bad), /--scale-sizes takes comma-separated positive file counts/);
    });
  }
  test('refuses a repeated size', () => {
    assert.throws(() => parseSizes('2000,2000'), /--scale-sizes names 2000 twice/);
  });
});

describe('spliceSection', () => {
  const B = '<!-- s:begin -->';
  const E = '<!-- s:end -->';
  test('replaces what is between the markers, markers included, and keeps the rest', () => {
    const doc = `head\n${B}\nold\n${E}\ntail\n`;
    assert.equal(spliceSection(doc, B, E, `${B}\nnew\n${E}`), `head\n${B}\nnew\n${E}\ntail\n`);
  });
  test('appends the block when the markers are missing', () => {
    assert.equal(spliceSection('head\n\n\n', B, E, `${B}\nnew\n${E}`), `head\n\n${B}\nnew\n${E}\n`);
  });
});
