/**
 * `agent --compress zstd`: whether one connection's chunks may go compressed. Only when the receiver
 * offered zstd in its welcome (protocol 4): an older receiver, or one whose zstd addon failed to
 * load, gets everything uncompressed, and the agent says so once per standby, not per reconnect.
 */
import type { Logger } from '../log.js';
import type { CompressionMethod } from '../protocol/compression.js';
import type { Session } from '../transport/client.js';
import { ChunkCompressor } from '../transport/zstd.js';

/** `--compress` as parsed: a method, or null for "none". */
export type CompressSetting = CompressionMethod | null;

const toldUncompressed = new Set<string>();

/** The compressor for `session`'s chunks, or null: not asked for, or not offered by the receiver at `url`. */
export function compressorFor(wanted: CompressSetting, session: Session, url: string, log: Logger): ChunkCompressor | null {
  if (wanted === null) return null;
  if (session.compression.includes(wanted)) return new ChunkCompressor();
  if (!toldUncompressed.has(url)) {
    toldUncompressed.add(url);
    const why = session.compression.length === 0 ? `it offers no compression (protocol ${session.protocol})` : `it offers only ${session.compression.join(', ')}`;
    log.warn('NO_COMPRESSION', `--compress ${wanted}: the receiver at ${url} cannot decompress ${wanted} (${why}); sending uncompressed`);
  }
  return null;
}
