/**
 * zstd for chunk frames (protocol 4): the agent's ChunkCompressor and the receiver's ChunkInflater,
 * one zstd stream per connection, flushed at the end of every zchunk (as rsync -z runs one zlib
 * stream per transfer): a tree of small text files compresses with what came before it as context,
 * to 18.6 % of 28 MB of node_modules text at level 3, against 26.5 % for a frame per chunk and
 * 20.6 % for zlib 6 as rsync -z uses it. The receiver decompresses zchunks in the order they came. Node 20's zlib has no zstd;
 * zstd-napi bundles libzstd's sources and builds them when no prebuilt binary can be fetched.
 * The addon loads on first use: a receiver or agent that never compresses never loads it.
 */
import { createRequire } from 'node:module';
import { ProtocolError, describeError } from '../errors.js';
import { frameZchunkInPlace } from '../protocol/codec.js';
import { MAX_CHUNK_BYTES, ZCHUNK_HEADER_BYTES } from '../protocol/limits.js';

type Zstd = typeof import('zstd-napi/binding.js');

/** The level the agent compresses at: zstd's default, fast enough for a link of a few hundred Mbit/s per core. */
export const ZSTD_LEVEL = 3;

const require = createRequire(import.meta.url);
let zstd: Zstd | null = null;
let loadError: string | null = null;

function load(): Zstd | null {
  if (zstd === null && loadError === null) {
    try {
      zstd = require('zstd-napi/binding.js') as Zstd;
    } catch (err) {
      loadError = describeError(err);
    }
  }
  return zstd;
}

/** Null when zstd can be used here, else why not (the addon failed to load). */
export function zstdUnavailable(): string | null {
  load();
  return loadError;
}

function loaded(): Zstd {
  const z = load();
  if (z === null) throw new Error(`zstd is not available: ${loadError ?? 'unknown error'}`);
  return z;
}

/**
 * Compresses chunk data into zchunk frames, one connection's worth: one stream, one output buffer,
 * reused for every chunk. The frame returned is a view into that buffer, valid until the next call:
 * the agent hands it to Connection.sendChunkFrame, which copies it before returning. Every frame
 * made must be sent, in order: the receiver's stream expects each one.
 */
export class ChunkCompressor {
  private readonly cctx;
  private readonly out: Buffer;
  private readonly flush;

  constructor(level = ZSTD_LEVEL) {
    const z = loaded();
    this.flush = z.EndDirective.flush;
    this.cctx = new z.CCtx();
    this.cctx.setParameter(z.CParameter.compressionLevel, level);
    // A flushed block of MAX_CHUNK_BYTES fits in compressBound of it, plus the flush's few bytes.
    this.out = Buffer.allocUnsafe(ZCHUNK_HEADER_BYTES + z.compressBound(MAX_CHUNK_BYTES) + 1024);
  }

  /** A zchunk frame holding `data` (1..MAX_CHUNK_BYTES bytes at `offset` of transfer `transferId`), compressed into the stream. */
  frame(transferId: number, offset: number, data: Uint8Array): Buffer {
    let written = ZCHUNK_HEADER_BYTES;
    let input = data;
    for (;;) {
      const [left, produced, consumed] = this.cctx.compressStream2(this.out.subarray(written), input, this.flush);
      written += produced;
      input = input.subarray(consumed);
      if (left === 0) break;
      if (written === this.out.length) throw new Error(`zstd: a ${data.length}-byte chunk did not fit in ${this.out.length} bytes`);
    }
    return frameZchunkInPlace(this.out.subarray(0, written), transferId, offset, data.length);
  }
}

/** Decompresses zchunk payloads for one connection (the codec's Inflate), in the order they came. */
export class ChunkInflater {
  private readonly dctx;
  private readonly probe = Buffer.alloc(1);

  constructor() {
    this.dctx = new (loaded().DCtx)();
  }

  /**
   * Exactly `rawLength` bytes, in a buffer of their own (the session keeps it until written). The
   * output buffer is that size, so zstd stops at it: data that would decompress to more fails
   * instead of growing, whatever its headers claim.
   */
  readonly inflate = (payload: Buffer, rawLength: number): Buffer => {
    const out = Buffer.allocUnsafe(rawLength);
    let n = 0;
    let input = payload;
    try {
      while (input.length > 0 && n < rawLength) {
        const [, produced, consumed] = this.dctx.decompressStream(out.subarray(n), input);
        n += produced;
        input = input.subarray(consumed);
        if (produced === 0 && consumed === 0) break;
      }
      // Input left over, or output the stream still holds: more than declared.
      if (input.length > 0 || this.dctx.decompressStream(this.probe, input)[1] > 0) {
        throw new ProtocolError('BAD_COMPRESSION', `decompresses to more than the ${rawLength} bytes declared`);
      }
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      throw new ProtocolError('BAD_COMPRESSION', `not valid zstd data (zstd: ${describeError(err)})`);
    }
    if (n !== rawLength) throw new ProtocolError('BAD_COMPRESSION', `decompressed to ${n} bytes, not the ${rawLength} declared`);
    return out;
  };
}
