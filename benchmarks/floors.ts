/**
 * Floors that write no standby: what a scenario's job cannot go below on this machine, measured in
 * the same rounds as warmsync and the competitors (scenarios.ts reports them apart, as bounds).
 *
 * - the walk floor: GNU find walking the source the way a resync must at least (every entry
 *   lstat'ed, the excluded directories pruned, nothing printed), in C, one process;
 * - Node's start-up: `node -e 0`, and node running an ES module that imports only node:fs (the
 *   module loader path bin/warmsync.js also takes), with the node that runs warmsync's agent.
 *
 * - the loopback stream floor: the single large file through a local TCP socket into an fsynced
 *   file, with sendfile on the sending side (STREAM_COPY_PY).
 *
 * The durable-copy floor (`cp -a` + `sync`) writes a standby like a competitor: competitors.ts.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { timed, type ToolConfig } from './competitors.js';
import type { RunRecord, Side, Standby } from './side.js';

/** A floor's `open`: nothing to serve, and `dir` stays empty (the runner's check is skipped for it). */
function probeSide(name: string, run: (src: string, dir: string) => Promise<RunRecord>, prepare: (dir: string) => Promise<void> = async () => undefined): Side {
  return {
    name,
    writesNoStandby: true,
    async open(dir): Promise<Standby> {
      await prepare(dir);
      return { dir, sync: (src) => run(src, dir), close: async () => undefined };
    },
  };
}

/**
 * The `find` predicate that prunes what an rsync excludes file names. Only anchored directory
 * patterns (`/logs/`, `/data/tmp/`), the only kind the corpus's EXCLUDES uses; anything else throws
 * rather than walk a different tree than warmsync and rsync do.
 */
export function pruneArgs(excludes: string, src: string): string[] {
  const paths: string[] = [];
  for (const raw of excludes.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^\/([^*?[\]]+)\/$/.exec(line);
    if (m === null) throw new Error(`walk floor: only anchored directory patterns like /logs/ can be pruned, not ${JSON.stringify(line)}`);
    paths.push(`${src}/${m[1] as string}`);
  }
  if (paths.length === 0) return [];
  const alternatives = paths.flatMap((p, i) => (i === 0 ? ['-path', p] : ['-o', '-path', p]));
  return ['(', '-type', 'd', '(', ...alternatives, ')', ')', '-prune', '-o'];
}

/**
 * `find SRC <prune excluded dirs> -o -size -0c -print`: GNU find must lstat every entry to test its
 * size, as warmsync's walk (readdir + lstat per entry, excluded dirs pruned) and rsync's sender do;
 * no size is below 0, so it prints nothing (formatting each entry with -printf cost 0.1 s of user
 * CPU more per 100,000 files). The source side only: a no-op need not stat the standby when the
 * receiver trusts its manifest, so this is the least any resync does.
 */
export function walkFloor(cfg: ToolConfig): Side {
  return probeSide('walk floor (find, lstat)', async (src) => {
    const prune = pruneArgs(await readFile(cfg.excludesFile, 'utf8'), src);
    return timed('find', [src, ...prune, '-size', '-0c', '-print'], cfg);
  });
}

/** `node -e 0`: the node binary that runs warmsync's agent, starting and exiting. */
export function nodeStartFloor(cfg: ToolConfig): Side {
  return probeSide('node -e 0', () => timed(process.execPath, ['-e', '0'], cfg));
}

const IMPORT_FS = 'import-node-fs.mjs';

/** node running an ES module file that imports node:fs and nothing else (written into the floor's dir). */
export function nodeImportFsFloor(cfg: ToolConfig): Side {
  return probeSide('node: import node:fs', (_src, dir) => timed(process.execPath, [join(dir, IMPORT_FS)], cfg),
    async (dir) => {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, IMPORT_FS), "import 'node:fs';\n");
    });
}

const STREAM_COPY = 'stream-copy.py';
/**
 * One file through a loopback TCP socket into a durable file, with the least copying Linux offers:
 * a forked sender `sendfile`s it (page cache to socket, no copy through user space) and the
 * receiver `recv_into`s one reused 1 MiB buffer, writes it out, and fsyncs once at the end. Python,
 * but with 1 MiB per call its own overhead is a few thousand calls: the time is the kernel's.
 */
const STREAM_COPY_PY = `import os, socket, sys
src, dst = sys.argv[1], sys.argv[2]
files = [os.path.join(d, n) for d, _, ns in os.walk(src) for n in ns]
if len(files) != 1:
    sys.exit('stream floor: expected one file under %s, found %d' % (src, len(files)))
listener = socket.socket()
listener.bind(('127.0.0.1', 0))
listener.listen(1)
address = listener.getsockname()
pid = os.fork()
if pid == 0:
    listener.close()
    out = socket.create_connection(address)
    with open(files[0], 'rb') as f:
        out.sendfile(f)
    out.close()
    os._exit(0)
conn, _ = listener.accept()
buf = bytearray(1 << 20)
view = memoryview(buf)
fd = os.open(os.path.join(dst, os.path.basename(files[0])), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
while True:
    n = conn.recv_into(buf)
    if n == 0:
        break
    done = 0
    while done < n:
        done += os.write(fd, view[done:n])
os.fsync(fd)
os.close(fd)
_, status = os.waitpid(pid, 0)
sys.exit(0 if status == 0 else 1)
`;

/** The single large file sent through a loopback socket and fsynced (STREAM_COPY_PY), or null without python3. */
export function streamCopyFloor(cfg: ToolConfig, python: string | null): Side | null {
  if (python === null) return null;
  return probeSide('loopback stream + fsync (sendfile)', (src, dir) => timed(python, [join(dir, STREAM_COPY), src, dir], cfg),
    async (dir) => {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, STREAM_COPY), STREAM_COPY_PY);
    });
}
