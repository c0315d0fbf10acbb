// docs/cli.md is the --help of every command of the built bin/warmsync, as `npm run docs:cli`
// writes it: this fails when a help text changed and the reference was not regenerated.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CLI_DOC, commandNames, renderCliDoc } from '../../scripts/docs-cli.js';

test('docs/cli.md matches the current --help texts (regenerate: npm run docs:cli)', { timeout: 60_000 }, () => {
  const current = renderCliDoc();
  assert.ok(current.includes('## warmsync agent\n') && current.includes('## warmsync receiver\n'), 'the command list was read from warmsync --help');
  assert.equal(readFileSync(CLI_DOC, 'utf8'), current, 'docs/cli.md is stale: run npm run docs:cli');
});

test('the command list is read from the Commands: section', () => {
  assert.deepEqual(commandNames('Usage: x\n\nCommands:\n  receiver   on the standby\n  agent      on the active\n\nRun `x COMMAND --help`.'), ['receiver', 'agent']);
});
