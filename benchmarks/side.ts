/**
 * What a scenario runs: a "side" (warmsync or one competitor) syncs a source tree into a standby
 * directory. The runner times `sync`; opening and closing a standby are not timed.
 */

export interface Phases {
  /** Node start-up and exit: wall time minus the agent's own elapsedMs. */
  readonly startupMs: number;
  /** Walk, hash, connect, fetch the manifest, plan: up to the agent's "scanned ..." log line. */
  readonly scanPlanMs: number;
  /** Send, apply (write, fsync, rename), record, close: from that line to the end of runOnce. */
  readonly transferMs: number;
  /** The agent's --json elapsedMs. */
  readonly elapsedMs: number;
}

export interface RunRecord {
  readonly wallMs: number;
  /** Peak RSS of the timed process (warmsync agent, rsync client, cp), KiB. */
  readonly peakRssKiB: number | null;
  /** Its user + system CPU (not the receiver's, nor an rsync daemon's), ms; null when not measured. */
  readonly cpuMs: number | null;
  /** warmsync only: the receiver's peak RSS over its life so far, KiB. */
  readonly receiverPeakRssKiB?: number | null;
  readonly phases?: Phases;
  /** warmsync only: the agent's --json summary. */
  readonly summary?: Readonly<Record<string, unknown>>;
}

export interface Standby {
  readonly dir: string;
  /** Makes the standby match `src` (timed by the caller). */
  sync(src: string): Promise<RunRecord>;
  /** Stops whatever serves this standby; leaves its files. */
  close(): Promise<void>;
}

export interface Side {
  /** Label in tables, e.g. "rsync daemon --fsync". */
  readonly name: string;
  /** Set on a floor that only reads the source (a walk, a process start-up): there is no standby to check. */
  readonly writesNoStandby?: true;
  /** Opens a standby in `dir` (created; must not exist yet). */
  open(dir: string, label: string): Promise<Standby>;
}

/** A live replicator watching `src` into a standby; the runner measures latency on `standbyDir`. */
export interface LiveRun {
  readonly standbyDir: string;
  /** The watching process and (warmsync) the receiver, for /proc readings; absent when unknown. */
  readonly watcherPid?: number;
  readonly receiverPid?: number;
  /** The watcher's stderr so far (warmsync: its log lines). */
  log?(): string;
  /** Stops it; returns the peak RSS of the watcher (and of warmsync's receiver), KiB. */
  stop(): Promise<{ watcherPeakRssKiB: number | null; receiverPeakRssKiB: number | null }>;
}

export interface LiveSide {
  readonly name: string;
  start(src: string): Promise<LiveRun>;
}
