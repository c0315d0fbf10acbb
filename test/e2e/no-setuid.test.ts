// e2e: `agent --no-setuid` (issue 17, item 11: setuid/setgid bits were kept with no way to strip
// them; rsync -a keeps them too as root, and so does warmsync by default). With it, regular files
// arrive without their setuid and setgid bits, the manifest records the mode as written, `verify`
// is clean, and the next run finds nothing to change; directories keep their setgid (group
// inheritance). Without it, the bits are kept.
import assert from 'node:assert/strict';
import { chmod, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { closeStandbys, manifestRow, openStandby, runCli, settleTimes, syncOnce } from '../helpers/e2e.js';

after(closeStandbys);

const modeOf = async (abs: string): Promise<number> => (await stat(abs)).mode & 0o7777;

test('--no-setuid: files lose setuid and setgid on the standby and in its manifest; verify clean; the rerun is a no-op', { timeout: 120_000 }, async () => {
  const s = await openStandby();
  await mkdir(join(s.src, 'shared'));
  await writeFile(join(s.src, 'shared/suid-tool'), '#!/bin/sh\n');
  await writeFile(join(s.src, 'shared/sgid-tool'), '#!/bin/sh\n');
  await writeFile(join(s.src, 'plain'), 'x\n');
  await chmod(join(s.src, 'shared/suid-tool'), 0o4755);
  await chmod(join(s.src, 'shared/sgid-tool'), 0o2711);
  await chmod(join(s.src, 'shared'), 0o2775);
  await chmod(join(s.src, 'plain'), 0o1644);
  await settleTimes(s.src);

  // The default keeps them, as rsync -a does.
  await syncOnce(s);
  assert.equal(await modeOf(join(s.dst, 'shared/suid-tool')), 0o4755);

  const first = await syncOnce(s, ['--no-setuid']);
  assert.equal(first.metaUpdates, 2, 'the two files already on the standby lose their bits by a metadata update');
  assert.equal(await modeOf(join(s.dst, 'shared/suid-tool')), 0o755);
  assert.equal(await modeOf(join(s.dst, 'shared/sgid-tool')), 0o711);
  assert.equal(await modeOf(join(s.dst, 'shared')), 0o2775, 'a directory keeps its setgid');
  assert.equal(await modeOf(join(s.dst, 'plain')), 0o1644, 'the sticky bit is not setuid');
  assert.equal(manifestRow(s.dst, 'shared/suid-tool')?.mode, 0o755);
  assert.equal(manifestRow(s.dst, 'shared/sgid-tool')?.mode, 0o711);
  // The source is left alone.
  assert.equal(await modeOf(join(s.src, 'shared/suid-tool')), 0o4755);

  const verify = await runCli(['verify', '--root', s.dst], { timeoutMs: 30_000 });
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const again = await syncOnce(s, ['--no-setuid']);
  assert.deepEqual([again.filesSent, again.metaUpdates], [0, 0], 'the stripped bits are not a difference');

  // A new file arrives without them at once.
  await writeFile(join(s.src, 'shared/new-tool'), '#!/bin/sh\n');
  await chmod(join(s.src, 'shared/new-tool'), 0o6755);
  await syncOnce(s, ['--no-setuid']);
  assert.equal(await modeOf(join(s.dst, 'shared/new-tool')), 0o755);
});
