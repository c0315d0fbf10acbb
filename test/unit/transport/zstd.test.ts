/**
 * transport/zstd with the codec: a zchunk made by the agent's ChunkCompressor decodes, through the
 * receiver's ChunkInflater, to the very bytes compressed (1 byte past MIN to a full 1 MiB chunk, at
 * offsets past 2^32), in order, one stream per connection (a chunk compresses against those before
 * it, and cannot be read without them); a corrupt payload,
 * one that decompresses to more or fewer bytes than declared, or one declared over MAX_CHUNK_BYTES
 * is a ProtocolError naming the frame, and nothing over the declared size is ever decompressed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ProtocolError } from '../../../src/errors.js';
import { decodeFrame } from '../../../src/protocol/codec.js';
import { FRAME_ZCHUNK, MAX_CHUNK_BYTES, ZCHUNK_HEADER_BYTES } from '../../../src/protocol/limits.js';
import { ChunkCompressor, ChunkInflater } from '../../../src/transport/zstd.js';

const text = (bytes: number): Buffer => {
  const line = Buffer.from('workers = 4 # each handles ~6 concurrent requests\n');
  return Buffer.alloc(bytes).fill(line);
};

function rejects(frame: Buffer, code: string, message: RegExp): void {
  assert.throws(() => decodeFrame(frame, 'agent', undefined, new ChunkInflater().inflate), (err: unknown) => {
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

/** `payload` as a zchunk of transfer 7 at offset 0 declaring `rawLength` bytes. */
function zchunk(rawLength: number, payload: Buffer): Buffer {
  const frame = Buffer.alloc(ZCHUNK_HEADER_BYTES + payload.length);
  frame[0] = FRAME_ZCHUNK;
  frame.writeUInt32BE(7, 1);
  frame.writeUInt32BE(rawLength, 13);
  payload.copy(frame, ZCHUNK_HEADER_BYTES);
  return frame;
}

function compressed(data: Buffer): Buffer {
  const frame = new ChunkCompressor().frame(7, 0, data);
  return Buffer.from(frame.subarray(ZCHUNK_HEADER_BYTES));
}

describe('zchunk round trips', () => {
  const cases: ReadonlyArray<[string, Buffer, number]> = [
    ['100 bytes of text', text(100), 0],
    ['a full chunk of text past 2^32', text(MAX_CHUNK_BYTES), 2 ** 32 + 5],
    ['zeros', Buffer.alloc(300_000), 12345],
    ['text with a random tail', Buffer.concat([text(200_000), randomBytes(1000)]), 0],
  ];
  const compressor = new ChunkCompressor();
  const inflater = new ChunkInflater();
  for (const [name, data, offset] of cases) {
    test(name, () => {
      const frame = compressor.frame(9, offset, data);
      assert.equal(frame[0], FRAME_ZCHUNK);
      assert.ok(frame.length < data.length, `${frame.length} bytes for ${data.length}`);
      const decoded = decodeFrame(Buffer.from(frame), 'agent', undefined, inflater.inflate);
      assert.ok(decoded.kind === 'chunk');
      assert.equal(decoded.transferId, 9);
      assert.equal(decoded.offset, offset);
      assert.ok(decoded.data.equals(data), 'decompressed bytes differ');
    });
  }

  test('random data still goes through the stream (its frame must be sent) at a few bytes over its size', () => {
    for (const size of [MAX_CHUNK_BYTES, 100]) {
      const data = randomBytes(size);
      const frame = compressor.frame(1, 0, data);
      assert.ok(frame.length - ZCHUNK_HEADER_BYTES <= size + 64, `${frame.length} bytes for ${size}`);
      const decoded = decodeFrame(Buffer.from(frame), 'agent', undefined, inflater.inflate);
      assert.ok(decoded.kind === 'chunk' && decoded.data.equals(data));
    }
  });

  test('a chunk compresses against the ones before it on its connection, and cannot be read without them', () => {
    const z = new ChunkCompressor();
    const data = Buffer.from(randomBytes(20_000).toString('hex'));
    const first = Buffer.from(z.frame(1, 0, data));
    const again = Buffer.from(z.frame(2, 0, data));
    assert.ok(again.length * 20 < first.length, `the same 40,000 bytes again: ${again.length} bytes, the first time ${first.length}`);
    const receiving = new ChunkInflater();
    for (const frame of [first, again]) {
      const decoded = decodeFrame(frame, 'agent', undefined, receiving.inflate);
      assert.ok(decoded.kind === 'chunk' && decoded.data.equals(data));
    }
    assert.throws(() => decodeFrame(again, 'agent', undefined, new ChunkInflater().inflate), (err: unknown) => err instanceof ProtocolError && err.code === 'BAD_COMPRESSION');
  });

  test('one compressor serves chunk after chunk (its buffer reused): each frame decodes to its own data', () => {
    const inputs = [text(1000), Buffer.alloc(5000, 0x41), text(MAX_CHUNK_BYTES), text(300)];
    for (const data of inputs) {
      const frame = compressor.frame(1, 0, data);
      const decoded = decodeFrame(Buffer.from(frame), 'agent', undefined, inflater.inflate);
      assert.ok(decoded.kind === 'chunk' && decoded.data.equals(data), `${data.length} bytes did not round-trip`);
    }
  });
});

describe('bad zchunks', () => {
  test('a truncated zstd frame', () => {
    const z = compressed(text(50_000));
    rejects(zchunk(50_000, z.subarray(0, z.length - 5)), 'BAD_COMPRESSION', /^zchunk frame \(transfer 7, offset 0, 50000 bytes declared\): (not valid zstd data \(zstd: |decompressed to \d+ bytes, not the 50000 declared)/);
  });
  test('bytes that are not zstd', () => rejects(zchunk(1000, randomBytes(200)), 'BAD_COMPRESSION', /not valid zstd data/));
  test('a bomb: 1 MiB of zeros declared as 4 KiB', () => {
    rejects(zchunk(4096, compressed(Buffer.alloc(MAX_CHUNK_BYTES))), 'BAD_COMPRESSION', /decompresses to more than the 4096 bytes declared/);
  });
  test('fewer bytes than declared', () => rejects(zchunk(5000, compressed(text(4000))), 'BAD_COMPRESSION', /decompressed to 4000 bytes, not the 5000 declared/));
  test('a declared size over MAX_CHUNK_BYTES is refused before decompressing', () => {
    let called = false;
    assert.throws(() => decodeFrame(zchunk(MAX_CHUNK_BYTES + 1, compressed(text(1000))), 'agent', undefined, () => {
      called = true;
      return Buffer.alloc(0);
    }), (err: unknown) => err instanceof ProtocolError && err.code === 'FRAME_TOO_LARGE');
    assert.equal(called, false, 'inflate was called');
  });
  test('a zchunk where compression was not negotiated', () => {
    assert.throws(() => decodeFrame(zchunk(1000, compressed(text(1000))), 'agent'), (err: unknown) => err instanceof ProtocolError && err.code === 'UNEXPECTED_MESSAGE');
  });
});
