/**
 * confined/root (real temp dirs): check() refuses every non-canonical path and anything in the
 * state dir; dir(rel, mode) creates missing ancestors and refuses to go through a symlink (to a dir
 * inside or outside the root, or dangling) or a non-directory, creating nothing outside the root,
 * with openat2 and with the component-by-component fallback alike. Then the rest of the layer:
 * the final component is never followed (lstat, open, rename over a symlink), moves never replace,
 * a held directory moved away is noticed (stillAt), the temp sweep does not leave the root.
 */
import assert from 'node:assert/strict';
import { constants, fstatSync, closeSync } from 'node:fs';
import { link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ProtocolError } from '../../../src/errors.js';
import { ConfinedRoot, CreatePlacement, POOL_SPELL_MS, SLOW_CREATE_MS, setCreatesOnPoolForTests, setOpenat2ForTests, usesOpenat2 } from '../../../src/confined/root.js';

let tmp: string;
let counter = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'warmsync-pathguard-'));
});
after(async () => {
  setOpenat2ForTests(true);
  await rm(tmp, { recursive: true, force: true });
});

/** A fresh root and a fresh directory outside it, side by side in the temp dir. */
async function freshRoot(): Promise<{ root: string; outside: string; guard: ConfinedRoot }> {
  const n = counter++;
  const root = path.join(tmp, `root-${n}`);
  const outside = path.join(tmp, `outside-${n}`);
  await mkdir(root);
  await mkdir(outside);
  return { root, outside, guard: ConfinedRoot.open(root, '.warmsync') };
}

/** dir(parent of rel, 0755), as the receiver prepares a path's directory; released at once. */
function prepareParents(guard: ConfinedRoot, rel: string): void {
  guard.check(rel);
  guard.needDir(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel), 0o755).release();
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

describe('ConfinedRoot.check', () => {
  const root = os.tmpdir(); // only opened: check() touches nothing
  const guard = ConfinedRoot.open(root, '.warmsync');

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
      assert.throws(() => guard.check(rel), isProtocolError('BAD_PATH', problem));
    });
  }

  const good: ReadonlyArray<[string, string, ConfinedRoot]> = [
    ['top-level file', 'a', guard],
    ['nested file', 'a/b/c', guard],
    ['name that starts like the state dir', '.warmsyncx', guard],
    ['state dir name below the root', 'x/.warmsync', guard],
    ['.warmsync when the state dir lies outside the root', '.warmsync', ConfinedRoot.open(root, null)],
    ['parent of a nested state dir', 'var', ConfinedRoot.open(root, 'var/state')],
  ];
  for (const [name, rel, g] of good) {
    test(`accepts ${name}: ${JSON.stringify(rel)}`, () => {
      assert.doesNotThrow(() => g.check(rel));
      assert.equal(g.abs(rel), path.join(root, rel));
    });
  }

  test('a nested state dir is refused, and everything below it', () => {
    const nested = ConfinedRoot.open(root, 'var/state');
    assert.throws(() => nested.check('var/state'), isProtocolError('BAD_PATH', 'state dir'));
    assert.throws(() => nested.check('var/state/m'), isProtocolError('BAD_PATH', 'state dir'));
    assert.doesNotThrow(() => nested.check('var/statex'));
  });

  test('abs: what path.join gives, for a root given with a trailing slash, as "." or "/", or through ".."', () => {
    const forms = [root, `${root}/`, `${root}//`, `${root}/../${path.basename(root)}`, '.', '/', path.relative(process.cwd(), root)];
    for (const form of forms) {
      const g = ConfinedRoot.open(form, null);
      try {
        for (const rel of ['a', 'a/b c/é', '.hidden/..x']) assert.equal(g.abs(rel), path.join(form, rel), `${form} + ${rel}`);
        assert.equal(g.abs(''), form);
      } finally {
        g.close();
      }
    }
  });
});

describe('ConfinedRoot.dir(rel, mode): creating', () => {
  test('creates every missing ancestor, not the path itself', async () => {
    const { root, guard } = await freshRoot();
    prepareParents(guard, 'a/b/c/f');
    assert.deepEqual(await listing(root), ['a/', 'a/b/', 'a/b/c/']);
  });

  test('a top-level path needs no parent: nothing is created', async () => {
    const { root, guard } = await freshRoot();
    prepareParents(guard, 'f');
    assert.deepEqual(await listing(root), []);
  });

  test('existing directories are kept, missing ones below them created; running twice is fine', async () => {
    const { root, guard } = await freshRoot();
    await mkdir(path.join(root, 'a'));
    await writeFile(path.join(root, 'a', 'keep'), 'x');
    prepareParents(guard, 'a/b/f');
    prepareParents(guard, 'a/b/f');
    assert.deepEqual(await listing(root), ['a/', 'a/b/', 'a/keep']);
  });

  test('created directories are real directories', async () => {
    const { root, guard } = await freshRoot();
    prepareParents(guard, 'd/e/f');
    assert.ok((await lstat(path.join(root, 'd', 'e'))).isDirectory());
  });

  test('calls for the same parents one after another all succeed', async () => {
    const { root, guard } = await freshRoot();
    for (const rel of ['p/q/1', 'p/q/2', 'p/r/3']) prepareParents(guard, rel);
    assert.deepEqual(await listing(root), ['p/', 'p/q/', 'p/r/']);
  });
});

for (const resolver of ['openat2', 'fallback'] as const) describe(`ConfinedRoot.dir(rel, mode): refusing (${resolver})`, () => {
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
      setOpenat2ForTests(resolver === 'openat2');
      try {
        assert.throws(() => prepareParents(guard, c.rel), isProtocolError('UNSAFE_PATH', JSON.stringify(path.posix.dirname(c.rel))));
        assert.equal(usesOpenat2(), resolver === 'openat2');
      } finally {
        setOpenat2ForTests(true);
      }
      assert.deepEqual(await listing(root), rootBefore, 'root unchanged');
      assert.deepEqual(await listing(outside), outsideBefore, 'outside unchanged');
      assert.deepEqual(await readdir(tmp).then((names) => names.filter((n) => !/^(root|outside)-\d+$/.test(n))), [], 'nothing next to the root');
    });
  }
});

describe('the final component is never followed', () => {
  test('lstat reports a symlink as a symlink; openFile refuses it (UNSAFE_PATH), with either resolver', async () => {
    const { root, outside, guard } = await freshRoot();
    await writeFile(path.join(outside, 'secret'), 'secret');
    await symlink(path.join(outside, 'secret'), path.join(root, 'link'));
    assert.equal(guard.lstat('link')?.kind, 'symlink');
    for (const on of [true, false]) {
      setOpenat2ForTests(on);
      try {
        assert.throws(() => guard.openFile('link', constants.O_RDONLY), isProtocolError('UNSAFE_PATH'));
      } finally {
        setOpenat2ForTests(true);
      }
    }
  });

  test('openBeneath codes: ELOOP for a symlink at any component, EXDEV for an absolute path or ".." (fallback)', async () => {
    const { root, outside, guard } = await freshRoot();
    await mkdir(path.join(root, 'a', 'b'), { recursive: true });
    await symlink(outside, path.join(root, 'a', 'b', 'c'));
    await symlink('b', path.join(root, 'a', 'lb'));
    const top = guard.needDir('');
    try {
      for (const on of [true, false]) {
        setOpenat2ForTests(on);
        try {
          for (const rel of ['a/b/c', 'a/b/c/x', 'a/lb/c', 'a/lb']) {
            assert.throws(() => top.open(rel, constants.O_RDONLY), { code: 'ELOOP' }, `${rel} (openat2 ${on})`);
          }
          assert.throws(() => top.open('/etc/passwd', constants.O_RDONLY), { code: 'EXDEV' });
          assert.throws(() => top.open('../outside-x', constants.O_RDONLY), { code: 'EXDEV' });
          const fd = top.open('a/b', constants.O_RDONLY | constants.O_DIRECTORY);
          assert.ok(fstatSync(fd).isDirectory());
          closeSync(fd);
        } finally {
          setOpenat2ForTests(true);
        }
      }
    } finally {
      top.release();
    }
  });

  test('one-name calls refuse a path: "a/b", "..", "." and "" are EINVAL', async () => {
    const { guard } = await freshRoot();
    const top = guard.needDir('');
    try {
      for (const name of ['a/b', '..', '.', '']) assert.throws(() => top.mkdir(name, 0o755), { code: 'EINVAL' }, name);
    } finally {
      top.release();
    }
  });

  test('rename over a symlink replaces the link, the file it pointed to is untouched', async () => {
    const { root, outside, guard } = await freshRoot();
    await writeFile(path.join(outside, 'victim'), 'victim');
    await symlink(path.join(outside, 'victim'), path.join(root, 'f'));
    await writeFile(path.join(root, 'new'), 'new');
    const top = guard.needDir('');
    try {
      top.rename('new', top, 'f');
    } finally {
      top.release();
    }
    assert.equal(await readFile(path.join(root, 'f'), 'utf8'), 'new');
    assert.equal(await readFile(path.join(outside, 'victim'), 'utf8'), 'victim');
  });

  test('move never replaces what is at the destination (EEXIST)', async () => {
    const { root, guard } = await freshRoot();
    await writeFile(path.join(root, 'a'), 'a');
    await writeFile(path.join(root, 'b'), 'b');
    assert.throws(() => guard.move('a', guard, 'b'), { code: 'EEXIST' });
    assert.equal(await readFile(path.join(root, 'b'), 'utf8'), 'b');
  });

  test('a hard link shows nlink 2 on lstat', async () => {
    const { root, outside, guard } = await freshRoot();
    await writeFile(path.join(outside, 'inode'), 'x');
    await link(path.join(outside, 'inode'), path.join(root, 'hl'));
    assert.equal(guard.lstat('hl')?.nlink, 2);
  });
});

describe('held directories', () => {
  test('stillAt: false once the directory was renamed away or swapped for a symlink; a new dir() resolves afresh', async () => {
    const { root, outside, guard } = await freshRoot();
    await mkdir(path.join(root, 'd'));
    const held = guard.needDir('d');
    assert.equal(guard.stillAt(held), true);
    const again = guard.needDir('d');
    assert.equal(again, held, 'shared while in use');
    again.release();
    await rename(path.join(root, 'd'), path.join(root, 'd.moved'));
    await symlink(outside, path.join(root, 'd'));
    assert.equal(guard.stillAt(held), false);
    assert.equal(held.stale, true);
    assert.throws(() => guard.needDir('d'), isProtocolError('UNSAFE_PATH'));
    held.release();
  });

  test('sweep removes temp names below the root, skips the state dir, never enters a symlink', async () => {
    const { root, outside, guard } = await freshRoot();
    await mkdir(path.join(root, 'a', 'b'), { recursive: true });
    await mkdir(path.join(root, '.warmsync'));
    for (const p of ['.warmsync-tmp.1', 'a/.warmsync-tmp.2', 'a/b/.warmsync-tmp.3', '.warmsync/.warmsync-tmp.4', 'a/keep']) await writeFile(path.join(root, p), 'x');
    await writeFile(path.join(outside, '.warmsync-tmp.5'), 'x');
    await symlink(outside, path.join(root, 'a', 'out'));
    assert.equal(guard.sweep((n) => n.startsWith('.warmsync-tmp.'), '.warmsync'), 3);
    assert.deepEqual(await listing(root), ['.warmsync/', '.warmsync/.warmsync-tmp.4', 'a/', 'a/b/', 'a/keep', 'a/out@']);
    assert.deepEqual(await listing(outside), ['.warmsync-tmp.5']);
    assert.equal(await readlink(path.join(root, 'a', 'out')), outside);
  });
});

describe('file creates: on the caller\'s thread while fast, on the pool while slow', () => {
  test('CreatePlacement: inline while the mean of recent creates stays under SLOW_CREATE_MS; a slow spell sends the next POOL_SPELL_MS to the pool; one create then decides afresh', () => {
    const placement = new CreatePlacement();
    assert.equal(placement.inline(0), true);
    let now = 0;
    for (let i = 0; i < 1000; i++) placement.took(0.008, (now += 0.01));
    // ext4 with a journal: now and then one create waits for a journal commit.
    placement.took(2, (now += 2));
    placement.took(0.008, (now += 0.01));
    assert.equal(placement.inline(now), true, 'a lone slow create keeps creates on the thread');
    // NFS, or a journal-less ext4 after mass deletions: every create takes ~0.8 ms.
    let slow = 0;
    while (placement.inline(now) && slow < 100) {
      placement.took(0.8, (now += 0.8));
      slow++;
    }
    assert.ok(slow > 1 && slow < 16, `${slow} slow creates in a row before the pool takes over`);
    assert.equal(placement.inline(now + POOL_SPELL_MS - 1), false);
    now += POOL_SPELL_MS;
    assert.equal(placement.inline(now), true, 'after the spell, one create is timed on the thread');
    placement.took(0.8, (now += 0.8));
    assert.equal(placement.inline(now), false, 'still slow: another spell at once');
    now += POOL_SPELL_MS;
    placement.took(0.008, (now += 0.01));
    assert.equal(placement.inline(now), true, 'fast again: back on the thread, the old mean forgotten');
    placement.took(SLOW_CREATE_MS, (now += SLOW_CREATE_MS));
    assert.equal(placement.inline(now), true);
  });

  for (const onPool of [false, true]) {
    test(`createFile ${onPool ? 'on the pool' : 'on the thread'}: a new file with the mode asked; what is there (a file, a symlink to outside) is never opened, the promise rejects with EEXIST`, async () => {
      const { root, outside, guard } = await freshRoot();
      setCreatesOnPoolForTests(onPool);
      try {
        const dir = guard.needDir('');
        try {
          const fd = await dir.createFile('new.tmp', 0o600);
          assert.equal(fstatSync(fd).mode & 0o777, 0o600);
          closeSync(fd);
          // createFileNow: the descriptor at once on the thread; null (nothing created) when creates go to the pool.
          const now = dir.createFileNow('now.tmp', 0o600);
          if (onPool) {
            assert.equal(now, null);
            await assert.rejects(lstat(path.join(root, 'now.tmp')), { code: 'ENOENT' });
          } else {
            assert.equal(typeof now, 'number');
            closeSync(now as number);
            assert.throws(() => dir.createFileNow('now.tmp', 0o600), { code: 'EEXIST' });
          }
          await writeFile(path.join(outside, 'target'), 'outside\n');
          await symlink(path.join(outside, 'target'), path.join(root, 'link.tmp'));
          for (const name of ['new.tmp', 'link.tmp']) {
            const created = dir.createFile(name, 0o600);
            assert.ok(created instanceof Promise, 'errors come as a rejected promise, not a throw');
            await assert.rejects(created, { code: 'EEXIST' });
          }
          assert.equal(await readFile(path.join(outside, 'target'), 'utf8'), 'outside\n');
        } finally {
          dir.release();
        }
      } finally {
        setCreatesOnPoolForTests(false);
        guard.close();
      }
    });
  }
});
