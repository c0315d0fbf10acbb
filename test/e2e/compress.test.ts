// e2e: `agent --compress zstd` (issue 21) through the real bin/warmsync agent and receiver, real
// sockets and SQLite. Text files (small ones, and a 5 MiB one that takes several chunks and a
// fileEnd) arrive byte for byte with fewer bytes on the wire than in the files; random files, and
// a file that is text for its first chunk and random after, arrive byte for byte too, the random
// ones sent raw (wire bytes = file bytes). Without --compress nothing is compressed; `compress:`
// in --config works as the flag. The live agent's /metrics counts wire bytes apart from file
// bytes. A bad --compress value is an exit-2 line.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  assertCleanFailure, assertSameTree, buildTree, closeStandbys, openStandby, runAgent, startLiveAgent, syncOnce, waitForConvergence,
} from '../helpers/e2e.js';

after(closeStandbys);

const MiB = 1024 * 1024;

/** Config-like text of about `bytes` bytes: what etc/ and addons' sources look like to zstd. */
function configText(bytes: number, seed: number): string {
  const lines: string[] = [];
  for (let i = 0, size = 0; size < bytes; i++) {
    const line = `section_${seed}_${i % 97}.option_${i}: value ${(i * 7919 + seed) % 10007} # tuned for host ${i % 13}\n`;
    lines.push(line);
    size += line.length;
  }
  return lines.join('').slice(0, bytes);
}

describe('agent --compress zstd', () => {
  test('text goes compressed, random data raw, and the standby equals the source byte for byte', { timeout: 120_000 }, async () => {
    const s = await openStandby();
    const text = {
      'etc/app.yaml': configText(20_000, 1),
      'etc/tiny.conf': 'a=1\n',
      'etc/empty.conf': '',
      'addons/big.py': configText(5 * MiB + 12_345, 2),
    };
    await buildTree(s.src, text);
    const first = await syncOnce(s, ['--compress', 'zstd']);
    await assertSameTree(s.src, s.dst);
    const textBytes = Object.values(text).reduce((n, t) => n + Buffer.byteLength(t), 0);
    assert.equal(first.bytesSent, textBytes);
    assert.ok(first.wireBytesSent < first.bytesSent / 4, `text: ${first.wireBytesSent} bytes on the wire for ${first.bytesSent} bytes of files`);

    // Random data does not shrink: sent raw, so its wire bytes are its file bytes. The mixed file's
    // first chunk is text (compressed) and the rest random (sent raw chunk by chunk, never larger).
    const random = randomBytes(3 * MiB + 777);
    const mixed = Buffer.concat([Buffer.from(configText(MiB, 3)), randomBytes(2 * MiB)]);
    await buildTree(s.src, { 'data/filestore/ab/random.bin': random, 'data/filestore/cd/small.bin': randomBytes(40_000), 'data/mixed.dat': mixed });
    const second = await syncOnce(s, ['--compress', 'zstd']);
    await assertSameTree(s.src, s.dst);
    assert.equal(second.bytesSent, random.length + 40_000 + mixed.length);
    const mixedSaving = MiB; // at least most of the text MiB saved, none of the random data
    assert.ok(second.wireBytesSent < second.bytesSent - mixedSaving / 2, `mixed: ${second.wireBytesSent} on the wire for ${second.bytesSent}`);
    assert.ok(second.wireBytesSent > second.bytesSent - mixedSaving, `random data must go raw: ${second.wireBytesSent} on the wire for ${second.bytesSent}`);

    await buildTree(s.src, { 'data/filestore/ef/only-random.bin': randomBytes(2 * MiB) });
    const third = await syncOnce(s, ['--compress', 'zstd']);
    await assertSameTree(s.src, s.dst);
    // Its first chunk went through the connection's stream (a few bytes over its size); the rest raw.
    assert.ok(third.wireBytesSent >= third.bytesSent && third.wireBytesSent <= third.bytesSent + 256, `random data must go raw after its first chunk: ${third.wireBytesSent} on the wire for ${third.bytesSent}`);
  });

  test('without --compress (or with none) every byte goes as it is', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'etc/app.yaml': configText(200_000, 4) });
    const summary = await syncOnce(s, ['--compress', 'none']);
    await assertSameTree(s.src, s.dst);
    assert.equal(summary.wireBytesSent, summary.bytesSent);
    assert.equal(summary.bytesSent, 200_000);
  });

  test('`compress: zstd` in the agent\'s config file does the same as the flag', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'etc/app.yaml': configText(200_000, 7) });
    const config = join(s.dir, 'agent.yaml');
    await writeFile(config, 'compress: zstd\n');
    const summary = await syncOnce(s, ['--config', config]);
    await assertSameTree(s.src, s.dst);
    assert.equal(summary.bytesSent, 200_000);
    assert.ok(summary.wireBytesSent < 50_000, `${summary.wireBytesSent} bytes on the wire`);
  });

  test('the live agent\'s /metrics counts wire bytes apart from file bytes', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'etc/app.yaml': configText(300_000, 5), 'etc/more.yaml': configText(100_000, 6) });
    const agent = startLiveAgent(s, ['--compress', 'zstd', '--metrics-listen', '127.0.0.1:0']);
    const metricsUrl = (await agent.waitForLog(/serving \/healthz and \/metrics on (http:\/\/[0-9.]+:\d+)/, 20_000))[1] as string;
    await waitForConvergence(s, { context: () => agent.stderr().slice(-4000) });
    const res = await fetch(`${metricsUrl}/metrics`, { headers: { authorization: `Bearer ${s.token}` } });
    const text = await res.text();
    const sample = (name: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{standby="${s.url}"} `));
      assert.ok(line !== undefined, `no ${name} in /metrics`);
      return Number(line.split(' ')[1]);
    };
    assert.equal(sample('warmsync_standby_sent_bytes_total'), 400_000);
    const wire = sample('warmsync_standby_sent_wire_bytes_total');
    assert.ok(wire > 0 && wire < 100_000, `${wire} bytes on the wire for 400000 bytes of text`);
  });

  test('a --compress value other than zstd or none is refused with exit 2', { timeout: 30_000 }, async () => {
    const s = await openStandby();
    const r = await runAgent(s, ['--compress', 'gzip']);
    assertCleanFailure(r, 2, /--compress "gzip": expected zstd or none/);
  });
});
