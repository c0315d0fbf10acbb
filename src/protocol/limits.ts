/**
 * Protocol version 4 numbers: the version, frame layout and every size limit.
 * Kept apart from the codec so that schemas (messages.ts) and framing (codec.ts) share them
 * without importing each other. docs/protocol.md, "Limits", lists the same values.
 */

/**
 * The newest protocol version this build speaks. Version 2 added `fileEnd`, so the agent can hash a
 * file while it sends it; version 3 added owners (`owner` on ops and manifest entries), special
 * files (kind "special", the `special` message) and names with backslashes; version 4 (this one)
 * added compressed chunk frames (FRAME_ZCHUNK), `welcome.compression` (the methods the receiver can
 * decompress) and `welcome.windowMax` (how far the agent may grow its credit window on a long fat
 * link). A version-3 peer is still served, without either (no compression, the fixed window); an
 * older one is refused with VERSION_MISMATCH.
 */
export const PROTOCOL_VERSION = 4;

/** The first version with compressed chunk frames. */
export const COMPRESSION_PROTOCOL = 4;

/** The first version whose welcome carries `windowMax`. */
export const WINDOW_MAX_SINCE = 4;

/** Versions offered in `hello` and accepted in `auth`, newest first. */
export const SUPPORTED_PROTOCOLS: readonly number[] = Object.freeze([PROTOCOL_VERSION, 3]);

/** Frame kind byte (byte 0 of every WebSocket message). */
export const FRAME_CONTROL = 0x01;
export const FRAME_CHUNK = 0x02;
/** A chunk whose data is one zstd frame (protocol 4, once the receiver offered "zstd"). */
export const FRAME_ZCHUNK = 0x03;

/** Kind byte + transfer id (uint32 BE) + offset (uint64 BE). */
export const CHUNK_HEADER_BYTES = 13;

/** A chunk's header + the data's length before compression (uint32 BE). */
export const ZCHUNK_HEADER_BYTES = CHUNK_HEADER_BYTES + 4;

/** Largest data payload of one chunk frame: 1 MiB. */
export const MAX_CHUNK_BYTES = 1024 * 1024;

/**
 * Largest compressed payload of one zchunk: data that does not compress still goes through the
 * connection's zstd stream once (its file's first chunk), as raw blocks a few bytes over its size.
 * zstd's compressBound of MAX_CHUNK_BYTES, rounded up.
 */
export const MAX_ZCHUNK_PAYLOAD_BYTES = MAX_CHUNK_BYTES + (MAX_CHUNK_BYTES >> 8) + 1024;

/** Largest UTF-8 JSON body of one control frame: 4 MiB. */
export const MAX_CONTROL_BYTES = 4 * 1024 * 1024;

/** Largest WebSocket message either side accepts; use it as the ws `maxPayload`. */
export const MAX_FRAME_BYTES = MAX_CONTROL_BYTES + 16;

/**
 * Largest frame worth decoding before the peer has proven it knows the token (hello, auth,
 * welcome, error all fit): an unauthenticated peer cannot make us parse megabytes of JSON.
 */
export const MAX_HANDSHAKE_FRAME_BYTES = 8 * 1024;

/** Most entries in one `manifestPage`, and most items in one `results`. */
export const MAX_PAGE_ENTRIES = 2000;

/** Longest `error.message` and `results[].message`, in UTF-16 code units. */
export const MAX_ERROR_MESSAGE_CHARS = 1024;

/** Longest symlink target, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_TARGET_BYTES = 4096;

/** Nonce length before base64 encoding. */
export const NONCE_BYTES = 32;

/** Files at least this large are sent resumable (fileBegin.resumable): smaller ones are quicker to send again. */
export const RESUMABLE_MIN_BYTES = 16 * 1024 * 1024;
