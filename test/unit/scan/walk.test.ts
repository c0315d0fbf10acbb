// walk.ts: kinds and metadata, symlinks never followed (not even a directory swapped for one while
// the walk runs), pruning, the error policy (vanished entries, unreadable directories, special files, unsyncable names, paths past PATH_MAX) and streaming with a
// slow consumer.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, rmSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { wholeMs } from '../../../src/entry.js';
import { WarmsyncError } from '../../../src/errors.js';
import { MAX_SYNC_DEPTH } from '../../../src/relpath.js';
import { walkTree, type WalkEntry, type WalkOptions } from '../../../src/scan/walk.js';
import { makeDeepTree, removeDeep } from '../../helpers/faults.js';

interface Warning { code: string; message: string; path: string | undefined }

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-walk-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let counter = 0;
async function freshDir(): Promise<string> {
  const d = path.join(tmp, `t${counter++}`);
  await mkdir(d);
  return d;
}

async function walkAll(root: string, isExcluded: WalkOptions['isExcluded'] = () => false):
  Promise<{ entries: Map<string, WalkEntry>; warnings: Warning[] }> {
  const warnings: Warning[] = [];
  const entries = new Map<string, WalkEntry>();
  for await (const e of walkTree(root, { isExcluded, onWarning: (code, message, p) => warnings.push({ code, message, path: p }) })) {
    assert.ok(!entries.has(e.path), `duplicate ${e.path}`);
    entries.set(e.path, e);
  }
  return { entries, warnings };
}

describe('walkTree: kinds and metadata', () => {
  it('yields files, dirs and symlinks with lstat metadata; symlinks are never followed', async () => {
    const root = await freshDir();
    await mkdir(path.join(root, 'a/b'), { recursive: true });
    await writeFile(path.join(root, 'a/b/file.txt'), 'hello', { mode: 0o640 });
    await writeFile(path.join(root, 'top'), '');
    await symlink('b/file.txt', path.join(root, 'a/link'));
    await symlink('does/not/exist', path.join(root, 'dangling'));
    await symlink('a', path.join(root, 'dirlink')); // to a directory: must not be descended
    await symlink('caf\u00e9', path.join(root, 'utf8link'));
    const { entries, warnings } = await walkAll(root);
    assert.deepEqual(warnings, []);
    assert.deepEqual([...entries.keys()].sort(), ['a', 'a/b', 'a/b/file.txt', 'a/link', 'dangling', 'dirlink', 'top', 'utf8link']);

    const st = await lstat(path.join(root, 'a/b/file.txt'));
    assert.deepEqual(entries.get('a/b/file.txt'), {
      path: 'a/b/file.txt', kind: 'file', size: 5, mtimeMs: wholeMs(st.mtimeMs), mode: 0o640, ino: st.ino, target: null, uid: st.uid, gid: st.gid,
    });
    const dirEntry = entries.get('a/b');
    assert.equal(dirEntry?.kind, 'dir');
    assert.equal(dirEntry?.size, 0);
    assert.equal(dirEntry?.target, null);
    assert.equal(entries.get('a/link')?.kind, 'symlink');
    assert.equal(entries.get('a/link')?.target, 'b/file.txt');
    assert.equal(entries.get('dangling')?.target, 'does/not/exist');
    assert.equal(entries.get('dirlink')?.kind, 'symlink');
    assert.equal(entries.get('utf8link')?.size, 5, 'size is the UTF-8 byte length of the target');
    for (const e of entries.values()) {
      assert.ok(Number.isInteger(e.mtimeMs));
      assert.ok(e.mode <= 0o7777);
    }
  });

  it('walks an empty root to nothing', async () => {
    const { entries, warnings } = await walkAll(await freshDir());
    assert.equal(entries.size, 0);
    assert.deepEqual(warnings, []);
  });

  it('accepts a root that is a symlink to a directory, and a relative root', async () => {
    const real = await freshDir();
    await writeFile(path.join(real, 'f'), 'x');
    const link = path.join(tmp, `rootlink${counter++}`);
    await symlink(real, link);
    assert.deepEqual([...(await walkAll(link)).entries.keys()], ['f']);
    assert.deepEqual([...(await walkAll(path.relative(process.cwd(), real))).entries.keys()], ['f']);
  });
});

describe('walkTree: order', () => {
  it('yields in tree order: names sorted, each directory followed by its whole subtree', async () => {
    const root = await freshDir();
    for (const d of ['a/b/c', 'a-x', 'a.y/z', 'B', 'caf\u00e9']) await mkdir(path.join(root, d), { recursive: true });
    for (const f of ['a/b/c/f', 'a/b/g', 'a/0', 'a-x/f', 'a.y/z/f', 'ab', 'B/f', 'caf\u00e9/f', 'top']) await writeFile(path.join(root, f), '');
    const { entries } = await walkAll(root);
    assert.deepEqual([...entries.keys()], [
      'B', 'B/f',
      'a', 'a/0', 'a/b', 'a/b/c', 'a/b/c/f', 'a/b/g',
      'a-x', 'a-x/f', 'a.y', 'a.y/z', 'a.y/z/f', 'ab',
      'caf\u00e9', 'caf\u00e9/f',
      'top',
    ]);
  });
});

describe('walkTree: root errors', () => {
  it('SOURCE_MISSING for a missing root (also a dangling symlink root)', async () => {
    const missing = path.join(tmp, 'nope');
    await assert.rejects(walkAll(missing), (err: unknown) =>
      err instanceof WarmsyncError && err.code === 'SOURCE_MISSING' && err.message === `source root ${missing} does not exist`);
    const dangling = path.join(tmp, `dangling-root${counter++}`);
    await symlink(missing, dangling);
    await assert.rejects(walkAll(dangling), { code: 'SOURCE_MISSING' });
  });

  it('SOURCE_NOT_DIR for a root that is a file', async () => {
    const file = path.join(tmp, `file-root${counter++}`);
    await writeFile(file, 'x');
    await assert.rejects(walkAll(file), { code: 'SOURCE_NOT_DIR' });
  });
});

describe('walkTree: exclusion', () => {
  it('prunes excluded directories: never listed, nothing below them offered to the predicate', async () => {
    const root = await freshDir();
    await mkdir(path.join(root, 'keep/skip/deep'), { recursive: true });
    await mkdir(path.join(root, '.warmsync'));
    await writeFile(path.join(root, 'keep/skip/deep/f'), 'x');
    await writeFile(path.join(root, '.warmsync/agent-cache.sqlite'), 'x');
    await writeFile(path.join(root, 'keep/a.tmp'), 'x');
    await writeFile(path.join(root, 'keep/a.txt'), 'x');
    await symlink('skip', path.join(root, 'keep/skiplink'));
    const calls: [string, boolean][] = [];
    const { entries } = await walkAll(root, (p, isDir) => {
      calls.push([p, isDir]);
      return p === '.warmsync' || p.endsWith('/skip') || p.endsWith('.tmp');
    });
    assert.deepEqual([...entries.keys()].sort(), ['keep', 'keep/a.txt', 'keep/skiplink']);
    assert.deepEqual(calls.sort(), [
      ['.warmsync', true], ['keep', true], ['keep/a.tmp', false], ['keep/a.txt', false], ['keep/skip', true], ['keep/skiplink', false],
    ]);
  });

  it('a predicate that throws fails the walk with its error', async () => {
    const root = await freshDir();
    await writeFile(path.join(root, 'f'), 'x');
    const boom = new Error('matcher broke');
    await assert.rejects(walkAll(root, () => { throw boom; }), (err) => err === boom);
  });
});

describe('walkTree: special files and skipped entries', () => {
  it('FIFOs and sockets are entries of kind special, never opened (rsync -a keeps them)', async () => {
    const root = await freshDir();
    execFileSync('mkfifo', ['-m', '0640', path.join(root, 'fifo')]);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(root, 'sock'), resolve));
    try {
      await writeFile(path.join(root, 'f'), 'x');
      const { entries, warnings } = await walkAll(root);
      assert.deepEqual(warnings, []);
      assert.deepEqual([...entries.keys()], ['f', 'fifo', 'sock']);
      assert.deepEqual([entries.get('fifo')?.kind, entries.get('fifo')?.target, entries.get('fifo')?.mode], ['special', 'fifo', 0o640]);
      assert.deepEqual([entries.get('sock')?.kind, entries.get('sock')?.target, entries.get('sock')?.size], ['special', 'socket', 0]);
      if (process.getuid?.() === 0) {
        execFileSync('mknod', [path.join(root, 'null'), 'c', '1', '3']);
        execFileSync('mknod', [path.join(root, 'loop'), 'b', '7', '300']);
        const again = await walkAll(root);
        assert.equal(again.entries.get('null')?.target, 'char 1:3');
        assert.equal(again.entries.get('loop')?.target, 'block 7:300');
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('UNSYNCABLE_NAME for invalid UTF-8, a literal U+FFFD, and everything below such a dir; a backslash is an ordinary byte', async () => {
    const root = await freshDir();
    await writeFile(path.join(root, 'back\\slash'), 'x');
    await mkdir(path.join(root, 'dir\\bs'));
    await writeFile(path.join(root, 'dir\\bs', 'child'), 'x');
    await mkdir(Buffer.concat([Buffer.from(`${root}/bad-dir-`), Buffer.from([0xc3, 0x28])]));
    await writeFile(Buffer.concat([Buffer.from(`${root}/bad-dir-`), Buffer.from([0xc3, 0x28]), Buffer.from('/child')]), 'x');
    await writeFile(Buffer.concat([Buffer.from(`${root}/bad-`), Buffer.from([0xff, 0xfe])]), 'x');
    await writeFile(path.join(root, 'replacement-\uFFFD'), 'x');
    await writeFile(path.join(root, 'ok'), 'x');
    const { entries, warnings } = await walkAll(root);
    assert.deepEqual([...entries.keys()], ['back\\slash', 'dir\\bs', 'dir\\bs/child', 'ok']);
    assert.equal(warnings.length, 3, JSON.stringify(warnings));
    for (const w of warnings) {
      assert.equal(w.code, 'UNSYNCABLE_NAME');
      assert.equal(w.path, undefined);
    }
    assert.ok(warnings.every((w) => /UTF-8/.test(w.message)));
  });

  it('UNSYNCABLE_NAME for a symlink whose target is not UTF-8', async () => {
    const root = await freshDir();
    await symlink(Buffer.from([0x61, 0xff]), path.join(root, 'l'));
    const { entries, warnings } = await walkAll(root);
    assert.equal(entries.size, 0);
    assert.deepEqual(warnings.map((w) => w.code), ['UNSYNCABLE_NAME']);
  });

  it('a directory deleted between being listed and being read is skipped silently', async () => {
    const root = await freshDir();
    await mkdir(path.join(root, 'gone/sub'), { recursive: true });
    await writeFile(path.join(root, 'gone/sub/f'), 'x');
    await writeFile(path.join(root, 'stay'), 'x');
    const { entries, warnings } = await walkAll(root, (p) => {
      if (p === 'gone') rmSync(path.join(root, 'gone'), { recursive: true }); // after its lstat, before its readdir
      return false;
    });
    assert.deepEqual([...entries.keys()].sort(), ['gone', 'stay']);
    assert.deepEqual(warnings, []);
  });

  it('a directory swapped for a symlink between its lstat and its listing is not listed: nothing outside the source is read', async () => {
    // A local user racing the walk: "d" was a directory when its parent was listed, and is a
    // symlink to a directory outside the source (with a symlink of its own in it) when the walk
    // enters it. Listing by path would follow it and yield the outside names, stats and link
    // targets as if they were the source's.
    const root = await freshDir();
    const outside = await freshDir();
    await writeFile(path.join(outside, 'secret'), 'outside');
    await symlink('/etc/shadow', path.join(outside, 'link'));
    await mkdir(path.join(root, 'd'));
    await writeFile(path.join(root, 'stay'), 'x');
    const { entries, warnings } = await walkAll(root, (p) => {
      if (p === 'd') {
        rmSync(path.join(root, 'd'), { recursive: true });
        execFileSync('ln', ['-s', outside, path.join(root, 'd')]);
      }
      return false;
    });
    assert.deepEqual([...entries.keys()].sort(), ['d', 'stay']);
    assert.equal(entries.get('d')?.kind, 'dir', 'the entry as it was when lstat\'ed');
    assert.deepEqual(warnings, []);
  });

  it('an entry whose lstat fails (as for a file deleted after readdir) costs neither its siblings nor the walk', async () => {
    // A name that is not UTF-8 cannot be lstat'ed through its decoded string: ENOENT, exactly as for
    // a file deleted between readdir and lstat. With fs.walk's default that would fail the whole
    // directory listing (here: the whole subtree of "d" would silently vanish).
    const root = await freshDir();
    await mkdir(path.join(root, 'd'));
    for (const n of ['a', 'c']) await writeFile(path.join(root, 'd', n), 'x');
    await writeFile(Buffer.concat([Buffer.from(`${root}/d/b-`), Buffer.from([0xff])]), 'x');
    const { entries, warnings } = await walkAll(root);
    assert.deepEqual([...entries.keys()].sort(), ['d', 'd/a', 'd/c']);
    assert.deepEqual(warnings.map((w) => w.code), ['UNSYNCABLE_NAME']);
  });
});

describe('walkTree: paths too long or too deep for this machine', () => {
  it('2,040 nested dirs (4,100 bytes): skipped past MAX_SYNC_DEPTH levels with one PATH_TOO_LONG naming it; the rest is walked', async () => {
    const root = await freshDir();
    try {
      await writeFile(path.join(root, 'beside'), 'x');
      const rel = makeDeepTree(root, 2040, 'd', 'leaf-of-4100-bytes.x', 'deep');
      assert.equal(Buffer.byteLength(rel), 4100);
      const { entries, warnings } = await walkAll(root);
      assert.deepEqual(warnings.map((w) => [w.code, w.path]), [['PATH_TOO_LONG', `${'d/'.repeat(MAX_SYNC_DEPTH)}d`]]);
      assert.match(warnings[0]?.message ?? '', new RegExp(`^(d/){${MAX_SYNC_DEPTH}}d: skipped .*deeper than ${MAX_SYNC_DEPTH} levels`));
      assert.ok(entries.has('beside'));
      assert.ok(entries.has(`${'d/'.repeat(MAX_SYNC_DEPTH - 1)}d`), 'the levels that fit are walked');
      assert.equal(entries.size, 1 + MAX_SYNC_DEPTH);
    } finally {
      removeDeep(root);
    }
  });

  it('a path past PATH_MAX within few levels (ENAMETOOLONG): skipped with one PATH_TOO_LONG naming it; the rest is walked', async () => {
    const root = await freshDir();
    try {
      await writeFile(path.join(root, 'beside'), 'x');
      // 15 levels of 250 bytes, then 10-byte ones: the absolute path passes PATH_MAX while the
      // relative one is still a valid path (at most 4,096 bytes).
      const upper = makeDeepTree(root, 15, 'L'.repeat(250), 'leaf', 'fits');
      const lower = makeDeepTree(path.join(root, path.dirname(upper)), 40, 'M'.repeat(10), 'leaf', 'too long');
      const rel = `${path.dirname(upper)}/${lower}`;
      const { entries, warnings } = await walkAll(root);
      assert.equal(warnings.length, 1, JSON.stringify(warnings.map((w) => w.code)));
      const w = warnings[0] as Warning;
      assert.equal(w.code, 'PATH_TOO_LONG');
      assert.ok(w.path !== undefined && rel.startsWith(`${w.path}/`), 'the warning names a prefix of the long path');
      assert.ok(w.message.startsWith(`${w.path}: skipped`) && w.message.includes('ENAMETOOLONG'), w.message.slice(-120));
      assert.ok(Buffer.byteLength(`${root}/${w.path}`) >= 4096, 'only what passes PATH_MAX is skipped');
      assert.ok(entries.has('beside'));
      assert.ok(entries.has(w.path.slice(0, w.path.lastIndexOf('/'))), 'its parent is walked');
    } finally {
      removeDeep(root);
    }
  });
});

describe('walkTree: unreadable entries', () => {
  // Tests run as root, and root ignores permission bits (CAP_DAC_OVERRIDE). So the walk runs in a
  // child process as `nobody` when we are root (in-process rights otherwise), on a tree with:
  //   locked/        mode 000: cannot be listed -> UNREADABLE, the dir itself is still yielded
  //   noexec/        mode 444: listed, but its entries cannot be lstat'ed -> UNREADABLE per entry
  //   open/f         readable
  const walkModule = fileURLToPath(new URL('../../../src/scan/walk.ts', import.meta.url));
  const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));
  const isRoot = process.getuid?.() === 0;

  it('UNREADABLE warning and skip, for a directory that cannot be listed and entries that cannot be stat\'ed', async () => {
    const base = await freshDir();
    const root = path.join(base, 'tree');
    mkdirSync(path.join(root, 'locked'), { recursive: true });
    mkdirSync(path.join(root, 'noexec'));
    mkdirSync(path.join(root, 'open'));
    await writeFile(path.join(root, 'locked/secret'), 'x');
    await writeFile(path.join(root, 'noexec/hidden'), 'x');
    await writeFile(path.join(root, 'open/f'), 'x');
    await chmod(path.join(root, 'locked'), 0o000);
    await chmod(path.join(root, 'noexec'), 0o444);
    const childTmp = path.join(base, 'child-tmp'); // tsx's cache for the child user
    mkdirSync(childTmp, { mode: 0o777 });
    await chmod(childTmp, 0o777);
    for (let d = base; d !== tmp && d.startsWith(tmp); d = path.dirname(d)) await chmod(d, 0o755);
    await chmod(tmp, 0o755);

    const script = `
      import { walkTree } from ${JSON.stringify(walkModule)};
      const entries = []; const warnings = [];
      for await (const e of walkTree(${JSON.stringify(root)}, { isExcluded: () => false,
        onWarning: (code, message, path) => warnings.push({ code, path }) })) entries.push(e.path);
      console.log(JSON.stringify({ uid: process.getuid(), entries: entries.sort(), warnings }));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: projectRoot,
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: childTmp },
      ...(isRoot ? { uid: 65534, gid: 65534 } : {}),
    });
    await chmod(path.join(root, 'locked'), 0o755);
    await chmod(path.join(root, 'noexec'), 0o755);
    assert.equal(child.status, 0, child.stderr);
    const out = JSON.parse(child.stdout) as { uid: number; entries: string[]; warnings: { code: string; path: string }[] };
    assert.notEqual(out.uid, 0, 'the child must not run as root');
    assert.deepEqual(out.entries, ['locked', 'noexec', 'open', 'open/f']);
    assert.deepEqual(out.warnings.sort((a, b) => a.path.localeCompare(b.path)), [
      { code: 'UNREADABLE', path: 'locked' },
      { code: 'UNREADABLE', path: 'noexec/hidden' },
    ]);
  });
});

describe('walkTree: streaming', () => {
  it('walks a tree larger than its buffer completely with a slow consumer, and stops early on break', async () => {
    const root = await freshDir();
    const dirs = 10;
    const perDir = 500; // 5000 files in 10 directories: the consumer is slower than the listing
    await writeFile(path.join(root, 'origin'), '');
    for (let d = 0; d < dirs; d++) {
      mkdirSync(path.join(root, `d${d}`));
      // Hard links: one cheap syscall per file.
      for (let i = 0; i < perDir; i++) linkSync(path.join(root, 'origin'), path.join(root, `d${d}`, `f${i}`));
    }
    let seen = 0;
    for await (const e of walkTree(root, { isExcluded: () => false, onWarning: assert.fail })) {
      assert.ok(e.path.length > 0);
      if (++seen % 500 === 0) await delay(5);
    }
    assert.equal(seen, 1 + dirs + dirs * perDir);

    let taken = 0;
    for await (const _ of walkTree(root, { isExcluded: () => false, onWarning: assert.fail })) {
      if (++taken === 10) break;
    }
    assert.equal(taken, 10);
  });
});
