/**
 * gate/pg: URLs are checked up front (postgres:// or postgresql:// only, exit-2 errors that never
 * echo an unparseable value), passwords never reach a log line, and PostgreSQL / socket errors map
 * to the codes docs/errors.md lists.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../../../src/errors.js';
import { checkPostgresUrl, classifyPgError, redactUrl } from '../../../src/gate/pg.js';

describe('checkPostgresUrl', () => {
  for (const ok of ['postgres://u@127.0.0.1:5432/db', 'postgresql://u:p@h/db', 'postgres://h']) {
    test(`accepts ${ok}`, () => assert.doesNotThrow(() => checkPostgresUrl('snapshot-source', ok)));
  }
  const bad: Array<[string, RegExp]> = [
    ['http://h:5432/db', /^--snapshot-source: http:\/\/h:5432\/db is not a postgres:\/\/ or postgresql:\/\/ URL$/],
    ['mysql://u:secret@h/db', /^--snapshot-source: mysql:\/\/u:\*\*\*@h\/db is not/],
    ['user=postgres host=h secret', /^--snapshot-source: the value is not a URL/],
  ];
  for (const [url, message] of bad) {
    test(`refuses ${url}`, () => assert.throws(() => checkPostgresUrl('snapshot-source', url), (err) => err instanceof UsageError && err.code === 'BAD_PG_URL' && message.test(err.message)));
  }
});

describe('redactUrl', () => {
  const cases: Array<[string, string]> = [
    ['postgres://u:secret@h:5432/db', 'postgres://u:***@h:5432/db'],
    ['postgres://u@h/db', 'postgres://u@h/db'],
    ['not a url secret', '(unparseable URL)'],
  ];
  for (const [url, want] of cases) test(url, () => assert.equal(redactUrl(url), want));
});

describe('classifyPgError', () => {
  const err = (code: string, message: string): Error => Object.assign(new Error(message), { code });
  const cases: Array<[string, unknown, string]> = [
    ['wrong password', err('28P01', 'password authentication failed for user "u"'), 'PG_AUTH'],
    ['no pg_hba entry', err('28000', 'no pg_hba.conf entry'), 'PG_AUTH'],
    ['refused', err('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'), 'PG_CONNECT'],
    ['unknown host', err('ENOTFOUND', 'getaddrinfo ENOTFOUND nohost'), 'PG_CONNECT'],
    ['starting up', err('57P03', 'the database system is starting up'), 'PG_CONNECT'],
    ['no such database', err('3D000', 'database "x" does not exist'), 'PG_CONNECT'],
    ['connect timeout', new Error('Connection terminated due to connection timeout'), 'PG_TIMEOUT'],
    ['query timeout', new Error('Query read timeout'), 'PG_TIMEOUT'],
    ['bad SQL', err('42P01', 'relation "binaries" does not exist'), 'PG_QUERY'],
  ];
  for (const [name, e, code] of cases) {
    test(name, () => {
      const got = classifyPgError(e, 'where');
      assert.equal(got.code, code);
      assert.match(got.problem, /^where: /);
    });
  }
});
