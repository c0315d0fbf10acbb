/**
 * Whether to send a file's chunks compressed (protocol 4, `agent --compress zstd`): the first chunk
 * of each file is tried, and if its compressed form is not meaningfully smaller the rest of that
 * file goes raw without being tried. Most filestore binaries are already compressed archives
 * (images, PDFs, zip-based office files): for them this costs one chunk's compression per file.
 */

/** The methods a receiver of this build can decompress (welcome.compression), and `--compress` values besides "none". */
export const COMPRESSION_METHODS = ['zstd'] as const;
export type CompressionMethod = (typeof COMPRESSION_METHODS)[number];

/** Compressed data at most this share of the original is worth sending compressed; above, it goes raw. */
export const WORTHWHILE_RATIO = 0.9;

/** Chunks shorter than this are never tried: a zstd frame's header (6-18 bytes) eats the gain. */
export const MIN_COMPRESS_BYTES = 64;

/** Is `compressed` bytes for `raw` bytes of data a gain worth the receiver's decompression? */
export function worthCompressing(raw: number, compressed: number): boolean {
  return compressed <= raw * WORTHWHILE_RATIO;
}

/**
 * One file's decision, made on its first chunk that is tried and kept for the rest of the file.
 * Every chunk tried goes out compressed (it went into the connection's stream, which the receiver
 * must see whole); a file whose first chunk did not shrink enough sends the rest raw, untried.
 */
export class FileCompression {
  private decided: 'compress' | 'raw' | null = null;

  /** Should a chunk of `raw` bytes be compressed at all? No once the file was found not to compress. */
  tries(raw: number): boolean {
    return this.decided !== 'raw' && raw >= MIN_COMPRESS_BYTES;
  }

  /** After compressing a chunk of `raw` bytes to `compressed`: the first one decides for the file. */
  compressed(raw: number, compressed: number): void {
    this.decided ??= worthCompressing(raw, compressed) ? 'compress' : 'raw';
  }

  /** What the first tried chunk decided; null before any. */
  get decision(): 'compress' | 'raw' | null {
    return this.decided;
  }
}
