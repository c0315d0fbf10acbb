import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Owner } from '../../../src/entry.js';
import { IdNames, ownerOf, sharedOwner } from '../../../src/owner/names.js';

test('equal owners come back as one object, each with exactly its own fields, frozen', () => {
  const a = sharedOwner({ uid: 1000, gid: 1000, user: 'artifactory', group: 'artifactory' });
  const b = sharedOwner(JSON.parse('{"uid":1000,"gid":1000,"user":"artifactory","group":"artifactory"}') as Owner);
  assert.equal(a, b);
  assert.deepEqual(a, { uid: 1000, gid: 1000, user: 'artifactory', group: 'artifactory' });
  assert.ok(Object.isFrozen(a));
  assert.equal(sharedOwner(null), null);
  assert.equal(sharedOwner(undefined), null);
});

test('owners that differ in any field, however their names are spelt, stay apart', () => {
  const variants: Owner[] = [
    { uid: 0, gid: 0, user: 'a', group: 'b:1:c' },
    { uid: 0, gid: 0, user: 'a:1:b', group: 'c' },
    { uid: 0, gid: 0, user: null, group: 'c' },
    { uid: 0, gid: 0, user: 'null', group: 'c' },
    { uid: 0, gid: 1, user: null, group: 'c' },
    { uid: 1, gid: 0, user: null, group: 'c' },
    { uid: 1, gid: 0, user: null, group: null },
  ];
  const shared = variants.map((o) => sharedOwner({ ...o }));
  assert.equal(new Set(shared).size, variants.length);
  shared.forEach((o, i) => assert.deepEqual(o, variants[i]));
});

test('past the number of owners kept, each still comes back with its own fields', () => {
  for (let uid = 0; uid < 5000; uid++) assert.deepEqual(sharedOwner({ uid, gid: 7, user: `u${uid}`, group: null }), { uid, gid: 7, user: `u${uid}`, group: null });
});

test('ownerOf gives one object per ids and names, and a new one once a name changes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warmsync-names-'));
  try {
    const passwd = join(dir, 'passwd');
    const group = join(dir, 'group');
    await writeFile(passwd, 'builder:x:4242:4242::/home/builder:/bin/sh\n');
    await writeFile(group, 'builders:x:4242:\n');
    const names = new IdNames(passwd, group);
    const first = ownerOf(4242, 4242, names);
    assert.deepEqual(first, { uid: 4242, gid: 4242, user: 'builder', group: 'builders' });
    assert.equal(ownerOf(4242, 4242, names), first);
    assert.deepEqual(ownerOf(4242, 4243, names), { uid: 4242, gid: 4243, user: 'builder', group: null });
    await writeFile(passwd, 'renamed-builder:x:4242:4242::/home/builder:/bin/sh\n');
    await new Promise((resolve) => setTimeout(resolve, 1100)); // the files are checked at most once a second
    assert.deepEqual(ownerOf(4242, 4242, names), { uid: 4242, gid: 4242, user: 'renamed-builder', group: 'builders' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
