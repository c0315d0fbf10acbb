// e2e: TLS through bin/warmsync. Certificates are made at test time with openssl: a CA and a
// standby certificate it signed (for 127.0.0.1), a self-signed certificate, and a certificate for
// another host name. Covered: --ca with the right CA syncs over wss:// (and /healthz answers over
// https); the wrong CA, no --ca, a certificate for another name, a wrong pinned fingerprint and
// wss:// to a plain receiver each fail with one line and a TLS_* code, nothing written; the right
// pinned fingerprint (in openssl's own output form) syncs; bad TLS flags exit 2.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAgentProcess, startReceiverProcess, type ReceiverProcess } from '../../scripts/lib/cli-process.js';
import {
  assertCleanFailure, assertSameTree, buildTree, closeStandbys, openStandby, openWorkspace, readSynced, receiverArgs, runCli,
  type Standby,
} from '../helpers/e2e.js';

after(closeStandbys);

interface Certs { dir: string; caPem: string; leafPem: string; leafKey: string; otherPem: string; otherKey: string; namedPem: string; namedKey: string }

function openssl(args: string[], cwd: string): string {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCerts(dir: string): Promise<Certs> {
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=warmsync test CA'], dir);
  openssl(['req', ...EC, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=standby'], dir);
  await writeFile(join(dir, 'leaf.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'leaf.ext'], dir);
  openssl(['req', '-x509', ...EC, '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=other', '-addext', 'subjectAltName=IP:127.0.0.1'], dir);
  openssl(['req', '-x509', ...EC, '-keyout', 'named.key', '-out', 'named.pem', '-days', '2', '-subj', '/CN=elsewhere', '-addext', 'subjectAltName=DNS:elsewhere.invalid'], dir);
  const at = (name: string): string => join(dir, name);
  return {
    dir, caPem: at('ca.pem'), leafPem: at('leaf.pem'), leafKey: at('leaf.key'), otherPem: at('other.pem'), otherKey: at('other.key'),
    namedPem: at('named.pem'), namedKey: at('named.key'),
  };
}

/** `openssl x509 -noout -fingerprint -sha256` of a PEM file, as printed: `sha256 Fingerprint=AB:...`. */
function fingerprintLine(pem: string): string {
  return openssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', pem], '/').trim();
}

/** A standby whose receiver serves wss:// with `cert`/`key`. */
async function tlsStandby(cert: string, key: string): Promise<Standby & { receiver: ReceiverProcess }> {
  const ws = await openWorkspace();
  const receiver = await startReceiverProcess([...receiverArgs(ws), '--tls-cert', cert, '--tls-key', key]);
  return { ...ws, receiver, url: receiver.url };
}

function agent(s: Standby, extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>> {
  return runCli(['agent', '--root', s.src, '--connect', s.url, '--token-file', s.tokenFile, '--once', '--json', '--connect-attempts', '2', ...extra], { timeoutMs: 60_000 });
}

describe('TLS', { concurrency: true }, () => {
  let certs: Certs;
  let standby: Standby;
  before(async () => {
    certs = await makeCerts((await openWorkspace()).dir);
    standby = await tlsStandby(certs.leafPem, certs.leafKey);
    await buildTree(standby.src, { 'etc/system.yaml': 'shared: {}\n', 'filestore/ab/abcdef': 'binary\n' });
  });

  test('the receiver announces wss://', () => {
    assert.match(standby.url, /^wss:\/\/127\.0\.0\.1:\d+$/);
  });

  // One test: the receiver takes one agent at a time.
  test('--ca with the CA that signed the receiver certificate, or the pinned fingerprint as openssl prints it: the agent syncs over wss://', { timeout: 60_000 }, async () => {
    const r = await agent(standby, ['--ca', certs.caPem]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { filesSent: number }).filesSent, 2);
    await assertSameTree(standby.src, standby.dst);
    await buildTree(standby.src, { 'filestore/cd/cdef01': 'another\n' });
    const pinned = await agent(standby, ['--tls-fingerprint', fingerprintLine(certs.leafPem)]);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.equal((JSON.parse(pinned.stdout) as { filesSent: number }).filesSent, 1);
    await assertSameTree(standby.src, standby.dst);
  });

  test('the HTTP endpoints answer over https', { timeout: 30_000 }, async () => {
    const ca = await readFile(certs.caPem);
    const body = await new Promise<string>((resolve, reject) => {
      get(`${standby.url.replace('wss:', 'https:')}/healthz`, { ca }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    assert.equal((JSON.parse(body) as { ok: boolean }).ok, true);
  });

  test('a wrong certificate is refused with one line naming the problem, and nothing is written', { timeout: 60_000 }, async () => {
    const s = await tlsStandby(certs.otherPem, certs.otherKey);
    await buildTree(s.src, { 'a.txt': 'a\n' });
    // The agent trusts our CA, the receiver presents a self-signed certificate.
    assertCleanFailure(await agent(s, ['--ca', certs.caPem]), 1, /TLS_UNTRUSTED: the receiver's certificate at wss:\/\/127\.0\.0\.1:\d+ is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): pass --ca/);
    // No --ca: the system CAs do not know it either.
    assertCleanFailure(await agent(s, []), 1, /TLS_UNTRUSTED: /);
    // Pinned to the CA-signed certificate, it meets another one.
    const last = assertCleanFailure(await agent(s, ['--tls-fingerprint', fingerprintLine(certs.leafPem)]), 1, /TLS_FINGERPRINT: the receiver at wss:\/\/\S+ presented a certificate with SHA-256 fingerprint /);
    const otherFp = fingerprintLine(certs.otherPem).split('=')[1] as string;
    assert.ok(last.includes(otherFp), `the line names the certificate seen (${otherFp}): ${last}`);
    assert.deepEqual(await readSynced(s.dst), {}, 'nothing was written');
  });

  test('the live agent logs a refused certificate under its TLS code and keeps retrying', { timeout: 60_000 }, async () => {
    const s = await tlsStandby(certs.otherPem, certs.otherKey);
    await buildTree(s.src, { 'a.txt': 'a\n' });
    const live = startAgentProcess(['--root', s.src, '--connect', s.url, '--token-file', s.tokenFile, '--ca', certs.caPem]);
    try {
      const first = await live.waitForLog(/"code":"TLS_UNTRUSTED"[^\n]*is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)[^\n]*retrying in \d+ ms/, 30_000);
      await live.waitForLog(/"code":"TLS_UNTRUSTED"/, 30_000, first.index + first[0].length);
      assert.equal(live.child.exitCode, null, 'still running');
      assert.doesNotMatch(live.stderr(), /"code":"RECONNECT"/);
    } finally {
      assert.equal(await live.stop(), 0);
    }
    assert.deepEqual(await readSynced(s.dst), {}, 'nothing was written');
  });

  test('a certificate for another host name', { timeout: 60_000 }, async () => {
    const s = await tlsStandby(certs.namedPem, certs.namedKey);
    assertCleanFailure(await agent(s, ['--ca', certs.namedPem]), 1, /TLS_HOSTNAME: the receiver's certificate does not name the host of wss:\/\/127\.0\.0\.1:\d+/);
  });

  test('wss:// to a plain receiver', { timeout: 60_000 }, async () => {
    const plain = await openStandby();
    const s = { ...plain, url: plain.url.replace('ws:', 'wss:') };
    assertCleanFailure(await agent(s, ['--ca', certs.caPem]), 1, /TLS_PROTOCOL: TLS handshake with wss:\/\/\S+ failed .*is the receiver serving TLS/);
  });

  test('bad TLS flags exit 2 with one line', { timeout: 60_000 }, async () => {
    const ws = await openWorkspace();
    const receiver = (extra: string[]): Promise<Awaited<ReturnType<typeof runCli>>> => runCli(['receiver', ...receiverArgs(ws), ...extra], { timeoutMs: 30_000 });
    assertCleanFailure(await receiver(['--tls-cert', certs.leafPem]), 2, /BAD_FLAG: receiver: --tls-cert and --tls-key go together/);
    assertCleanFailure(await receiver(['--tls-cert', certs.leafPem, '--tls-key', certs.otherKey]), 2, /TLS_FILE: --tls-cert .* \/ --tls-key .*key must match/);
    assertCleanFailure(await receiver(['--tls-cert', join(ws.dir, 'missing.pem'), '--tls-key', certs.leafKey]), 2, /TLS_FILE: cannot read --tls-cert .*missing\.pem: ENOENT/);
    const base = ['agent', '--root', ws.src, '--token-file', ws.tokenFile, '--once'];
    assertCleanFailure(await runCli([...base, '--connect', 'ws://127.0.0.1:9', '--ca', certs.caPem]), 2, /BAD_FLAG: agent: --ca and --tls-fingerprint need a wss:\/\/ --connect URL/);
    assertCleanFailure(await runCli([...base, '--connect', 'wss://127.0.0.1:9', '--tls-fingerprint', 'AB:CD']), 2, /BAD_FLAG: --tls-fingerprint "AB:CD" is not a SHA-256 fingerprint/);
    assertCleanFailure(await runCli([...base, '--connect', 'wss://127.0.0.1:9', '--ca', certs.leafKey]), 2, /TLS_FILE: --ca /);
  });
});
