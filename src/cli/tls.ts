/**
 * TLS flags: the receiver's --tls-cert/--tls-key and the agent's --ca/--tls-fingerprint, read and
 * checked before anything starts, so a bad file is one exit-2 line instead of a failure later.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { UsageError, describeError } from '../errors.js';
import { readInputFile } from '../inputfile.js';
import type { ClientTls } from '../transport/client.js';
import type { ServerTls } from '../transport/server.js';

export const SERVER_TLS_OPTIONS = { 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' } } as const;
export const CLIENT_TLS_OPTIONS = { ca: { type: 'string' }, 'tls-fingerprint': { type: 'string' } } as const;

/** The largest PEM file read (1 MiB: a full CA bundle is about 200 KiB). */
const MAX_PEM_BYTES = 1024 * 1024;

function readPem(flag: string, file: string): Buffer {
  try {
    return readInputFile(file, MAX_PEM_BYTES);
  } catch (err) {
    throw new UsageError('TLS_FILE', `cannot read --${flag} ${file}: ${describeError(err)}`);
  }
}

/** --tls-cert and --tls-key (both or neither); null: plain ws://. */
export function serverTls(flags: { 'tls-cert'?: string; 'tls-key'?: string }): ServerTls | null {
  const certFile = flags['tls-cert'];
  const keyFile = flags['tls-key'];
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile === undefined || keyFile === undefined) throw new UsageError('BAD_FLAG', 'receiver: --tls-cert and --tls-key go together');
  const tls = { cert: readPem('tls-cert', certFile), key: readPem('tls-key', keyFile) };
  try {
    createSecureContext(tls);
  } catch (err) {
    throw new UsageError('TLS_FILE', `--tls-cert ${certFile} / --tls-key ${keyFile}: ${describeError(err)} (PEM files, and the key must match the certificate)`);
  }
  return tls;
}

/**
 * A SHA-256 fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it (with or without
 * its `sha256 Fingerprint=` prefix, any case, colons optional), as node reports it: `AB:CD:...`.
 */
export function parseFingerprint(value: string): string {
  const hex = value.replace(/^\s*sha256\s+fingerprint\s*=\s*/i, '').replace(/[:\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) {
    throw new UsageError('BAD_FLAG', `--tls-fingerprint ${JSON.stringify(value)} is not a SHA-256 fingerprint (64 hex digits, e.g. from openssl x509 -noout -fingerprint -sha256 -in cert.pem)`);
  }
  return hex.match(/../g)?.join(':') ?? hex;
}

/** --ca and --tls-fingerprint, for wss:// URLs only (with several --connect, every wss:// one uses them). */
export function clientTls(urls: readonly string[], flags: { ca?: string; 'tls-fingerprint'?: string }): ClientTls {
  const { ca, 'tls-fingerprint': fingerprint } = flags;
  if (ca === undefined && fingerprint === undefined) return {};
  if (!urls.some((url) => url.startsWith('wss:'))) throw new UsageError('BAD_FLAG', `agent: --ca and --tls-fingerprint need a wss:// --connect URL, not ${urls.join(', ')}`);
  if (ca !== undefined && fingerprint !== undefined) throw new UsageError('BAD_FLAG', 'agent: give --ca or --tls-fingerprint, not both');
  if (fingerprint !== undefined) return { fingerprint: parseFingerprint(fingerprint) };
  const pem = readPem('ca', ca as string);
  try {
    // createSecureContext accepts a file without any certificate in it; this does not.
    new X509Certificate(pem);
  } catch (err) {
    throw new UsageError('TLS_FILE', `--ca ${ca as string}: ${describeError(err)} (a PEM certificate)`);
  }
  return { ca: pem };
}
