/**
 * Invariant 2's "durable" for a group of files at once. An fsync per file made ext4 commit its
 * journal once per file (308 us a file on this machine's disk, and every create in the directory
 * waited behind those commits); one syncfs(2) per file system covers the whole group (3,000 files
 * written then synced: 90 ms, 30 us a file). The receiver's group commit calls it twice: once for
 * the data of the temp files before any of them is renamed into place (so no final path ever
 * names a file whose data may be lost), once after the renames (so the new names are durable
 * before the manifest records them).
 *
 * syncfs covers one file system, so the descriptors (the confined layer's held directories) are
 * grouped by device: a mount point inside the standby root (a filestore on its own disk) gets its
 * own call. syncfs also writes back what other processes left dirty there, so a file that arrives
 * alone is fsynced by itself instead (staging.ts), and its rename made durable by an fsync of its
 * directory (ConfinedRoot.fsyncDirs).
 */
import { fstatSync } from 'node:fs';
import { syncfs } from '../native.js';

/** Makes everything written so far to the file systems holding `fds` durable: one syncfs per device. */
export async function syncFileSystems(fds: Iterable<number>): Promise<void> {
  const byDevice = new Map<number, number>();
  for (const fd of new Set(fds)) {
    const dev = fstatSync(fd).dev;
    if (!byDevice.has(dev)) byDevice.set(dev, fd);
  }
  await Promise.all([...byDevice.values()].map((fd) => syncfs(fd)));
}
