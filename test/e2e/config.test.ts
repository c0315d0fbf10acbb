// e2e: --config through bin/warmsync. An agent run entirely from a YAML file (repeatable flags as
// lists); flags overriding the file; the deploy/ example configs for both sides run for real (their
// machine-specific paths overridden on the command line, everything else from the file, the
// agent with deploy/artifactory.excludes, over TLS); every command takes --config; bad files exit 2
// with one BAD_CONFIG line naming the file and the key.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { startReceiverProcess } from '../../scripts/lib/cli-process.js';
import {
  assertCleanFailure, buildTree, closeStandbys, exists, openStandby, openWorkspace, receiverArgs, runCli, type OnceSummary,
} from '../helpers/e2e.js';

after(closeStandbys);

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));

function summary(stdout: string): OnceSummary {
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as OnceSummary;
}

describe('--config', { concurrency: true }, () => {
  test('an agent run from a YAML file, excludes as lists in order; a flag overrides its key', { timeout: 60_000 }, async () => {
    const s = await openStandby();
    await buildTree(s.src, { 'keep/a.txt': 'a\n', 'keep/b.log': 'b\n', 'skip/c.txt': 'c\n', 'x.tmp': 'x\n', 'important.tmp': 'i\n' });
    const excludes = join(s.dir, 'excludes.txt');
    await writeFile(excludes, '- skip/\n');
    const config = join(s.dir, 'agent.yaml');
    await writeFile(config, [
      `root: ${s.src}`, `connect: ${s.url}`, `token-file: ${s.tokenFile}`, 'once: true', 'json: true',
      // rsync order: the include comes first, so important.tmp stays although *.tmp is excluded.
      'exclude:', '  - "+ important.tmp"', '  - "*.tmp"', `exclude-from: [${excludes}]`, 'max-delete: 50', 'connect-attempts: 2', '',
    ].join('\n'));
    const r = await runCli(['agent', '--config', config], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summary(r.stdout).filesSent, 3);
    assert.ok(await exists(join(s.dst, 'important.tmp')));
    assert.ok(!(await exists(join(s.dst, 'x.tmp'))));
    assert.ok(!(await exists(join(s.dst, 'skip'))));

    // --exclude on the command line replaces the file's list: *.log goes, *.tmp comes back.
    const again = await runCli(['agent', '--config', config, '--exclude', '*.log', '--max-delete', '100'], { timeoutMs: 60_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.ok(await exists(join(s.dst, 'x.tmp')), 'x.tmp sent once the file\'s *.tmp rule was overridden');
    assert.ok(!(await exists(join(s.dst, 'skip'))), 'exclude-from from the file still applies');
  });

  test('the deploy/ example configs run: receiver over TLS with the snapshot command, agent with the Artifactory excludes', { timeout: 90_000 }, async () => {
    const ws = await openWorkspace();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem',
      '-days', '2', '-subj', '/CN=standby', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: ws.dir, stdio: 'ignore' });
    const cert = join(ws.dir, 'cert.pem');
    const receiver = await startReceiverProcess([
      '--config', join(DEPLOY, 'receiver.yaml'), ...receiverArgs(ws), '--tls-cert', cert, '--tls-key', join(ws.dir, 'key.pem'),
      '--snapshot-cmd', 'echo 2026-11-26T00:00:00Z',
    ]);
    assert.match(receiver.url, /^wss:/);
    await buildTree(ws.src, {
      'data/artifactory/filestore/ab/ab12': 'blob\n', 'etc/system.yaml': 'shared: {}\n', 'log/console.log': 'noise\n',
      'data/artifactory/filestore/_pre/cd/cd34': 'half\n', 'backup/b.zip': 'old\n', '.lock': '',
    });
    const r = await runCli(['agent', '--config', join(DEPLOY, 'agent.yaml'), '--root', ws.src, '--connect', receiver.url, '--token-file', ws.tokenFile,
      '--ca', cert, '--exclude-from', join(DEPLOY, 'artifactory.excludes'), '--state-dir', join(ws.dir, 'agent-state'), '--once', '--json'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summary(r.stdout).filesSent, 2, r.stdout);
    assert.ok(await exists(join(ws.dst, 'data/artifactory/filestore/ab/ab12')));
    for (const skipped of ['log', 'backup', 'data/artifactory/filestore/_pre', '.lock']) assert.ok(!(await exists(join(ws.dst, skipped))), skipped);
  });

  test('every command takes --config', { timeout: 60_000 }, async () => {
    const ws = await openWorkspace();
    const config = join(ws.dir, 'ops.json');
    await writeFile(config, JSON.stringify({ root: ws.dst, json: true }));
    // No manifest yet: each command gets as far as opening it, with --root from the file.
    for (const command of ['status', 'verify', 'snapshot', 'promote', 'restore']) {
      const extra = command === 'snapshot' || command === 'promote' ? ['--time', '2026-11-26T00:00:00Z'] : [];
      assertCleanFailure(await runCli([command, '--config', config, ...extra]), 1, /NO_MANIFEST/);
    }
  });

  test('bad files: one BAD_CONFIG line naming the file and key, exit 2', { timeout: 60_000 }, async () => {
    const ws = await openWorkspace();
    const write = async (name: string, text: string): Promise<string> => {
      const path = join(ws.dir, name);
      await writeFile(path, text);
      return path;
    };
    const cases: ReadonlyArray<[string[], RegExp]> = [
      [['agent', '--config', await write('typo.yaml', 'root: /x\nexlude-from: [a]\n')], /BAD_CONFIG: \S+typo\.yaml: unknown key "exlude-from" for agent; did you mean "exclude-from"\?/],
      [['agent', '--config', await write('type.json', '{"once": "yes"}')], /BAD_CONFIG: \S+type\.json: key "once" must be true or false, not string "yes"/],
      [['receiver', '--config', await write('list.yaml', 'listen: [a, b]\n')], /BAD_CONFIG: \S+list\.yaml: key "listen" must be a string, not a list/],
      [['receiver', '--config', await write('other.yaml', 'connect: ws://x:1\n')], /BAD_CONFIG: \S+other\.yaml: unknown key "connect" for receiver/],
      [['status', '--config', await write('broken.json', '{"root": ')], /BAD_CONFIG: --config \S+broken\.json: not valid JSON/],
      [['status', '--config', join(ws.dir, 'missing.yaml')], /BAD_CONFIG: --config \S+missing\.yaml: cannot read it: ENOENT/],
    ];
    for (const [args, pattern] of cases) assertCleanFailure(await runCli(args), 2, pattern);
  });
});
