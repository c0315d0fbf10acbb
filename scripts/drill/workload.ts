/**
 * The drill's Artifactory-like workload, a child process the drill SIGKILLs at a random moment.
 *   upload: write the binary under data/filestore/_pre/, rename it to data/filestore/xx/SHA1, then
 *           commit its row (INSERT INTO binaries) in one transaction;
 *   GC:     in one transaction DELETE some rows, remove their files, wait a little (the transaction
 *           is still open), then COMMIT.
 * Mixed sizes (benchmarks/corpus.ts: lognormal, median 20 KiB, up to 4 MiB) at a steady rate; some uploads bring back content a GC collected earlier. Every
 * transaction also inserts its id into txlog, and once COMMIT has returned the workload appends
 * "ID KIND COMMIT_MS" to its log: the committed history the drill compares the promoted DB with.
 *
 * Usage: node --import tsx scripts/drill/workload.ts URL ROOT SEED LOG
 */
import { createHash } from 'node:crypto';
import { mkdirSync, openSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Rng, binarySize, content } from '../../benchmarks/corpus.js';

const [url, root, seedText, logPath] = process.argv.slice(2);
if (url === undefined || root === undefined || seedText === undefined || logPath === undefined) {
  process.stderr.write('usage: workload.ts URL ROOT SEED LOG\n');
  process.exit(2);
}
const rng = new Rng(`drill-workload-${seedText}`);
const random = (): number => rng.next();
const filestore = join(root, 'data/filestore');
const pre = join(filestore, '_pre');
mkdirSync(pre, { recursive: true });
const log = openSync(logPath, 'a');

/** Content is a pure function of (seed, key, size): a collected binary comes back byte for byte. */
const bytesOf = (key: number, size: number): Buffer => content(seedText, String(key), size);

interface Blob { key: number; size: number; sha1: string }
const live: Blob[] = [];
const collected: Blob[] = [];
let nextKey = 1;
let nextTx = 1;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pathOf = (sha1: string): string => join(filestore, sha1.slice(0, 2), sha1);

const client = new pg.Client({ connectionString: url });
await client.connect();

async function upload(): Promise<void> {
  const again = collected.length > 0 && random() < 0.2;
  const blob: Blob = again
    ? (collected.splice(Math.floor(random() * collected.length), 1)[0] as Blob)
    : (() => {
        const key = nextKey++;
        const size = binarySize(rng);
        return { key, size, sha1: createHash('sha1').update(bytesOf(key, size)).digest('hex') };
      })();
  const bytes = bytesOf(blob.key, blob.size);
  const temp = join(pre, `${blob.sha1}.${nextTx}.tmp`);
  writeFileSync(temp, bytes);
  mkdirSync(join(filestore, blob.sha1.slice(0, 2)), { recursive: true });
  renameSync(temp, pathOf(blob.sha1));
  const id = nextTx++;
  await client.query('BEGIN');
  await client.query('INSERT INTO binaries (sha1, size) VALUES ($1, $2)', [blob.sha1, blob.size]);
  await client.query("INSERT INTO txlog (id, kind) VALUES ($1, 'upload')", [id]);
  await client.query('COMMIT');
  writeSync(log, `${id} upload ${Date.now()}\n`);
  live.push(blob);
}

async function gc(): Promise<void> {
  const n = Math.min(live.length, 1 + Math.floor(random() * 4));
  const victims = Array.from({ length: n }, () => live.splice(Math.floor(random() * live.length), 1)[0] as Blob);
  const id = nextTx++;
  await client.query('BEGIN');
  await client.query('DELETE FROM binaries WHERE sha1 = ANY($1)', [victims.map((v) => v.sha1)]);
  await client.query("INSERT INTO txlog (id, kind) VALUES ($1, 'gc')", [id]);
  for (const v of victims) unlinkSync(pathOf(v.sha1));
  await sleep(Math.floor(random() * 150)); // the transaction outlives the deletions
  await client.query('COMMIT');
  writeSync(log, `${id} gc ${Date.now()}\n`);
  collected.push(...victims);
}

// Runs until the drill kills it.
for (;;) {
  if (live.length > 20 && random() < 0.15) await gc();
  else await upload();
  await sleep(10 + Math.floor(random() * 40));
}
