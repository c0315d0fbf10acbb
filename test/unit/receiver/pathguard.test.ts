/**
 * receiver/pathguard (real temp dirs): resolve() refuses every non-canonical path and anything in
 * the state dir; prepareParents() creates missing ancestors and refuses to go through a symlink
 * (to a dir inside or outside the root, or dangling) or a non-directory, creating nothing outside
 * the root.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ProtocolError } from '../../../src/errors.js';
import { PathGuard } from '../../../src/receiver/pathguard.js';

let tmp: string;
let counter = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-pathguard-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A fresh root and a fresh directory outside it, side by side in the temp dir. */
async function freshRoot(): Promise<{ root: string; outside: string; guard: PathGuard }> {
  const n = counter++;
  const root = path.join(tmp, `root-${n}`);
  const outside = path.join(tmp, `outside-${n}`);
  await mkdir(root);
  await mkdir(outside);
  return { root, outside, guard: new PathGuard(root, '.warmsync') };
}

/** Every path below `dir`, sorted, with a trailing "/" on directories and "@" on symlinks. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const rel = path.relative(dir, path.join(e.parentPath, e.name));
    out.push(rel + (e.isSymbolicLink() ? '@' : e.isDirectory() ? '/' : ''));
  }
  return out.sort();
}

function isProtocolError(code: string, messagePart?: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (messagePart !== undefined) assert.ok(err.message.includes(messagePart), err.message);
    return true;
  };
}

describe('PathGuard.resolve', () => {
  const root = '/srv/standby';
  const guard = new PathGuard(root, '.warmsync');

  const bad: ReadonlyArray<[string, string, string]> = [
    ['empty', '', 'empty path'],
    ['dot', '.', '"." segment'],
    ['dot-dot', '..', '".." segment'],
    ['escape by dot-dot', '../etc/passwd', '".." segment'],
    ['absolute', '/etc/passwd', 'absolute path'],
    ['trailing slash', 'a/', 'empty segment'],
    ['double slash', 'a//b', 'empty segment'],
    ['dot segment', 'a/./b', '"." segment'],
    ['dot-dot segment', 'a/../b', '".." segment'],
    ['NUL', 'a\0b', 'contains NUL'],
    ['256-byte segment', 'y'.repeat(256), 'segment longer than 255 bytes'],
    ['4097-byte path', `${'x'.repeat(200)}/`.repeat(20) + 'x'.repeat(77), 'longer than 4096 bytes'],
    ['the state dir', '.warmsync', "inside the receiver's state dir"],
    ['inside the state dir', '.warmsync/x', "inside the receiver's state dir"],
    ['deep inside the state dir', '.warmsync/manifest.sqlite-wal/x', "inside the receiver's state dir"],
  ];
  for (const [name, rel, problem] of bad) {
    test(`refuses ${name}: ${problem}`, () => {
      assert.throws(() => guard.resolve(rel), isProtocolError('BAD_PATH', problem));
    });
  }

  const good: ReadonlyArray<[string, string, PathGuard]> = [
    ['top-level file', 'a', guard],
    ['nested file', 'a/b/c', guard],
    ['name that starts like the state dir', '.warmsyncx', guard],
    ['state dir name below the root', 'x/.warmsync', guard],
    ['.warmsync when the state dir lies outside the root', '.warmsync', new PathGuard(root, null)],
    ['parent of a nested state dir', 'var', new PathGuard(root, 'var/state')],
  ];
  for (const [name, rel, g] of good) {
    test(`accepts ${name}: ${JSON.stringify(rel)}`, () => {
      assert.equal(g.resolve(rel), path.join(root, rel));
    });
  }

  test('a nested state dir is refused, and everything below it', () => {
    const nested = new PathGuard(root, 'var/state');
    assert.throws(() => nested.resolve('var/state'), isProtocolError('BAD_PATH', 'state dir'));
    assert.throws(() => nested.resolve('var/state/m'), isProtocolError('BAD_PATH', 'state dir'));
    assert.equal(nested.resolve('var/statex'), path.join(root, 'var/statex'));
  });
});

describe('PathGuard.prepareParents: creating', () => {
  test('creates every missing ancestor, not the path itself', async () => {
    const { root, guard } = await freshRoot();
    await guard.prepareParents('a/b/c/f');
    assert.deepEqual(await listing(root), ['a/', 'a/b/', 'a/b/c/']);
  });

  test('a top-level path needs no parent: nothing is created', async () => {
    const { root, guard } = await freshRoot();
    await guard.prepareParents('f');
    assert.deepEqual(await listing(root), []);
  });

  test('existing directories are kept, missing ones below them created; running twice is fine', async () => {
    const { root, guard } = await freshRoot();
    await mkdir(path.join(root, 'a'));
    await writeFile(path.join(root, 'a', 'keep'), 'x');
    await guard.prepareParents('a/b/f');
    await guard.prepareParents('a/b/f');
    assert.deepEqual(await listing(root), ['a/', 'a/b/', 'a/keep']);
  });

  test('created directories are real directories', async () => {
    const { root, guard } = await freshRoot();
    await guard.prepareParents('d/e/f');
    assert.ok((await lstat(path.join(root, 'd', 'e'))).isDirectory());
  });

  test('concurrent calls for the same parents both succeed', async () => {
    const { root, guard } = await freshRoot();
    await Promise.all([guard.prepareParents('p/q/1'), guard.prepareParents('p/q/2'), guard.prepareParents('p/r/3')]);
    assert.deepEqual(await listing(root), ['p/', 'p/q/', 'p/r/']);
  });
});

describe('PathGuard.prepareParents: refusing', () => {
  interface Case {
    readonly name: string;
    /** Builds the hostile layout under root (and the outside dir); returns nothing. */
    readonly setup: (root: string, outside: string) => Promise<void>;
    readonly rel: string;
    readonly ancestor: string;
  }
  const cases: readonly Case[] = [
    {
      name: 'symlink to a dir inside the root',
      setup: async (root) => {
        await mkdir(path.join(root, 'real'));
        await symlink('real', path.join(root, 'in'));
      },
      rel: 'in/new/f',
      ancestor: 'in',
    },
    {
      name: 'symlink (absolute) to a dir inside the root',
      setup: async (root) => {
        await mkdir(path.join(root, 'real'));
        await symlink(path.join(root, 'real'), path.join(root, 'in'));
      },
      rel: 'in/f',
      ancestor: 'in',
    },
    {
      name: 'symlink to the root itself',
      setup: async (root) => {
        await symlink('.', path.join(root, 'self'));
      },
      rel: 'self/new/f',
      ancestor: 'self',
    },
    {
      name: 'symlink to a dir outside the root',
      setup: async (root, outside) => {
        await symlink(outside, path.join(root, 'out'));
      },
      rel: 'out/new/deeper/f',
      ancestor: 'out',
    },
    {
      name: 'symlink outside the root, deeper in the path',
      setup: async (root, outside) => {
        await mkdir(path.join(root, 'a'));
        await symlink(outside, path.join(root, 'a', 'lnk'));
      },
      rel: 'a/lnk/new/f',
      ancestor: 'a/lnk',
    },
    {
      name: 'dangling symlink to a missing dir outside the root',
      setup: async (root, outside) => {
        await symlink(path.join(outside, 'missing'), path.join(root, 'dl'));
      },
      rel: 'dl/f',
      ancestor: 'dl',
    },
    {
      name: 'regular file',
      setup: async (root) => {
        await writeFile(path.join(root, 'f'), 'data');
      },
      rel: 'f/x',
      ancestor: 'f',
    },
    {
      name: 'regular file, deeper',
      setup: async (root) => {
        await mkdir(path.join(root, 'a'));
        await writeFile(path.join(root, 'a', 'f'), 'data');
      },
      rel: 'a/f/x/y/z',
      ancestor: 'a/f',
    },
  ];
  for (const c of cases) {
    test(`${c.name}: UNSAFE_PATH, nothing created through it or outside the root`, async () => {
      const { root, outside, guard } = await freshRoot();
      await c.setup(root, outside);
      const rootBefore = await listing(root);
      const outsideBefore = await listing(outside);
      await assert.rejects(guard.prepareParents(c.rel), isProtocolError('UNSAFE_PATH', `ancestor ${JSON.stringify(c.ancestor)}`));
      assert.deepEqual(await listing(root), rootBefore, 'root unchanged');
      assert.deepEqual(await listing(outside), outsideBefore, 'outside unchanged');
      assert.deepEqual(await readdir(tmp).then((names) => names.filter((n) => !/^(root|outside)-\d+$/.test(n))), [], 'nothing next to the root');
    });
  }
});
