/**
 * A link used well at distance (issue 21), and --bwlimit:
 *
 *   wan  the initial sync of the corpus through the test suite's loopback proxy (test/helpers/proxy.ts)
 *        playing a 100 Mbit/s link with a 50 ms round trip (25 ms each way), fresh standby per run:
 *        warmsync, `rsync -a` and `rsync -az` (rsync through the same kind of proxy in front of the
 *        rsync daemon). Reported as each one's achieved rate (payload bytes / wall time) as a share
 *        of the link rate, beside the usual time ratios. Then warmsync with --bwlimit on plain
 *        loopback: its rate over the transfer against the limit.
 *
 * The payload is uncompressible (the corpus's binaries are random bytes). `wanTextScenario` runs the
 * compressible case over the same link: a text tree (real or synthetic, TEXT_CORPORA), warmsync
 * --compress zstd against `rsync -az` (issue 21: zstd must beat rsync -z), with warmsync uncompressed
 * and `rsync -a` beside.
 */
import { join } from 'node:path';
import { FaultProxy } from '../test/helpers/proxy.js';
import { RsyncDaemon, rsyncDaemonSide, type ToolConfig } from './competitors.js';
import { binarySize, copyTextTree, Rng, writeBinary, writeTextTree } from './corpus.js';
import { REPO } from './machine.js';
import { freshScenario, newResult, type Context, type ScenarioResult } from './scenarios.js';
import type { RunRecord } from './side.js';
import { warmsyncSide, type WarmsyncConfig } from './warmsync.js';

/** A link: bytes per second each way, and the one-way delay (the proxy's latencyMs; the round trip is twice it). */
export interface WanLink { readonly bytesPerSec: number; readonly latencyMs: number }

/** Issue 21's link, the default: 100 Mbit/s, 50 ms round trip. */
export const WAN_LINK: WanLink = { bytesPerSec: 100e6 / 8, latencyMs: 25 };
/** Issue 21's target: the initial sync at >= 0.8x the link rate. */
const LINK_SHARE_TARGET = 0.8;

/** The --bwlimit check: this limit, over about this much data (so ~10 s of transfer). */
const BWLIMIT = { flag: '4M', bytesPerSec: 4 * 1024 * 1024, dataBytes: 40 * 1024 * 1024 } as const;

/** A proxy between a client and `target`, set to `link`. */
async function wanProxy(target: { host: string; port: number }, link: WanLink): Promise<FaultProxy> {
  const proxy = await FaultProxy.start(target);
  proxy.settings.latencyMs = link.latencyMs;
  proxy.settings.bytesPerSec = link.bytesPerSec;
  return proxy;
}

/** A warmsync side's path to its receiver: one proxy set to `link` per receiver (each fresh standby has its own), closed with it. */
function viaLink(link: WanLink): (url: string) => Promise<{ url: string; close(): Promise<void> }> {
  return async (url) => {
    const u = new URL(url);
    const proxy = await wanProxy({ host: u.hostname, port: Number(u.port) }, link);
    return { url: proxy.url, close: () => proxy.close() };
  };
}

export interface WanSetup {
  readonly warmsync: WarmsyncConfig;
  readonly tool: ToolConfig;
  readonly daemon: RsyncDaemon;
  readonly link: WanLink;
}

/** Payload bytes of a run: what warmsync's agent sent (the same files every side copies). */
function payloadOf(record: RunRecord): number | null {
  const sent = record.summary?.['bytesSent'];
  return typeof sent === 'number' ? sent : null;
}

export async function wanScenario(ctx: Context, setup: WanSetup): Promise<ScenarioResult> {
  const link = setup.link;
  const rsyncProxy = await wanProxy({ host: '127.0.0.1', port: setup.daemon.port }, link);
  try {
    const warmsync = warmsyncSide(setup.warmsync, { name: 'warmsync', via: viaLink(link) });
    const WAN_ROWS = [
      rsyncDaemonSide(setup.daemon, setup.tool, false, { name: 'rsync -a', args: [], port: rsyncProxy.port }),
      rsyncDaemonSide(setup.daemon, setup.tool, false, { name: 'rsync -az', args: ['-z'], port: rsyncProxy.port }),
    ];
    const linkText = `${(link.bytesPerSec * 8 / 1e6).toFixed(0)} Mbit/s, ${2 * link.latencyMs} ms round trip`;
    const result = await freshScenario({ ...ctx, warmsync }, 'wan', `Initial sync over a WAN link (proxy: ${linkText})`, async () => ctx.src,
      WAN_ROWS.map((side) => [side, undefined] as const));
    const payload = result.runs.map((r) => payloadOf(r.record as RunRecord)).find((b): b is number => b !== null) ?? null;
    if (payload === null) {
      result.notes.push('no warmsync run finished: no payload to compute rates from');
      return result;
    }
    const rows: string[][] = [];
    for (const name of [warmsync.name, ...WAN_ROWS.map((s) => s.name)]) {
      const walls = result.runs.filter((r) => r.side === name).map((r) => (r.record as RunRecord).wallMs).sort((a, b) => a - b);
      if (walls.length === 0) continue;
      const med = walls[Math.floor((walls.length - 1) / 2)] as number;
      const rate = payload / (med / 1000);
      const share = rate / link.bytesPerSec;
      rows.push([name, `${(med / 1000).toFixed(1)} s`, `${(rate / 1e6).toFixed(2)} MB/s`, `${share.toFixed(2)}×`,
        name === warmsync.name ? `>= ${LINK_SHARE_TARGET}× link: ${share >= LINK_SHARE_TARGET ? 'met' : 'not met'}` : '']);
    }
    result.tables = [{
      caption: `Achieved rate: payload ${(payload / 1e6).toFixed(0)} MB (what warmsync sent; the same files for every row) / median wall time, as a share of the link's ${(link.bytesPerSec / 1e6).toFixed(1)} MB/s`,
      header: ['side', 'median wall', 'rate', 'share of link', 'target'], rows,
    }];
    return result;
  } finally {
    await rsyncProxy.close();
  }
}

/**
 * warmsync with --bwlimit over plain loopback into a fresh standby, `ctx.pairs` times: the rate over
 * the transfer phase (from the agent's "scanned" line to its end) against the limit. Issue 21: within 10 %.
 */
export async function bwlimitScenario(ctx: Context, setup: WanSetup): Promise<ScenarioResult> {
  const result = newResult('bwlimit', `--bwlimit ${BWLIMIT.flag} (${BWLIMIT.bytesPerSec} bytes/s) on loopback`);
  const src = await ctx.scratch('bwlimit-src');
  const rng = new Rng(`${ctx.seed}:bwlimit`);
  let bytes = 0;
  for (let k = 0; bytes < BWLIMIT.dataBytes; k++) bytes += writeBinary(src, ctx.seed, `bwlimit-${k}`, binarySize(rng, 2 * 1024 * 1024)).bytes;
  const side = warmsyncSide(setup.warmsync, { name: `warmsync --bwlimit ${BWLIMIT.flag}`, agentArgs: ['--bwlimit', BWLIMIT.flag] });
  const rows: string[][] = [];
  for (let round = 0; round < ctx.pairs; round++) {
    const dir = join(ctx.standbys, `bwlimit-${round + 1}`);
    const standby = await side.open(dir, `state-bwlimit-${round + 1}`);
    try {
      const record = await standby.sync(src);
      result.runs.push({ round, side: side.name, record });
      const sent = payloadOf(record) ?? 0;
      const transferMs = record.phases?.transferMs ?? record.wallMs;
      const rate = sent / (transferMs / 1000);
      const share = rate / BWLIMIT.bytesPerSec;
      ctx.say(`  round ${round + 1}: ${side.name} sent ${sent} bytes in ${transferMs} ms: ${(rate / 1e6).toFixed(2)} MB/s, ${share.toFixed(3)}× the limit`);
      rows.push([String(round + 1), String(sent), `${(transferMs / 1000).toFixed(2)} s`, `${(rate / 1e6).toFixed(3)} MB/s`, `${share.toFixed(3)}×`,
        Math.abs(share - 1) <= 0.1 ? 'within 10 %' : 'outside 10 %']);
    } finally {
      await standby.close();
    }
  }
  result.tables = [{
    caption: `warmsync --bwlimit ${BWLIMIT.flag}: file bytes sent / transfer time (from the agent's "scanned" line to its end), against ${(BWLIMIT.bytesPerSec / 1e6).toFixed(3)} MB/s`,
    header: ['round', 'bytes sent', 'transfer', 'rate', 'rate / limit', '±10 %'], rows,
  }];
  return result;
}

/** The compressible case: about this much text (about 4 s at 100 Mbit/s uncompressed). */
const TEXT_BYTES = 48 * 1024 * 1024;

/**
 * The compressible trees: `real`, the text files of the project's own node_modules (code, JSON, YAML,
 * Markdown as people write them; the same wherever package-lock.json installed it); `synthetic`, an
 * etc/-like tree generated from a 30-word vocabulary with random numbers and hex ids for values
 * (short repeats and high-entropy values: the kind of text deflate's 3-byte matches suit best).
 */
export const TEXT_CORPORA = {
  real: { scenario: 'wan-text', label: 'real text (node_modules)', make: (src: string) => copyTextTree(join(REPO, 'node_modules'), src, TEXT_BYTES) },
  synthetic: { scenario: 'wan-text-synthetic', label: 'synthetic etc/-like text', make: (src: string, seed: string) => writeTextTree(src, seed, TEXT_BYTES) },
} as const;

/**
 * The initial sync of a text tree over the link: warmsync --compress zstd against `rsync -az`
 * (issue 21: zstd beats rsync -z, i.e. a ratio below 1.0), with warmsync uncompressed and `rsync -a`
 * beside it; what each warmsync put on the wire, from its summary.
 */
export async function wanTextScenario(ctx: Context, setup: WanSetup, corpus: keyof typeof TEXT_CORPORA): Promise<ScenarioResult> {
  const { scenario, label, make } = TEXT_CORPORA[corpus];
  const link = setup.link;
  const rsyncProxy = await wanProxy({ host: '127.0.0.1', port: setup.daemon.port }, link);
  try {
    const zstd = warmsyncSide(setup.warmsync, { name: 'warmsync --compress zstd', agentArgs: ['--compress', 'zstd'], via: viaLink(link) });
    const plain = warmsyncSide(setup.warmsync, { name: 'warmsync', via: viaLink(link) });
    const src = await ctx.scratch(scenario);
    const text = make(src, ctx.seed);
    ctx.say(`  ${text.files} text files, ${(text.bytes / 1e6).toFixed(1)} MB`);
    const result = await freshScenario({ ...ctx, warmsync: zstd }, scenario, `Initial sync of ${(text.bytes / 1e6).toFixed(0)} MB of ${label} over the WAN link`, async () => src, [
      [rsyncDaemonSide(setup.daemon, setup.tool, false, { name: 'rsync -az', args: ['-z'], port: rsyncProxy.port, wireStats: true }), { maxRatio: 1.0, text: 'zstd beats rsync -z (< 1.0×)' }],
      [rsyncDaemonSide(setup.daemon, setup.tool, false, { name: 'rsync -a', args: [], port: rsyncProxy.port, wireStats: true }), undefined],
      [plain, undefined],
    ]);
    const records = (name: string): RunRecord[] => result.runs.filter((r) => r.side === name).map((r) => r.record as RunRecord);
    const sent = records(zstd.name).map(payloadOf).find((b): b is number => b !== null);
    const rows: string[][] = [];
    for (const name of [zstd.name, 'rsync -az', 'rsync -a', plain.name]) {
      const summaries = records(name).map((r) => r.summary);
      const wire = summaries.map((s) => s?.['wireBytesSent']).find((b): b is number => typeof b === 'number');
      const compress = summaries.map((s) => s?.['compress']).find((c): c is string => typeof c === 'string');
      const label = compress === undefined || compress === 'none' ? name : `${name} (negotiated ${compress})`;
      if (wire !== undefined && sent !== undefined) rows.push([label, `${(sent / 1e6).toFixed(1)} MB`, `${(wire / 1e6).toFixed(1)} MB`, `${(wire / sent).toFixed(2)}`]);
    }
    result.tables = [{
      caption: 'File bytes and the bytes each side put on the wire (warmsync: its summary, frame headers not counted; rsync: --stats "Total bytes sent", all of its protocol)',
      header: ['side', 'file bytes', 'on the wire', 'share'], rows,
    }];
    return result;
  } finally {
    await rsyncProxy.close();
  }
}
