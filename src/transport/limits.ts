/**
 * What one receiver process lets its peers cost it: sockets, time and memory before a peer has
 * authenticated, failed-authentication back-off, and the bounds on what it queues in either
 * direction after. These are receiver policy, not protocol (src/protocol/limits.ts): an agent
 * sees them only as a closed socket, an HTTP 429 or TCP backpressure. docs/operations.md,
 * "Connection limits", lists the same values.
 */
import { MAX_HANDSHAKE_FRAME_BYTES } from '../protocol/limits.js';

/**
 * ws `maxPayload` until the peer has authenticated: ws refuses a larger frame from its header,
 * before buffering a byte of it (close 1009). Raised to MAX_FRAME_BYTES after `auth` verifies.
 */
export const PREAUTH_MAX_PAYLOAD = MAX_HANDSHAKE_FRAME_BYTES;

/**
 * Sockets that have not (yet) authenticated as the agent: plain HTTP clients (/healthz, /metrics),
 * upgrades in progress, WebSockets before `auth`. At the limit the oldest one of the source
 * address holding the most is closed to make room, so a flood churns its own sockets while a
 * newcomer (the real agent, a health probe) gets its turn. Each costs a few tens of KiB at most
 * (parser and ws buffers, one 8 KiB frame): 256 of them stay under ~10 MB and far from any fd limit.
 */
export const MAX_UNAUTHENTICATED_SOCKETS = 256;

/**
 * Hard cap on open sockets (node's `server.maxConnections`; more are closed on accept): the
 * unauthenticated limit, plus one burst of accepts (a listen backlog, 511) that may arrive before
 * the excess is closed, plus a reserve for the agent's session and sockets being closed. Below
 * the fd limit node runs with (it raises the soft limit to the hard one at start), leaving the
 * rest to the manifest, staging files and partials.
 */
export const MAX_SOCKETS = 1024;

/**
 * Descriptors kept out of MAX_SOCKETS' reach when the process's fd limit is low: the manifest,
 * staging files (up to 64 transfers), partials, the log. With a limit under MAX_SOCKETS plus
 * this, the socket cap comes down to the limit minus this (and the receiver warns, FD_LIMIT).
 */
export const FD_RESERVE = 256;

/**
 * A socket must authenticate (or, for plain HTTP, finish a request) within this long of its
 * accept; else it is closed. Covers the HTTP upgrade and the WebSocket handshake together.
 */
export const PREAUTH_DEADLINE_MS = 10_000;

/** node's `server.headersTimeout`/`requestTimeout`, and how often it checks them (default 30 s). */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
export const HTTP_REQUEST_TIMEOUT_MS = 15_000;
export const HTTP_TIMEOUT_CHECK_MS = 1_000;

/** Failed authentications a source address may make before it is made to wait. */
export const AUTH_FREE_FAILURES = 3;
/** The first wait; each further failure doubles it, up to the maximum. */
export const AUTH_BACKOFF_BASE_MS = 1_000;
export const AUTH_BACKOFF_MAX_MS = 60_000;
/** A source with no failure for this long starts afresh. Sources tracked at once: oldest forgotten first. */
export const AUTH_FAILURE_MEMORY_MS = 10 * 60_000;
export const AUTH_TRACKED_SOURCES = 4096;

/**
 * Rejected connections (failed authentication, handshake timeout, oversize frame, eviction, back-off)
 * are logged one line each for the first few of an interval, then counted and summed up in one
 * line at the interval's end.
 */
export const REJECT_LOG_INTERVAL_MS = 10_000;
export const REJECT_LOG_LINES = 20;

/**
 * The receiver produces nothing more (manifest pages, results, the next inbound frame's work)
 * while ws holds more than this many bytes not yet handed to the OS: a peer that stops reading
 * costs at most this plus one message (a manifest page is at most 4 MiB).
 */
export const SEND_HIGH_WATER_BYTES = 2 * 1024 * 1024;

/**
 * Inbound frames decoded and waiting for the session: above either bound the receiver stops
 * reading the socket (TCP backpressure) until the queue is half as long. Well above what a
 * well-behaved agent has outstanding (its 8 MiB window of chunks, 2,048 unanswered ops). On a long
 * fat link the window may grow to 64 MiB (protocol 4), but that is data in flight on the link: it
 * queues here only when the receiver falls behind, and then this bound is the backpressure wanted.
 */
export const MAX_QUEUED_FRAME_BYTES = 32 * 1024 * 1024;
export const MAX_QUEUED_FRAMES = 16_384;
