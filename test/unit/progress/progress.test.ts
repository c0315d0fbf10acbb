/**
 * createProgress off a terminal: periodic plain lines while a phase runs, one line when it ends,
 * none for a phase that did nothing; 'off' (--json, --quiet) gives no sink at all; the mode
 * follows --json/--quiet and the terminal; countingHasher reports every hashed file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createLogger } from '../../../src/log.js';
import { countingHasher, createProgress, progressMode } from '../../../src/progress/progress.js';
import { createHasher } from '../../../src/scan/hash.js';

describe('progressMode', () => {
  const cases: ReadonlyArray<[{ json?: boolean; quiet?: boolean }, boolean, string]> = [
    [{}, true, 'bar'], [{}, false, 'lines'], [{ json: true }, true, 'off'], [{ quiet: true }, true, 'off'], [{ quiet: true }, false, 'off'],
  ];
  for (const [flags, tty, want] of cases) test(`${JSON.stringify(flags)} tty=${tty}: ${want}`, () => assert.equal(progressMode(flags, tty), want));
});

describe('plain lines', () => {
  test('periodic lines while a phase runs, a done line at its end', async () => {
    const lines: string[] = [];
    let clock = 0;
    const sink = createProgress('lines', createLogger('info', (l) => lines.push(l)), () => clock, 10);
    assert.ok(sink !== null);
    sink.phase('sending', { files: 4, bytes: 4096 });
    clock = 2000;
    sink.add(1, 1024);
    const deadline = Date.now() + 5000;
    while (lines.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.match(lines[0] ?? '', /INFO {2}sending: {2}25% 1\/4 files, 1\.00 KiB\/4\.00 KiB, 512 B\/s, ETA 6\.0 s$/);
    sink.add(3, 3072);
    clock = 4000;
    sink.done();
    assert.match(lines.at(-1) ?? '', /INFO {2}sending: done, 4 files, 4\.00 KiB in 4\.0 s \(1\.00 KiB\/s\)$/);
    const count = lines.length;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(lines.length, count, 'no line after done');
  });
  test('a phase that did nothing ends without a line; the next phase ends the previous one', () => {
    const lines: string[] = [];
    const sink = createProgress('lines', createLogger('info', (l) => lines.push(l)), () => 0, 60_000);
    assert.ok(sink !== null);
    sink.phase('hashing', null);
    sink.phase('sending', { files: 1, bytes: 1 });
    assert.deepEqual(lines, []);
    sink.add(1, 1);
    sink.done();
    sink.done();
    assert.equal(lines.length, 1);
  });
  test('a phase begun earlier (since): its count and rate start from what was done before it', () => {
    const lines: string[] = [];
    let clock = 10_000;
    const sink = createProgress('lines', createLogger('info', (l) => lines.push(l)), () => clock, 60_000);
    assert.ok(sink !== null);
    sink.phase('scanning', null);
    // Sent while the scan ran: 2 files, 2 KiB, since t = 6 s.
    sink.add(2, 2048);
    sink.phase('sending', { files: 4, bytes: 4096 }, { startedMs: 6000, done: { files: 2, bytes: 2048 } });
    sink.add(2, 2048);
    clock = 14_000;
    sink.done();
    assert.match(lines.at(-1) ?? '', /INFO {2}sending: done, 4 files, 4\.00 KiB in 8\.0 s \(512 B\/s\)$/);
  });
  test("'off' is no sink", () => {
    assert.equal(createProgress('off', createLogger('silent')), null);
  });
});

test('countingHasher reports each hashed file and its size', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'warmsync-progress-'));
  try {
    writeFileSync(join(dir, 'a'), 'hello');
    const seen: number[] = [];
    const hasher = countingHasher(await createHasher(), (size) => seen.push(size));
    const direct = await (await createHasher()).hashFile(join(dir, 'a'));
    assert.deepEqual(await hasher.hashFile(join(dir, 'a')), direct);
    assert.deepEqual(seen, [5]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
