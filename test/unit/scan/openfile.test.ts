/**
 * openPlannedFile, the one open every agent read of file content goes through (scan/openfile.ts):
 * a regular file of the planned identity opens; a symlink (even to a regular file of the same size
 * and mtime), a FIFO (without blocking), a socket, a device, a directory and another file renamed
 * over the path are FILE_CHANGED, with no descriptor left open, and so is a file whose directory
 * was swapped for a symlink out of the source when opened beneath the source root; other errors
 * pass through.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { lstat, mkdir, mkdtemp, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { wholeMs } from '../../../src/entry.js';
import { WarmsyncError } from '../../../src/errors.js';
import { NO_FOLLOW_READ, SourceRoot, openPlannedFile } from '../../../src/scan/openfile.js';

function isChanged(err: unknown): boolean {
  return err instanceof WarmsyncError && err.code === 'FILE_CHANGED';
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('openPlannedFile', () => {
  let dir: string;
  let server: Server | null = null;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warmsync-openfile-'));
  });
  after(async () => {
    server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A file with a fixed mtime, and the identity a scan would have planned for it. */
  async function planned(name: string, content: string): Promise<{ abs: string; plan: { size: number; mtimeMs: number; ino: number; dev: number } }> {
    const abs = join(dir, name);
    await writeFile(abs, content);
    await utimes(abs, 1_700_000_000, 1_700_000_000);
    const st = await stat(abs);
    return { abs, plan: { size: st.size, mtimeMs: wholeMs(st.mtimeMs), ino: st.ino, dev: st.dev } };
  }

  it('opens with O_RDONLY | O_NOFOLLOW | O_NONBLOCK', async () => {
    const { constants } = await import('node:fs');
    assert.equal(NO_FOLLOW_READ, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  });

  it('opens a regular file of the planned identity and reads it', async () => {
    const { abs, plan } = await planned('ok', 'hello');
    for (const expect of [undefined, plan, { size: plan.size, mtimeMs: plan.mtimeMs }]) {
      const f = openPlannedFile(abs, expect);
      try {
        assert.deepEqual({ size: f.size, mtimeMs: f.mtimeMs, ino: f.ino, dev: f.dev, mode: f.mode }, { ...plan, mode: (await stat(abs)).mode & 0o7777 });
        const buf = Buffer.alloc(16);
        assert.equal(buf.subarray(0, readSync(f.fd, buf, 0, 16, 0)).toString(), 'hello');
      } finally {
        closeSync(f.fd);
      }
    }
  });

  it('FILE_CHANGED for a symlink, even to a regular file of the same size and mtime', async () => {
    const { abs: secret } = await planned('secret', 'SECRET');
    const { abs, plan } = await planned('victim', 'public');
    await rm(abs);
    await symlink(secret, abs);
    const fds = openFds();
    assert.throws(() => openPlannedFile(abs, { size: plan.size, mtimeMs: plan.mtimeMs }), isChanged);
    assert.throws(() => openPlannedFile(abs), isChanged);
    assert.equal(openFds(), fds, 'no descriptor left open');
  });

  it('beneath the source root: FILE_CHANGED when a directory above the file is swapped for a symlink out of the source (same name, size and mtime there)', async () => {
    // The source: src/sub/victim; outside it: outside/victim with the secret, of the same size and mtime.
    const src = join(dir, 'src');
    const outside = join(dir, 'outside');
    await mkdir(join(src, 'sub'), { recursive: true });
    await mkdir(outside);
    for (const [at, content] of [[join(src, 'sub/victim'), 'public'], [join(outside, 'victim'), 'SECRET']] as const) {
      await writeFile(at, content);
      await utimes(at, 1_700_000_000, 1_700_000_000);
    }
    const abs = join(src, 'sub/victim');
    const st = await stat(abs);
    const plan = { size: st.size, mtimeMs: wholeMs(st.mtimeMs) };
    const source = new SourceRoot(src);
    try {
      closeSync(openPlannedFile(abs, plan, source).fd); // the real file opens beneath the root
      await rename(join(src, 'sub'), join(dir, 'sub-away'));
      await symlink(outside, join(src, 'sub'));
      // Without the root the parent symlink is followed and the secret (same size and mtime) opens: the hole this closes.
      const followed = openPlannedFile(abs, plan);
      const buf = Buffer.alloc(16);
      assert.equal(buf.subarray(0, readSync(followed.fd, buf, 0, 16, 0)).toString(), 'SECRET');
      closeSync(followed.fd);
      const fds = openFds();
      assert.throws(() => openPlannedFile(abs, plan, source), (err: unknown) => isChanged(err) && /a directory above it, is now a symlink/.test((err as Error).message));
      assert.equal(openFds(), fds, 'no descriptor left open');
    } finally {
      source.close();
    }
  });

  it('abs gives path.join\'s result for any spelling of the root; through a root given with a trailing slash, a file still opens beneath it', async () => {
    for (const form of ['/', '/srv/data', '/srv/data/', 'rel/dir', './rel', '.']) {
      const source = new SourceRoot(form);
      for (const rel of ['a', 'a/b c/\u00e9', '.hidden/..x']) assert.equal(source.abs(rel), join(form, rel), `${form} + ${rel}`);
    }
    const src = join(dir, 'slash');
    const outside = join(dir, 'slash-outside');
    await mkdir(join(src, 'sub'), { recursive: true });
    await mkdir(outside);
    for (const at of [join(src, 'sub/victim'), join(outside, 'victim')]) {
      await writeFile(at, 'same size');
      await utimes(at, 1_700_000_000, 1_700_000_000);
    }
    const source = new SourceRoot(`${src}/`);
    try {
      const abs = source.abs('sub/victim');
      const st = await stat(abs);
      const plan = { size: st.size, mtimeMs: wholeMs(st.mtimeMs) };
      closeSync(openPlannedFile(abs, plan, source).fd);
      await rename(join(src, 'sub'), join(dir, 'slash-away'));
      await symlink(outside, join(src, 'sub'));
      assert.throws(() => openPlannedFile(abs, plan, source), (err: unknown) => isChanged(err) && /a directory above it, is now a symlink/.test((err as Error).message));
    } finally {
      source.close();
    }
  });

  it('the source root is held only while in use: unused for 500 ms its descriptor is closed (an idle agent never keeps the source from being unmounted)', async () => {
    const src = join(dir, 'held');
    await mkdir(src);
    const { plan } = await planned('held/f', 'x');
    const source = new SourceRoot(src);
    const holding = (): boolean => readdirSync('/proc/self/fd').some((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === src;
      } catch {
        return false;
      }
    });
    try {
      assert.equal(holding(), false, 'nothing opened before the first read');
      closeSync(openPlannedFile(join(src, 'f'), plan, source).fd);
      assert.equal(holding(), true, 'held while in use');
      const deadline = Date.now() + 5_000;
      while (holding() && Date.now() < deadline) await sleep(50);
      assert.equal(holding(), false, 'still held 5 s after the last read');
      closeSync(openPlannedFile(join(src, 'f'), plan, source).fd); // opened again on the next read
    } finally {
      source.close();
    }
  });

  it('FILE_CHANGED for a FIFO, at once (the open does not wait for a writer)', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const mtimeMs = wholeMs((await lstat(fifo)).mtimeMs);
    const fds = openFds();
    const started = Date.now();
    assert.throws(() => openPlannedFile(fifo, { size: 0, mtimeMs }), isChanged);
    assert.throws(() => openPlannedFile(fifo), isChanged);
    assert.ok(Date.now() - started < 1000);
    assert.equal(openFds(), fds, 'no descriptor left open');
  });

  it('FILE_CHANGED for a socket, a character device and a directory', async () => {
    const sock = join(dir, 'sock');
    server = createServer();
    await new Promise<void>((resolve) => server?.listen(sock, resolve));
    await mkdir(join(dir, 'd'));
    // /dev/null: a character device (opening it has no side effect).
    for (const abs of [sock, '/dev/null', join(dir, 'd')]) {
      assert.throws(() => openPlannedFile(abs), isChanged, abs);
    }
  });

  it('FILE_CHANGED for another file renamed over the path, or a planned size or mtime that no longer holds', async () => {
    const { abs, plan } = await planned('swapped', 'same!');
    const { abs: other } = await planned('other', 'diff!'); // same size, same mtime, another inode
    await rename(other, abs);
    const ino = (await stat(abs)).ino;
    const fds = openFds();
    assert.throws(() => openPlannedFile(abs, plan), (err) => isChanged(err) && /another inode/.test((err as Error).message));
    assert.throws(() => openPlannedFile(abs, { ...plan, ino, dev: plan.dev + 1 }), /another device/);
    assert.throws(() => openPlannedFile(abs, { size: plan.size + 1 }), /size 5, planned 6/);
    assert.throws(() => openPlannedFile(abs, { mtimeMs: plan.mtimeMs + 1 }), /mtime/);
    assert.equal(openFds(), fds, 'no descriptor left open');
  });

  it('passes other errors through: ENOENT, ENOTDIR, ENAMETOOLONG', async () => {
    const { abs } = await planned('plain', 'x');
    assert.throws(() => openPlannedFile(join(dir, 'missing')), { code: 'ENOENT' });
    assert.throws(() => openPlannedFile(join(abs, 'below')), { code: 'ENOTDIR' });
    assert.throws(() => openPlannedFile(join(dir, 'a/'.repeat(2100) + 'f')), { code: 'ENAMETOOLONG' });
  });
});
