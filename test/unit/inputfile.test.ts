/**
 * Start-up input files (issue 17, item 11): a FIFO as --token-file hung start-up with no message, and
 * a 29 MB config file took 2.1 GB before BAD_CONFIG. readInputFile refuses anything but a regular
 * file at once (O_NONBLOCK, then fstat on the descriptor) and a file past its limit before reading
 * it; each caller turns that into its own exit-2 code naming the file.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MAX_TOKEN_FILE_BYTES, readToken } from '../../src/cli/args.js';
import { loadExcludeFiles, MAX_EXCLUDE_FILE_BYTES } from '../../src/config/excludes.js';
import { MAX_CONFIG_BYTES, readConfigFile } from '../../src/config/file.js';
import { UsageError } from '../../src/errors.js';
import { InputFileProblem, readInputFile } from '../../src/inputfile.js';
import { createLoggerWith } from '../../src/log.js';

const dir = mkdtempSync(join(tmpdir(), 'warmsync-inputfile-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = createLoggerWith({ level: 'silent' });

function fifo(name: string): string {
  const path = join(dir, name);
  execFileSync('mkfifo', ['-m', '600', path]);
  return path;
}

/** A sparse file of `bytes`: its size is what counts, not its blocks. */
function sized(name: string, bytes: number): string {
  const path = join(dir, name);
  writeFileSync(path, '');
  truncateSync(path, bytes);
  return path;
}

function usage(code: string, pattern: RegExp) {
  return (err: unknown) => err instanceof UsageError && err.code === code && pattern.test(err.message);
}

test('readInputFile: a regular file is read whole; up to the limit exactly', () => {
  const path = join(dir, 'ok.txt');
  writeFileSync(path, 'hello\n');
  assert.equal(readInputFile(path, 6).toString(), 'hello\n');
  assert.throws(() => readInputFile(path, 5), (err: unknown) => err instanceof InputFileProblem && /larger than 5 bytes/.test(err.message));
});

test('readInputFile: a FIFO, a directory and a device are refused at once, never read', () => {
  // Without O_NONBLOCK the open of a FIFO with no writer never returns: this test would hang.
  assert.throws(() => readInputFile(fifo('pipe'), 1024), { name: 'InputFileProblem', message: 'it is a FIFO (named pipe), not a regular file' });
  assert.throws(() => readInputFile(dir, 1024), { message: 'it is a directory, not a regular file' });
  assert.throws(() => readInputFile('/dev/zero', 1024), { message: 'it is a character device, not a regular file' });
  assert.throws(() => readInputFile(join(dir, 'missing'), 1024), { message: 'ENOENT' });
});

test('--token-file: a FIFO is TOKEN_FILE at once; so is a file past 64 KiB', () => {
  assert.throws(() => readToken('agent', fifo('token-pipe'), log), usage('TOKEN_FILE', /^agent: cannot read --token-file \S+token-pipe: it is a FIFO \(named pipe\), not a regular file$/));
  assert.throws(() => readToken('agent', sized('token-big', MAX_TOKEN_FILE_BYTES + 1), log), usage('TOKEN_FILE', /token-big: it is larger than 64 KiB, the limit for this file$/));
});

test('--config: a FIFO is BAD_CONFIG at once; a file past 1 MiB is BAD_CONFIG before it is read', () => {
  assert.throws(() => readConfigFile(fifo('config.yaml')), usage('BAD_CONFIG', /^--config \S+config\.yaml: cannot read it: it is a FIFO \(named pipe\), not a regular file$/));
  // 29 MB, as in the issue: refused by its size (a sparse file: nothing is allocated, nothing read).
  const before = process.memoryUsage().rss;
  assert.throws(() => readConfigFile(sized('huge.yaml', 29_000_000)), usage('BAD_CONFIG', /huge\.yaml: cannot read it: it is larger than 1 MiB, the limit for this file$/));
  assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'the huge config was not read');
  assert.throws(() => readConfigFile(sized('big.json', MAX_CONFIG_BYTES + 1)), usage('BAD_CONFIG', /larger than 1 MiB/));
  const edge = sized('edge.json', MAX_CONFIG_BYTES);
  writeFileSync(edge, '{}'.padEnd(MAX_CONFIG_BYTES, ' '));
  assert.deepEqual(readConfigFile(edge), {});
});

test('--exclude-from: a FIFO is EXCLUDE_FILE at once; a file past 4 MiB is EXCLUDE_FILE', async () => {
  await assert.rejects(loadExcludeFiles([fifo('excludes-pipe')]), usage('EXCLUDE_FILE', /^cannot read excludes file \S+excludes-pipe: it is a FIFO \(named pipe\), not a regular file$/));
  await assert.rejects(loadExcludeFiles([sized('excludes-big', MAX_EXCLUDE_FILE_BYTES + 1)]), usage('EXCLUDE_FILE', /larger than 4 MiB/));
});
