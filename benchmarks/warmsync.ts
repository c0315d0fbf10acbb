/**
 * The warmsync side, driven through bin/warmsync.js as a user would: a receiver per standby
 * (started before timing, stopped after), `agent --once --json` timed per run, and the live agent
 * for the latency scenario.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, startReceiverProcess, type ReceiverProcess } from '../scripts/lib/cli-process.js';
import { collect, runMeasured, spawnTracked, stopProcess, vmHwmKiB } from './proc.js';
import type { LiveRun, LiveSide, Phases, RunRecord, Side, Standby } from './side.js';

export interface WarmsyncConfig {
  readonly tokenFile: string;
  readonly excludesFile: string;
  /** Agent state dirs (the hash cache) go here, one per standby: outside the source root. */
  readonly stateRoot: string;
  readonly timeoutMs: number;
}

export interface WarmsyncStandby extends Standby {
  readonly url: string;
  readonly agentStateDir: string;
  readonly receiverPid: number | undefined;
  receiverPeakRssKiB(): number | null;
}

/** Bounded stop of a receiver started by startReceiverProcess. */
async function stopReceiver(receiver: ReceiverProcess): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    receiver.stop().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 15_000))),
  ]);
  clearTimeout(timer);
  if (!stopped) receiver.child.kill('SIGKILL');
}

/**
 * The first info line of a warmsync log whose message starts with `prefix`: its time (epoch ms)
 * and message. Reads JSON lines (the default when stderr is not a terminal, as here) and text
 * ones (--log-format text).
 */
export function findLogLine(log: string, prefix: string): { at: number; msg: string } | null {
  for (const line of log.split('\n')) {
    let time: string | undefined;
    let msg: string | undefined;
    if (line.startsWith('{')) {
      try {
        const record = JSON.parse(line) as { level?: unknown; time?: unknown; msg?: unknown };
        if (record.level === 'info' && typeof record.time === 'string' && typeof record.msg === 'string') ({ time, msg } = record as { time: string; msg: string });
      } catch {
        continue;
      }
    } else {
      const m = /^(\S+) INFO\s+(.*)$/.exec(line);
      if (m) [, time, msg] = m;
    }
    if (time === undefined || msg === undefined || !msg.startsWith(prefix)) continue;
    const at = Date.parse(time);
    if (Number.isFinite(at)) return { at, msg };
  }
  return null;
}

function agentArgs(cfg: WarmsyncConfig, src: string, url: string, stateDir: string): string[] {
  return ['agent', '--root', src, '--connect', url, '--token-file', cfg.tokenFile, '--exclude-from', cfg.excludesFile, '--state-dir', stateDir];
}

export interface WarmsyncSide extends Side {
  open(dir: string, label: string): Promise<WarmsyncStandby>;
}

/**
 * A warmsync variant: another name in the tables, more agent flags (--bwlimit, later --compress),
 * and a way for the agent to reach the receiver (the WAN scenario's loopback proxy).
 */
export interface WarmsyncVariant {
  readonly name?: string;
  readonly agentArgs?: readonly string[];
  /** Called once per standby with the receiver's URL: the URL the agent is to dial instead, and how to stop that path. */
  readonly via?: (url: string) => Promise<{ readonly url: string; close(): Promise<void> }>;
}

export function warmsyncSide(cfg: WarmsyncConfig, variant: WarmsyncVariant = {}): WarmsyncSide {
  return {
    name: variant.name ?? 'warmsync',
    async open(dir, label) {
      await mkdir(dir, { recursive: true });
      const agentStateDir = join(cfg.stateRoot, label);
      const receiver = await startReceiverProcess(['--root', dir, '--listen', '127.0.0.1:0', '--token-file', cfg.tokenFile]);
      const receiverPeak = (): number | null => vmHwmKiB(receiver.child.pid);
      const path = variant.via === undefined ? null : await variant.via(receiver.url);
      const dialed = path?.url ?? receiver.url;
      return {
        dir, url: receiver.url, agentStateDir, receiverPid: receiver.child.pid,
        receiverPeakRssKiB: receiverPeak,
        async sync(src): Promise<RunRecord> {
          const r = await runMeasured(BIN, [...agentArgs(cfg, src, dialed, agentStateDir), ...(variant.agentArgs ?? []), '--once', '--json'], { timeoutMs: cfg.timeoutMs });
          if (r.code !== 0) throw new Error(`warmsync agent exited ${r.code}: ${r.stderr.trim().slice(-2000)}\nreceiver: ${receiver.stderr().slice(-2000)}`);
          const summary = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
          const elapsedMs = typeof summary.elapsedMs === 'number' ? summary.elapsedMs : r.wallMs;
          const runStart = r.endedAt - elapsedMs;
          const scanned = findLogLine(r.stderr, 'scanned ')?.at ?? null;
          const phases: Phases | undefined = scanned === null ? undefined : {
            startupMs: r.wallMs - elapsedMs, scanPlanMs: scanned - runStart, transferMs: r.endedAt - scanned, elapsedMs,
          };
          return { wallMs: r.wallMs, peakRssKiB: r.peakRssKiB, cpuMs: r.cpuMs, receiverPeakRssKiB: receiverPeak(), phases, summary };
        },
        close: async () => {
          await path?.close();
          await stopReceiver(receiver);
        },
      };
    },
  };
}

/** `warmsync agent` without --once, against an already synced warmsync standby. */
export function warmsyncLive(cfg: WarmsyncConfig, standby: WarmsyncStandby): LiveSide {
  return {
    name: 'warmsync live agent',
    async start(src): Promise<LiveRun> {
      const child: ChildProcess = spawnTracked(BIN, agentArgs(cfg, src, standby.url, standby.agentStateDir));
      const out = collect(child);
      // Ready once it watches and has connected; the runner then waits for a sentinel file.
      const deadline = Date.now() + 120_000;
      while (!/watching /.test(out.stderr()) || !/connected to /.test(out.stderr())) {
        const why = child.exitCode !== null ? `live agent exited ${child.exitCode}` : Date.now() > deadline ? 'live agent not ready within 120 s' : null;
        if (why !== null) {
          await stopProcess(child);
          throw new Error(`${why}: ${out.stderr().slice(-2000)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return {
        standbyDir: standby.dir, watcherPid: child.pid, receiverPid: standby.receiverPid, log: out.stderr,
        async stop() {
          const watcherPeakRssKiB = vmHwmKiB(child.pid);
          await stopProcess(child);
          return { watcherPeakRssKiB, receiverPeakRssKiB: standby.receiverPeakRssKiB() };
        },
      };
    },
  };
}
