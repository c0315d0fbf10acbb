/**
 * zstd for chunk frames (protocol 4): the agent's ChunkCompressor and the receiver's ChunkInflater,
 * over zstd-napi's one-shot calls into buffers we size ourselves. Node 20's zlib has no zstd;
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
 * Compresses chunk data into zchunk frames, one connection's worth: one context and one output
 * buffer, reused for every chunk. The frame returned is a view into that buffer, valid until the
 * next call: the agent hands it to Connection.sendChunkFrame, which copies it before returning.
 */
export class ChunkCompressor {
  private readonly cctx;
  private readonly out: Buffer;
  private readonly z: Zstd;

  constructor(private readonly level = ZSTD_LEVEL) {
    this.z = loaded();
    this.cctx = new this.z.CCtx();
    this.out = Buffer.allocUnsafe(ZCHUNK_HEADER_BYTES + this.z.compressBound(MAX_CHUNK_BYTES));
  }

  /**
   * A zchunk frame holding `data` (1..MAX_CHUNK_BYTES bytes at `offset` of transfer `transferId`)
   * compressed, or null when that came to no fewer bytes than `data` (random data grows a little).
   */
  frame(transferId: number, offset: number, data: Uint8Array): Buffer | null {
    const written = this.cctx.compress(this.out.subarray(ZCHUNK_HEADER_BYTES), data, this.level);
    if (written >= data.length) return null;
    return frameZchunkInPlace(this.out.subarray(0, ZCHUNK_HEADER_BYTES + written), transferId, offset, data.length);
  }
}

/** Decompresses zchunk payloads for one connection (the codec's Inflate). */
export class ChunkInflater {
  private readonly dctx;

  constructor() {
    this.dctx = new (loaded().DCtx)();
  }

  /**
   * Exactly `rawLength` bytes, in a buffer of their own (the session keeps it until written). The
   * output buffer is that size, so zstd stops at it: data that would decompress to more fails
   * instead of growing, whatever its frame header claims.
   */
  readonly inflate = (payload: Buffer, rawLength: number): Buffer => {
    const out = Buffer.allocUnsafe(rawLength);
    let n: number;
    try {
      n = this.dctx.decompress(out, payload);
    } catch (err) {
      const why = describeError(err);
      if (/too small/i.test(why)) throw new ProtocolError('BAD_COMPRESSION', `decompresses to more than the ${rawLength} bytes declared`);
      throw new ProtocolError('BAD_COMPRESSION', `not a valid zstd frame (zstd: ${why})`);
    }
    if (n !== rawLength) throw new ProtocolError('BAD_COMPRESSION', `decompressed to ${n} bytes, not the ${rawLength} declared`);
    return out;
  };
}
