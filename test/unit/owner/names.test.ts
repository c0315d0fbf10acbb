import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Owner } from '../../../src/entry.js';
import { sharedOwner } from '../../../src/owner/names.js';

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
