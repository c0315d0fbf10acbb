/**
 * Mutual challenge-response over a shared token. The token never crosses the wire: each side sends
 * a random nonce, and each proves it knows the token with an HMAC-SHA256 over both nonces. The role
 * is part of the MAC input and the nonces are swapped, so neither MAC can be replayed as the other.
 * This authenticates the peers; it does not encrypt or integrity-protect what follows (use wss://).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { NONCE_BYTES, SUPPORTED_PROTOCOLS } from './limits.js';

/** A fresh challenge: 32 random bytes, base64 (44 characters). */
export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64');
}

function hmac(token: string, text: string): string {
  if (token.length === 0) throw new RangeError('empty token: refusing to authenticate with it');
  return createHmac('sha256', token).update(text, 'utf8').digest('hex');
}

/** The agent's proof (in `auth`): HMAC-SHA256(token, "warmsync/1 agent <receiverNonce> <agentNonce>"). */
export function agentMac(token: string, receiverNonce: string, agentNonce: string): string {
  return hmac(token, `warmsync/1 agent ${receiverNonce} ${agentNonce}`);
}

/** The receiver's proof (in `welcome`): HMAC-SHA256(token, "warmsync/1 receiver <agentNonce> <receiverNonce>"). */
export function receiverMac(token: string, receiverNonce: string, agentNonce: string): string {
  return hmac(token, `warmsync/1 receiver ${agentNonce} ${receiverNonce}`);
}

/** Constant-time comparison of two MACs; false (never an exception) when the lengths differ. */
/**
 * Does an HTTP Authorization header carry `token` as a bearer token? Compared in constant time
 * (HMAC both, compare digests): the receiver's and the agent's /metrics.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (m === null) return false;
  const digest = (s: string): string => createHmac('sha256', 'warmsync-metrics').update(s).digest('hex');
  return macEqual(digest(m[1] as string), digest(token));
}

export function macEqual(a: string, b: string): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The newest version both sides speak, given the receiver's offer; null when there is none. */
export function pickProtocol(offered: readonly number[]): number | null {
  let best: number | null = null;
  for (const v of SUPPORTED_PROTOCOLS) if (offered.includes(v) && (best === null || v > best)) best = v;
  return best;
}
