/**
 * deploy/: the sample Artifactory excludes file parses with our excludes loader and keeps what a
 * standby needs (filestore, etc/, the DB-independent config) while leaving out logs, backups,
 * support bundles, scratch space and lock files. (The example configs are run for real in
 * test/e2e/config.test.ts.)
 */
import assert from 'node:assert/strict';
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
