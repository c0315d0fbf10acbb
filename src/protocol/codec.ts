/**
 * Framing: one WebSocket binary message = one frame. Byte 0 is the kind:
 *   0x01 control: bytes 1.. are the UTF-8 JSON of one message object (messages.ts);
 *   0x02 chunk:   bytes 1-4 transfer id (uint32 BE), 5-12 offset (uint64 BE, <= 2^53-1),
 *                 13.. data (1..MAX_CHUNK_BYTES bytes).
 *   0x03 zchunk:  bytes 1-12 as a chunk, 13-16 the data's length (uint32 BE, 1..MAX_CHUNK_BYTES),
 *                 17.. the data, compressed into the connection's zstd stream and flushed
 *                 (1..MAX_ZCHUNK_PAYLOAD_BYTES bytes). Protocol 4 only, and
 *                 only on a connection whose receiver offered "zstd" (welcome.compression).
 * decodeFrame never throws anything but ProtocolError, whatever the bytes. The encoders trust
 * their (typed) input apart from limits: breaking a limit is a bug here, so they throw RangeError.
 */
import { isUtf8 } from 'node:buffer';
import { describeError, ProtocolError } from '../errors.js';
import { clip } from './describe.js';
import {
  CHUNK_HEADER_BYTES, FRAME_CHUNK, FRAME_CONTROL, FRAME_ZCHUNK, MAX_CHUNK_BYTES, MAX_CONTROL_BYTES, MAX_FRAME_BYTES, MAX_ZCHUNK_PAYLOAD_BYTES,
  ZCHUNK_HEADER_BYTES,
} from './limits.js';
import type { AgentMessage, ControlMessage, ReceiverMessage } from './messages.js';
import { parseControl, type Role } from './validate.js';

export interface ControlFrame<M extends ControlMessage = ControlMessage> {
  readonly kind: 'control';
  readonly message: M;
}

export interface ChunkFrame {
  readonly kind: 'chunk';
  /** The op number of the fileBegin this data belongs to. */
  readonly transferId: number;
  /** Byte offset of `data` in the file. */
  readonly offset: number;
  /** A view into the received frame (no copy): 1..MAX_CHUNK_BYTES bytes. */
  readonly data: Buffer;
}

export type Frame = ControlFrame | ChunkFrame;
/** What the receiver can get from the agent. */
export type AgentFrame = ControlFrame<AgentMessage> | ChunkFrame;
/** What the agent can get from the receiver: control messages only. */
export type ReceiverFrame = ControlFrame<ReceiverMessage>;

/**
 * Decompresses a zchunk's payload into exactly `rawLength` bytes, never more (the receiver's
 * transport/zstd.ts ChunkInflater): throws ProtocolError BAD_COMPRESSION otherwise. Injected so that
 * the codec stays pure (zstd is a native addon).
 */
export type Inflate = (payload: Buffer, rawLength: number) => Buffer;

/** 2^53 / 2^32: the high word of a safe offset is below this. */
const SAFE_HIGH_WORD_LIMIT = 0x200000;
const TWO_32 = 0x1_0000_0000;

/** One control frame, in a single allocation. */
export function encodeControl(msg: ControlMessage): Buffer {
  return encodeControlJson(JSON.stringify(msg), msg.type);
}

/** One control frame from a message's JSON text, made by its sender (batch.ts manifestPageJson); `type` for the error. */
export function encodeControlJson(json: string, type: string): Buffer {
  const length = Buffer.byteLength(json);
  if (length > MAX_CONTROL_BYTES) {
    throw new RangeError(`${type} message is ${length} bytes of JSON, over MAX_CONTROL_BYTES (${MAX_CONTROL_BYTES})`);
  }
  const frame = Buffer.allocUnsafe(1 + length);
  frame[0] = FRAME_CONTROL;
  frame.write(json, 1, 'utf8');
  return frame;
}

/**
 * One chunk frame: a single allocation of 13 + data.length bytes, `data` copied into it once,
 * so the result can go straight to `ws.send`. The caller may reuse `data` as soon as this returns.
 */
export function encodeChunk(transferId: number, offset: number, data: Uint8Array): Buffer {
  checkChunk(transferId, offset, data.length);
  const frame = Buffer.allocUnsafe(CHUNK_HEADER_BYTES + data.length);
  frame.set(data, CHUNK_HEADER_BYTES);
  return writeChunkHeader(frame, transferId, offset);
}

/**
 * One chunk frame built in place, without a copy: the data was read into `frame` from byte
 * CHUNK_HEADER_BYTES on, and the header is written over its first 13 bytes. Returns `frame`.
 */
export function frameChunkInPlace(frame: Buffer, transferId: number, offset: number): Buffer {
  checkChunk(transferId, offset, frame.length - CHUNK_HEADER_BYTES);
  return writeChunkHeader(frame, transferId, offset);
}

function checkChunk(transferId: number, offset: number, dataLength: number): void {
  if (!Number.isInteger(transferId) || transferId < 0 || transferId > 0xffffffff) {
    throw new RangeError(`chunk transfer id ${transferId} is not a uint32`);
  }
  if (dataLength < 1 || dataLength > MAX_CHUNK_BYTES) {
    throw new RangeError(`chunk of ${dataLength} bytes: expected 1..${MAX_CHUNK_BYTES}`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + dataLength > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`chunk offset ${offset} (+${dataLength} bytes) is not a non-negative safe integer`);
  }
}

/**
 * Writes a zchunk header over the first ZCHUNK_HEADER_BYTES of `frame`, whose bytes after that hold
 * the compressed form of `rawLength` bytes of data at `offset`. Returns `frame`.
 */
export function frameZchunkInPlace(frame: Buffer, transferId: number, offset: number, rawLength: number): Buffer {
  checkChunk(transferId, offset, rawLength);
  const payload = frame.length - ZCHUNK_HEADER_BYTES;
  if (payload < 1 || payload > MAX_ZCHUNK_PAYLOAD_BYTES) throw new RangeError(`zchunk payload of ${payload} bytes: expected 1..${MAX_ZCHUNK_PAYLOAD_BYTES}`);
  writeChunkHeader(frame, transferId, offset);
  frame[0] = FRAME_ZCHUNK;
  frame.writeUInt32BE(rawLength, CHUNK_HEADER_BYTES);
  return frame;
}

function writeChunkHeader(frame: Buffer, transferId: number, offset: number): Buffer {
  frame[0] = FRAME_CHUNK;
  frame.writeUInt32BE(transferId, 1);
  frame.writeUInt32BE(Math.floor(offset / TWO_32), 5);
  frame.writeUInt32BE(offset % TWO_32, 9);
  return frame;
}

/**
 * Decodes and validates one received frame; `from` is the sender's role (the receiver passes
 * 'agent'). `maxFrameBytes` lowers the size limit, e.g. to MAX_HANDSHAKE_FRAME_BYTES until the
 * peer is authenticated. `inflate`: how to decompress a zchunk, given once compression was negotiated;
 * without it a zchunk is UNEXPECTED_MESSAGE. A zchunk comes back as a plain chunk of its
 * decompressed data. Throws ProtocolError: BAD_FRAME, FRAME_TOO_LARGE, BAD_JSON, BAD_MESSAGE,
 * BAD_PATH, UNEXPECTED_MESSAGE, BAD_COMPRESSION (and DECODE_FAILED, which would be a bug in this module).
 */
export function decodeFrame(frame: Uint8Array, from: 'agent', maxFrameBytes?: number, inflate?: Inflate): AgentFrame;
export function decodeFrame(frame: Uint8Array, from: 'receiver', maxFrameBytes?: number): ReceiverFrame;
export function decodeFrame(frame: Uint8Array, from: Role, maxFrameBytes?: number, inflate?: Inflate): Frame;
export function decodeFrame(frame: Uint8Array, from: Role, maxFrameBytes: number = MAX_FRAME_BYTES, inflate?: Inflate): Frame {
  try {
    const buf = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
    return decode(buf, from, Math.min(maxFrameBytes, MAX_FRAME_BYTES), inflate);
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    // Defence in depth: a peer must never be able to raise anything but ProtocolError.
    throw new ProtocolError('DECODE_FAILED', `frame could not be decoded: ${clip(describeError(err), 200)}`, { cause: err });
  }
}

function decode(frame: Buffer, from: Role, maxFrameBytes: number, inflate: Inflate | undefined): Frame {
  if (frame.length === 0) throw new ProtocolError('BAD_FRAME', 'empty frame');
  if (frame.length > maxFrameBytes) {
    throw new ProtocolError('FRAME_TOO_LARGE', `frame of ${frame.length} bytes: over the limit of ${maxFrameBytes}`);
  }
  const kind = frame[0];
  if (kind === FRAME_CONTROL) return { kind: 'control', message: parseControl(decodeJson(frame.subarray(1)), from) };
  if (kind === FRAME_CHUNK) return decodeChunk(frame, from);
  if (kind === FRAME_ZCHUNK) return decodeZchunk(frame, from, inflate);
  throw new ProtocolError('BAD_FRAME', `unknown frame kind 0x${(kind ?? 0).toString(16).padStart(2, '0')}`);
}

function decodeJson(body: Buffer): unknown {
  if (body.length > MAX_CONTROL_BYTES) {
    throw new ProtocolError('FRAME_TOO_LARGE', `control frame of ${body.length} bytes: over MAX_CONTROL_BYTES (${MAX_CONTROL_BYTES})`);
  }
  if (!isUtf8(body)) throw new ProtocolError('BAD_JSON', 'control frame: invalid UTF-8');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ProtocolError('BAD_JSON', `control frame: invalid JSON: ${clip(describeError(err), 120)}`);
  }
}

function decodeChunk(frame: Buffer, from: Role): ChunkFrame {
  const { transferId, offset } = chunkHeader(frame, from, 'chunk', CHUNK_HEADER_BYTES, frame.length - CHUNK_HEADER_BYTES);
  return { kind: 'chunk', transferId, offset, data: frame.subarray(CHUNK_HEADER_BYTES) };
}

/**
 * A zchunk, decompressed: its declared length is checked like a chunk's data before a byte is
 * decompressed, and the data must come to exactly that length (`inflate` never writes more), so a
 * small frame cannot make the receiver hold more than MAX_CHUNK_BYTES (a zstd bomb).
 */
function decodeZchunk(frame: Buffer, from: Role, inflate: Inflate | undefined): ChunkFrame {
  const rawLength = frame.length >= ZCHUNK_HEADER_BYTES ? frame.readUInt32BE(CHUNK_HEADER_BYTES) : 0;
  const { transferId, offset } = chunkHeader(frame, from, 'zchunk', ZCHUNK_HEADER_BYTES, rawLength);
  const payload = frame.subarray(ZCHUNK_HEADER_BYTES);
  if (payload.length === 0) throw new ProtocolError('BAD_FRAME', 'zchunk frame: no compressed data');
  if (payload.length > MAX_ZCHUNK_PAYLOAD_BYTES) {
    throw new ProtocolError('FRAME_TOO_LARGE', `zchunk frame: ${payload.length} bytes of compressed data, over MAX_ZCHUNK_PAYLOAD_BYTES (${MAX_ZCHUNK_PAYLOAD_BYTES})`);
  }
  if (inflate === undefined) {
    throw new ProtocolError('UNEXPECTED_MESSAGE', 'zchunk: a compressed chunk on a connection that did not negotiate compression');
  }
  const where = `zchunk frame (transfer ${transferId}, offset ${offset}, ${rawLength} bytes declared)`;
  let data: Buffer;
  try {
    data = inflate(payload, rawLength);
  } catch (err) {
    if (err instanceof ProtocolError) throw new ProtocolError(err.code, `${where}: ${err.message}`);
    throw new ProtocolError('BAD_COMPRESSION', `${where}: ${clip(describeError(err), 200)}`);
  }
  if (data.length !== rawLength) {
    throw new ProtocolError('BAD_COMPRESSION', `${where}: decompressed to ${data.length} bytes`);
  }
  return { kind: 'chunk', transferId, offset, data };
}

/** The transfer id and offset of a chunk or zchunk carrying `length` bytes of file data. */
function chunkHeader(frame: Buffer, from: Role, name: string, headerBytes: number, length: number): { transferId: number; offset: number } {
  if (from !== 'agent') throw new ProtocolError('UNEXPECTED_MESSAGE', `${name}: not a frame the ${from} sends`);
  if (frame.length < headerBytes) {
    throw new ProtocolError('BAD_FRAME', `${name} frame: truncated header (${frame.length} bytes, need ${headerBytes})`);
  }
  if (length === 0) throw new ProtocolError('BAD_FRAME', `${name} frame: no data (expected 1 or more bytes)`);
  if (length > MAX_CHUNK_BYTES) {
    throw new ProtocolError('FRAME_TOO_LARGE', `${name} frame: ${length} bytes of data, over MAX_CHUNK_BYTES (${MAX_CHUNK_BYTES})`);
  }
  const transferId = frame.readUInt32BE(1);
  const high = frame.readUInt32BE(5);
  if (high >= SAFE_HIGH_WORD_LIMIT) throw new ProtocolError('BAD_FRAME', `${name} frame: offset over 2^53-1`);
  const offset = high * TWO_32 + frame.readUInt32BE(9);
  if (offset + length > Number.MAX_SAFE_INTEGER) {
    throw new ProtocolError('BAD_FRAME', `${name} frame: offset ${offset} + ${length} bytes ends past 2^53-1`);
  }
  return { transferId, offset };
}
