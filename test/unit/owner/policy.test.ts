// src/owner/names.ts and src/owner/policy.ts: passwd/group parsing and rsync's owner mapping
// (by name with a numeric fallback, 0 never mapped, --numeric-ids, --chown, no privilege).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { IdNames, parseIdFile } from '../../../src/owner/names.js';
import { parseChown, policyFromText, policyToText, targetIds, type OwnerPolicy } from '../../../src/owner/policy.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warmsync-owner-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.writeFileSync(path.join(dir, 'passwd'), 'root:x:0:0::/root:/bin/sh\nartifactory:x:1030:1030::/opt:/bin/sh\ndup:x:1030:1:::\n+nis::::\nbroken line\nbig:x:4294967295:1:::\n');
fs.writeFileSync(path.join(dir, 'group'), 'root:x:0:\nartifactory:x:1031:\nwheel:x:10:a,b\n');
const names = new IdNames(path.join(dir, 'passwd'), path.join(dir, 'group'));

describe('parseIdFile', () => {
  test('the first line wins for an id and for a name; NIS, malformed and out-of-range lines are ignored', () => {
    const t = parseIdFile(fs.readFileSync(path.join(dir, 'passwd'), 'utf8'));
    assert.deepEqual([...t.nameOf], [[0, 'root'], [1030, 'artifactory']]);
    assert.deepEqual([...t.idOf], [['root', 0], ['artifactory', 1030], ['dup', 1030]]);
  });
});

describe('targetIds', () => {
  const root: OwnerPolicy = { canChown: true, numericIds: false, forceUid: null, forceGid: null };
  const cases: ReadonlyArray<{ name: string; policy: OwnerPolicy; owner: Parameters<typeof targetIds>[1]; want: { uid: number; gid: number } | null }> = [
    { name: 'by name: the standby id of the source name', policy: root, owner: { uid: 999, gid: 998, user: 'artifactory', group: 'artifactory' }, want: { uid: 1030, gid: 1031 } },
    { name: 'a name the standby lacks: the source number', policy: root, owner: { uid: 999, gid: 998, user: 'ghost', group: 'spooks' }, want: { uid: 999, gid: 998 } },
    { name: 'no name on the source: the number', policy: root, owner: { uid: 1234, gid: 4321, user: null, group: null }, want: { uid: 1234, gid: 4321 } },
    { name: 'ids 0 are never mapped by name', policy: root, owner: { uid: 0, gid: 0, user: 'artifactory', group: 'wheel' }, want: { uid: 0, gid: 0 } },
    { name: '--numeric-ids: numbers only', policy: { ...root, numericIds: true }, owner: { uid: 999, gid: 998, user: 'artifactory', group: 'artifactory' }, want: { uid: 999, gid: 998 } },
    { name: '--chown USER:GROUP', policy: { ...root, forceUid: 1030, forceGid: 10 }, owner: { uid: 5, gid: 6, user: null, group: null }, want: { uid: 1030, gid: 10 } },
    { name: '--chown USER: keeps the mapped group', policy: { ...root, forceUid: 1030 }, owner: { uid: 5, gid: 998, user: null, group: 'artifactory' }, want: { uid: 1030, gid: 1031 } },
    { name: '--chown applies to an unknown owner too', policy: { ...root, forceGid: 10 }, owner: null, want: { uid: -1, gid: 10 } },
    { name: 'an unknown owner is left alone', policy: root, owner: undefined, want: null },
    { name: 'no privilege: never chown', policy: { ...root, canChown: false, forceUid: 1 }, owner: { uid: 5, gid: 6, user: null, group: null }, want: null },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(targetIds(c.policy, c.owner, names), c.want));
});

describe('parseChown', () => {
  test('names or numbers, either part optional, like rsync --chown', () => {
    assert.deepEqual(parseChown('artifactory:wheel', names), { uid: 1030, gid: 10 });
    assert.deepEqual(parseChown('artifactory', names), { uid: 1030, gid: null });
    assert.deepEqual(parseChown('artifactory:', names), { uid: 1030, gid: null });
    assert.deepEqual(parseChown(':1031', names), { uid: null, gid: 1031 });
    assert.deepEqual(parseChown('77:88', names), { uid: 77, gid: 88 });
  });
  test('an unknown name or an empty spec is BAD_FLAG', () => {
    assert.throws(() => parseChown('ghost:wheel', names), { code: 'BAD_FLAG', message: /no user named "ghost" in \/etc\/passwd/ });
    assert.throws(() => parseChown('root:spooks', names), { code: 'BAD_FLAG', message: /no group named "spooks"/ });
    assert.throws(() => parseChown(':', names), { code: 'BAD_FLAG' });
  });
});

test('the policy round-trips through the manifest text; anything else reads as none', () => {
  const p: OwnerPolicy = { canChown: true, numericIds: true, forceUid: 3, forceGid: null };
  assert.deepEqual(policyFromText(policyToText(p)), p);
  assert.equal(policyFromText(null), null);
  assert.equal(policyFromText('{'), null);
  assert.equal(policyFromText('{"canChown":true}'), null);
});
