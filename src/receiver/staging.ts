/**
 * Invariant 2, "Atomic and verified": file content is written to a temporary name in the target's own
 * directory, hashed as it arrives, and only a verified, fsynced file is renamed into place. The
 * caller fsyncs the directory and records the manifest row afterwards (in batches: group commit).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { utimeValue } from '../entry.js';
import { ProtocolError, WarmsyncError } from '../errors.js';
import type { PartialStore } from './partials.js';

/** Temporary files are recognisable so scans skip them and crash recovery removes them. */
export const TEMP_PREFIX = '.warmsync-tmp.';

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

export interface StreamHasher { update(data: Uint8Array): void; digest(): string }

export interface StagedTarget { readonly size: number; readonly hash: string; readonly mode: number; readonly mtimeMs: number }

export class StagedFile {
  private written = 0;
  private closed = false;

  private constructor(
    readonly finalPath: string,
    readonly tempPath: string,
    private readonly handle: FileHandle,
    private readonly hasher: StreamHasher,
    readonly target: StagedTarget,
  ) {}

  /**
   * Opens a temporary file beside `finalPath`. With `partials`, an unfinished earlier transfer of
   * the same content is continued: its bytes are hashed again (the hash covers the whole file) and
   * `bytesWritten` says where the agent must resume.
   */
  static async create(finalPath: string, target: StagedTarget, hasher: StreamHasher, partials?: PartialStore): Promise<StagedFile> {
    const tempPath = join(dirname(finalPath), TEMP_PREFIX + randomBytes(12).toString('hex'));
    const resumed = partials ? await partials.take(target.hash, target.size, tempPath) : null;
    if (resumed !== null) {
      const handle = await open(tempPath, 'r+');
      const staged = new StagedFile(finalPath, tempPath, handle, hasher, target);
      try {
        await staged.rehashPrefix(resumed);
      } catch (err) {
        await staged.abort();
        throw err;
      }
      return staged;
    }
    // 'wx': never reuse or follow anything already at the temp name.
    const handle = await open(tempPath, 'wx', 0o600);
    return new StagedFile(finalPath, tempPath, handle, hasher, target);
  }

  private async rehashPrefix(length: number): Promise<void> {
    const buffer = Buffer.allocUnsafe(Math.min(1 << 20, length));
    while (this.written < length) {
      const { bytesRead } = await this.handle.read(buffer, 0, Math.min(buffer.byteLength, length - this.written), this.written);
      if (bytesRead === 0) break;
      this.hasher.update(buffer.subarray(0, bytesRead));
      this.written += bytesRead;
    }
    await this.handle.truncate(this.written);
  }

  /** Keeps what arrived so far (fsynced) for a later connection to continue; the temp file is gone. */
  async keepAsPartial(partials: PartialStore): Promise<void> {
    await this.handle.sync();
    await this.close();
    await partials.keep(this.tempPath, this.target.hash, this.target.size);
  }

  get bytesWritten(): number {
    return this.written;
  }

  get complete(): boolean {
    return this.written === this.target.size;
  }

  /** Appends a chunk; offsets must be contiguous and stay within the announced size. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset !== this.written) {
      throw new ProtocolError('BAD_OFFSET', `chunk at offset ${offset} for ${this.finalPath}, expected ${this.written}`);
    }
    if (offset + data.byteLength > this.target.size) {
      throw new ProtocolError('BAD_OFFSET', `chunk ends at ${offset + data.byteLength}, past the announced size ${this.target.size}`);
    }
    let done = 0;
    while (done < data.byteLength) {
      const { bytesWritten } = await this.handle.write(data, done, data.byteLength - done, offset + done);
      done += bytesWritten;
    }
    this.hasher.update(data);
    this.written += data.byteLength;
  }

  /** Checks the content against the announced hash; on mismatch removes the temp file and throws CHECKSUM_MISMATCH. */
  async verify(): Promise<void> {
    const actual = this.hasher.digest();
    if (actual !== this.target.hash) {
      await this.abort();
      throw new WarmsyncError('CHECKSUM_MISMATCH', `content of ${this.finalPath} hashed to ${actual}, the agent announced ${this.target.hash}; not applied`);
    }
  }

  /** Sets mode and mtime and fsyncs the data; the file is still at its temporary name. */
  async seal(): Promise<void> {
    await this.handle.chmod(this.target.mode);
    const t = utimeValue(this.target.mtimeMs);
    await this.handle.utimes(t, t);
    await this.handle.sync();
    await this.close();
  }

  /** Renames the sealed file over the final path (replacing a file or symlink, never following it). */
  async install(): Promise<void> {
    await rename(this.tempPath, this.finalPath);
  }

  async abort(): Promise<void> {
    await this.close().catch(() => undefined);
    await unlink(this.tempPath).catch(() => undefined);
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}
