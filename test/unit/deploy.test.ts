/**
 * deploy/: the sample Artifactory excludes file parses with our excludes loader and keeps what a
 * standby needs (filestore, etc/, the DB-independent config) while leaving out logs, backups,
 * support bundles, scratch space and lock files; both systemd units are Type=notify with a
 * watchdog and pass systemd-analyze verify. (The example configs are run for real in
 * test/e2e/config.test.ts; what the daemons send systemd, in test/e2e/systemd-notify.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { ExcludeMatcher, loadExcludeFiles } from '../../src/config/excludes.js';

const EXCLUDES = fileURLToPath(new URL('../../deploy/artifactory.excludes', import.meta.url));

describe('deploy/artifactory.excludes', () => {
  const cases: ReadonlyArray<[string, boolean, boolean]> = [
    // path, is a directory, excluded
    ['logs', true, true],
    ['log/artifactory-service.log', false, true],
    ['access/logs/access.log', false, true],
    ['backup/backup-daily/20261126.zip', false, true],
    ['support/bundle-1.zip', false, true],
    ['data/tmp/upload-123', false, true],
    ['data/artifactory/filestore/_pre/ab/abcdef', false, true],
    ['work/artifactory/tomcat', true, true],
    ['data/artifactory/filestore/.lock', false, true],
    ['etc/artifactory.lck', false, true],
    ['data/derby/db.lock', false, true],
    ['data/artifactory/filestore/ab/ab12cd34ef', false, false],
    ['data/filestore/00/00aa11', false, false],
    ['etc/system.yaml', false, false],
    ['etc/security/master.key', false, false],
    ['etc/artifactory/binarystore.xml', false, false],
    ['data/artifactory/tmpfiles/x', false, false],
  ];
  test('parses, and excludes exactly the scratch', async () => {
    const matcher = new ExcludeMatcher(await loadExcludeFiles([EXCLUDES]));
    for (const [path, isDir, excluded] of cases) assert.equal(matcher.hides(path, isDir), excluded, `${path}: ${excluded ? 'should be excluded' : 'should be kept'}`);
  });
});

const UNITS = ['warmsync-agent.service', 'warmsync-receiver.service'].map((name) => ({ name, path: fileURLToPath(new URL(`../../deploy/${name}`, import.meta.url)) }));

/** The [Service] section's settings (the last one wins, as systemd reads a single-valued key). */
function serviceSettings(path: string): Map<string, string> {
  const settings = new Map<string, string>();
  let section = '';
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) section = header[1] as string;
    const setting = /^(\w+)=(.*)$/.exec(line);
    if (setting !== null && section === 'Service') settings.set(setting[1] as string, setting[2] as string);
  }
  return settings;
}

describe('deploy/*.service: systemd notify units', () => {
  for (const { name, path } of UNITS) {
    test(`${name}: Type=notify from the main process, a watchdog, and AF_UNIX for the notify socket`, () => {
      const s = serviceSettings(path);
      assert.equal(s.get('Type'), 'notify');
      assert.equal(s.get('NotifyAccess'), 'main', 'only warmsync itself speaks for the unit, not a --snapshot-cmd child');
      // The agent's loop blocks for longer steps at the end of a full pass (they grow with the tree).
      assert.equal(s.get('WatchdogSec'), name === 'warmsync-agent.service' ? '60s' : '30s');
      assert.ok((s.get('RestrictAddressFamilies') ?? '').split(/\s+/).includes('AF_UNIX'), 'the notify socket is AF_UNIX');
      assert.match(s.get('TimeoutStartSec') ?? '', /^\d+(s|min)$/, 'a bounded start timeout');
    });
  }

  // systemd-analyze checks every key and value as systemd would read them (with an ExecStart binary that exists).
  const analyze = spawnSync('systemd-analyze', ['--version']).status === 0;
  test('both pass systemd-analyze verify', { skip: analyze ? false : 'systemd-analyze is not installed' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warmsync-units-'));
    try {
      const copies = UNITS.map(({ name, path }) => {
        const copy = join(dir, name);
        writeFileSync(copy, readFileSync(path, 'utf8').replace('/usr/local/bin/warmsync', process.execPath));
        return copy;
      });
      const r = spawnSync('systemd-analyze', ['verify', ...copies], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', r.stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
