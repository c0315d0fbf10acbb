/**
 * One authenticated agent's session on the receiver. Frames are handled strictly in arrival order
 * (one queue), so ops on a path apply in the order the agent sent them. Completed, verified files
 * are committed in groups (group commit): fsync them together, rename each into place, fsync each
 * directory once, then record them all in one manifest transaction, and only then report success.
 * A group commits beside the queue, which goes on receiving the next group meanwhile (its syncfs
 * calls wait on the disk for seconds in a burst); one group at a time, in order, and an op on a
 * path of the committing group waits for it (settle).
 */
import type { ConfinedRoot, DirRef } from '../confined/root.js';
import type { Entry, EntryKind, ManifestEntry, Owner } from '../entry.js';
import { ProtocolError, WarmsyncError, describeError } from '../errors.js';
import { faultPoint } from '../faultpoint.js';
import type { Logger } from '../log.js';
import type { Manifest } from '../manifest/manifest.js';
import type { TargetIds } from '../owner/policy.js';
import type { AgentFrame } from '../protocol/codec.js';
import { manifestPageJson, resultBatches } from '../protocol/batch.js';
import { RESUMABLE_MIN_BYTES } from '../protocol/limits.js';
import type {
  DeleteMessage, FileBeginMessage, FileEndMessage, HeartbeatMessage, MkdirMessage, ResultItem, SetMetaMessage, SpecialMessage,
  SymlinkMessage,
} from '../protocol/messages.js';
import { ancestorsOf, parentOf } from '../relpath.js';
import type { FileHasher } from '../scan/hash.js';
import type { Connection } from '../transport/connection.js';
import { MAX_QUEUED_FRAME_BYTES, MAX_QUEUED_FRAMES, SEND_HIGH_WATER_BYTES } from '../transport/limits.js';
import { hardLink, type TreeWriter } from './apply.js';
import type { PartialStore } from './partials.js';
import { recordDb } from './dbrecord.js';
import { syncFileSystems } from './durable.js';
import { StagedFile } from './staging.js';

export interface SessionLimits {
  /** Files in transfer at once; more is a protocol violation. */
  readonly maxInFlight: number;
  /** Commit when this many ops are waiting... */
  readonly commitOps: number;
  /** ...or this many bytes... */
  readonly commitBytes: number;
  /** ...or this long after the first one finished. */
  readonly commitDelayMs: number;
}

/** Test hook (src/faultpoint.ts): `commit:N` stops the receiver after its Nth rename into place, before its group is recorded. */
const stopAfterInstall = faultPoint('commit');
let installsInProcess = 0;

/** Files at least this large are committed on their own (see addPending). */
const LARGE_FILE_BYTES = 8 << 20;
/**
 * Files in flight from which a group's data is made durable by one syncfs rather than an fsync
 * each (and its renames by one syncfs rather than an fsync per directory): a live agent's lone file
 * keeps its fsync, which costs no more and writes back nothing else; a burst shares one syncfs.
 */
const GROUP_SYNC_MIN_FILES = 4;

export interface SessionDeps {
  readonly conn: Connection;
  readonly manifest: Manifest;
  /** The standby root, through the confined layer (the writer's root). */
  readonly root: ConfinedRoot;
  readonly writer: TreeWriter;
  readonly hasher: FileHasher;
  readonly log: Logger;
  readonly limits: SessionLimits;
  readonly now: () => number;
  /** Told about every committed group and every failed op (metrics). */
  readonly observer?: { committed(files: number, bytes: number): void; failed(): void };
  /** Where unfinished large transfers wait for the next connection. */
  readonly partials: PartialStore;
  /**
   * The standby ids for a source owner (src/owner/policy.ts targetIds), or null to leave what is
   * written as the receiver creates it. Absent: owners are never changed.
   */
  readonly ownerIds?: (owner: Owner | null | undefined) => TargetIds | null;
}

type Precondition = FileBeginMessage['old'];

/**
 * What a file's install rename fails with when something is in the way: EEXIST (RENAME_NOREPLACE
 * found an entry), EISDIR (a directory), EINVAL (a file system without RENAME_NOREPLACE: then the
 * entry is looked at as before, and the rename made without the flag).
 */
const IN_THE_WAY: ReadonlySet<string> = new Set(['EEXIST', 'EISDIR', 'EINVAL']);

/** A precondition that held. */
interface Admitted {
  /** Whether the manifest has a row at the path (else what is on disk there is unrelated). */
  readonly known: boolean;
  /** The kind that row records, null without one. */
  readonly recordedKind: EntryKind | null;
}

/** An op that succeeded on disk and waits for the group commit. */
interface PendingOp {
  readonly op: number;
  readonly path: string;
  readonly staged: StagedFile | null;
  /** What `staged` installs at the path: marked in the manifest before the rename (recordInstalling). */
  readonly installs?: Entry;
  /** Manifest update, run inside the group's transaction. */
  readonly record: (now: number) => void;
  /**
   * Re-checked under the write lock for ops applied before it (directories, symlinks, metadata):
   * a snapshot may have applied a tombstone to the path in between.
   */
  readonly stillThere?: () => Promise<boolean>;
}

interface QueuedTask {
  readonly task: () => Promise<void>;
  /** The frame's size, 0 for the session's own work. */
  readonly bytes: number;
}

/**
 * A file transfer in progress; `staged` is null when its data is being discarded (op already failed).
 * `hashLater`: its fileBegin carried no hash, so it completes on its `fileEnd`, not on its last byte.
 */
interface Transfer {
  readonly path: string; staged: StagedFile | null; remaining: number; readonly resumable: boolean; readonly hashLater: boolean;
  readonly owner: Owner | null;
}

export interface SessionCounters { files: number; bytes: number; ops: number; failed: number }

/**
 * Whether the standby holds what the agent based its op on. A damaged row (a change that was being
 * installed, or a directory made implicitly above a file) stands for content the standby cannot
 * vouch for, which the agent is to send again: an op that expects nothing there may replace it, as
 * the resend a reconciliation plans for it would. Refusing it (CONFLICT) cost a full pass each time.
 */
function matches(old: Precondition, row: ManifestEntry | undefined): boolean {
  if (old === null) return row === undefined || row.damaged;
  return row !== undefined && row.kind === old.kind && row.hash === old.hash && row.deletedAt === old.deletedAt;
}

function describePrecondition(row: ManifestEntry | undefined): string {
  if (row === undefined) return 'no entry';
  return `${row.kind}${row.hash ? ' ' + row.hash : ''}${row.deletedAt !== null ? ' (tombstone)' : ''}`;
}

export class ReceiverSession {
  /** The frames (and the session's own tasks) waiting their turn, in order: `drain` runs them one at a time. */
  private readonly queue: QueuedTask[] = [];
  /** The running `drain`, until the queue is empty. */
  private draining: Promise<void> | null = null;
  /** Tasks queued and not finished (the running one included). */
  private queued = 0;
  /** Bytes of those frames; with `queued`, what decides to stop reading the socket. */
  private queuedBytes = 0;
  private paused = false;
  private readonly transfers = new Map<number, Transfer>();
  private pending: PendingOp[] = [];
  /** Every pending op's path and its ancestors: `settle` looks a path up here instead of scanning `pending`. */
  private pendingPrefixes = new Set<string>();
  private pendingBytes = 0;
  private commitTimer: NodeJS.Timeout | null = null;
  /**
   * The group being committed beside the queue, if any: the paths of its ops with their ancestors
   * (as `pendingPrefixes`), and its commit, which never rejects (a failure closes the session).
   */
  private committing: { readonly prefixes: ReadonlySet<string>; readonly done: Promise<void> } | null = null;
  /** The scheduled group was sealed while frames were waiting: commits it at the next idle moment. */
  private sealedWhileBusy: (() => void) | null = null;
  private results: ResultItem[] = [];
  private credit = 0;
  private ended = false;
  /** onFatal logged why the session is closing (else a failure found by the codec is logged at the end). */
  private failureLogged = false;
  readonly counters: SessionCounters = { files: 0, bytes: 0, ops: 0, failed: 0 };

  constructor(private readonly deps: SessionDeps) {}

  /** Runs until the connection closes; verified work that arrived is committed before returning. */
  async run(): Promise<void> {
    const { conn } = this.deps;
    conn.onFrame((frame, bytes) => this.enqueue(() => this.handle(frame as AgentFrame), bytes));
    await conn.closed;
    this.ended = true;
    // A frame that failed to decode or validate closed the connection before the session saw it.
    const failure = conn.protocolFailure;
    if (failure !== null && !this.failureLogged) this.deps.log.warn(failure.code, `closed the session: ${failure.message}`);
    await this.draining;
    await this.commit();
    for (const t of this.transfers.values()) if (t.staged !== null) await this.leaveUnfinished(t.path, t.staged, t.resumable);
    this.transfers.clear();
  }

  /**
   * Queues `task` (a frame of `bytes`, 0 for the session's own work). Backpressure both ways: a
   * task starts only once what was sent so far has mostly reached the OS (a peer that stops
   * reading stops the session), and past MAX_QUEUED_FRAMES or MAX_QUEUED_FRAME_BYTES waiting the
   * socket is not read until half of that is done.
   */
  private enqueue(task: () => Promise<void>, bytes = 0): void {
    this.queued++;
    this.queuedBytes += bytes;
    if (!this.paused && (this.queued > MAX_QUEUED_FRAMES || this.queuedBytes > MAX_QUEUED_FRAME_BYTES)) {
      this.paused = true;
      this.deps.conn.pause();
    }
    this.queue.push({ task, bytes });
    this.draining ??= this.drain();
  }

  /**
   * Runs the queue's tasks in order until it is empty, tasks queued meanwhile included. A loop
   * rather than a chain of promises, which cost each frame four promises and three closures: 72 MB
   * of the 1.1 GB a first sync of 51,520 files allocated, and scavenges of the young generation
   * take a sixth of the receiver's main thread (docs/benchmarks.md, session 17).
   */
  private async drain(): Promise<void> {
    for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
      try {
        await this.deps.conn.writable(SEND_HIGH_WATER_BYTES);
        await next.task();
      } catch (err) {
        this.onFatal(err);
      }
      this.queued--;
      this.queuedBytes -= next.bytes;
      if (this.paused && this.queued <= MAX_QUEUED_FRAMES / 2 && this.queuedBytes <= MAX_QUEUED_FRAME_BYTES / 2) {
        this.paused = false;
        this.deps.conn.resume();
      }
      if (this.queued === 0 && !this.ended) this.whenIdle();
    }
    this.draining = null;
  }

  /** Nothing more to read right now: hand back credit and any results that are ready. */
  private whenIdle(): void {
    this.sendCredit();
    if (this.sealedWhileBusy !== null) this.sealedWhileBusy();
    else this.scheduleCommit();
    this.sendResults();
  }

  /**
   * Commits what is waiting `commitDelayMs` from now, busy or not: a large transfer streaming in
   * keeps the queue busy, and small files finished meanwhile must not wait for it to end. Sooner
   * when every waiting file is sealed and no frame is waiting: a lone file (a live agent's usual
   * case) lands at once, while a burst, which keeps frames coming, still gathers into groups.
   */
  private scheduleCommit(): void {
    if (this.pending.length === 0 || this.commitTimer !== null) return;
    let fired = false;
    const fire = (): void => {
      if (fired) return;
      fired = true;
      if (this.commitTimer !== null) clearTimeout(this.commitTimer);
      this.commitTimer = null;
      this.enqueue(() => this.startCommit());
    };
    this.commitTimer = setTimeout(fire, this.deps.limits.commitDelayMs);
    const timer = this.commitTimer;
    void Promise.all(this.pending.map((p) => p.staged?.seal().catch(() => undefined))).then(() => {
      // Not if that group was committed meanwhile (a later timer is another group's).
      if (this.commitTimer !== timer) return;
      // Sealed while frames wait (a seal takes microseconds when its group shares one syncfs): at the next idle moment.
      if (this.queued === 0) fire();
      else this.sealedWhileBusy = fire;
    });
  }

  private onFatal(err: unknown): void {
    this.failureLogged = true;
    if (err instanceof ProtocolError) {
      this.deps.log.warn(err.code, `closing the session: ${err.message}`);
      this.deps.conn.fail(err);
    } else {
      this.deps.log.error('SESSION_FAILED', describeError(err));
      this.deps.conn.fail(new ProtocolError('RECEIVER_FAILED', `receiver error: ${describeError(err)}`));
    }
  }

  private async handle(frame: AgentFrame): Promise<void> {
    if (this.deps.conn.protocolFailure !== null) return;
    if (frame.kind === 'chunk') return this.onChunk(frame.transferId, frame.offset, frame.data);
    const msg = frame.message;
    switch (msg.type) {
      case 'manifestRequest': return this.sendManifest();
      case 'fileBegin': return this.onFileBegin(msg);
      case 'fileEnd': return this.onFileEnd(msg);
      case 'abort': return this.onAbort(msg.op);
      case 'mkdir': return this.onMkdir(msg);
      case 'symlink': return this.onSymlink(msg);
      case 'setMeta': return this.onSetMeta(msg);
      case 'special': return this.onSpecial(msg);
      case 'delete': return this.onDelete(msg);
      case 'heartbeat':
        this.recordHeartbeat(msg);
        return;
      case 'flush':
        await this.commit();
        this.sendCredit();
        this.sendResults();
        this.passEnded();
        this.deps.conn.send({ type: 'flushed', id: msg.id });
        return;
      default:
        throw new ProtocolError('UNEXPECTED_MESSAGE', `unexpected ${msg.type} during a session`);
    }
  }

  /**
   * What `status` shows of the agent: contact, W, the feed's completeness, deletions it holds.
   * Recorded while a group commits, it joins that group's transaction: should the group roll back,
   * the standby keeps the heartbeat before, whose W held then and holds still.
   */
  private recordHeartbeat(msg: HeartbeatMessage): void {
    const { manifest } = this.deps;
    manifest.transaction(() => {
      manifest.setState('lastContact', this.deps.now());
      if (msg.watermark !== null) manifest.setState('watermark', msg.watermark);
      manifest.setState('feedIncompleteSince', msg.feedIncomplete?.since ?? null);
      manifest.setState('feedIncompleteReason', msg.feedIncomplete?.reason ?? null);
      manifest.setState('deletionsHeld', msg.deletionsHeld ?? 0);
      if (msg.db !== undefined) recordDb(manifest, msg.db, msg.watermark);
    });
  }

  /**
   * A flush answered: the pass before it has ended, every op it sent recorded or answered. While
   * what `verify` found stands, count what is still marked damaged (a pass that read the marks sent
   * those files again; a failed op, or a pass that began before verify, left them): none left, the
   * finding is settled; else it stands with what is left, and status stays UNSAFE.
   */
  private passEnded(): void {
    const { manifest } = this.deps;
    const damage = manifest.verifyDamage();
    if (damage === null) return;
    const left = manifest.damagedLiveCount();
    manifest.setVerifyDamage(left === 0 ? null : { files: left, at: damage.at });
  }

  /** One page at a time, each once the last has (mostly) reached the OS: a peer that does not read gets no more. */
  private async sendManifest(): Promise<void> {
    await this.commit();
    const { conn } = this.deps;
    for (const page of manifestPageJson(this.deps.manifest.wireEntriesJson())) {
      if (!conn.isOpen) return;
      await conn.writable(SEND_HIGH_WATER_BYTES);
      conn.sendJson(page, 'manifestPage');
    }
  }

  /**
   * Commits first when a waiting op touches `path` or lies below it, so ops on a path stay in order:
   * what to wait for, or null (the usual case, with no promise made).
   */
  private settle(path: string): Promise<void> | null {
    if (this.pendingPrefixes.has(path)) return this.commit();
    if (this.committing?.prefixes.has(path) === true) return this.committing.done;
    return null;
  }

  /**
   * Checks the agent's precondition; on mismatch reports CONFLICT (the agent re-plans next time).
   * Also validates the path (BAD_PATH closes the session: a hostile or broken peer).
   */
  private async admit(op: number, path: string, old: Precondition): Promise<Admitted | null> {
    this.deps.root.check(path);
    const settling = this.settle(path);
    if (settling !== null) await settling;
    const row = this.deps.manifest.get(path);
    if (!matches(old, row)) {
      this.fail(op, 'CONFLICT', `${path}: the standby holds ${describePrecondition(row)}, the agent expected ${old === null ? 'no entry' : old.kind}`);
      return null;
    }
    return { known: row !== undefined, recordedKind: row?.kind ?? null };
  }

  /**
   * The directory `path` goes in, held open (release it). A missing one is created with whatever
   * is missing above it (the agent sends a directory's mkdir first, but that mkdir may have
   * failed, a CONFLICT say, while the ops below it went ahead): each gets a damaged manifest row
   * first (recordInstalling), so a directory made here is always known, and the agent's next
   * reconciliation sends its mkdir, or its deletion if the source no longer has it.
   */
  private async holdParent(path: string): Promise<DirRef> {
    const { writer, manifest } = this.deps;
    const held = writer.existingParent(path);
    if (held !== null) return held;
    const placeholders = writer.missingAncestors(path).map((dir): Entry => ({
      path: dir, kind: 'dir', size: 0, mtimeMs: 0, mode: 0o755, hash: null, target: null, owner: null,
    }));
    await manifest.recordInstalling(placeholders, this.deps.now());
    return writer.prepareParent(path);
  }

  private async onFileBegin(msg: FileBeginMessage): Promise<void> {
    if (this.transfers.has(msg.op)) throw new ProtocolError('DUPLICATE_OP', `transfer ${msg.op} is already in progress`);
    if (this.transfers.size >= this.deps.limits.maxInFlight) {
      throw new ProtocolError('TOO_MANY_TRANSFERS', `more than ${this.deps.limits.maxInFlight} files in transfer at once`);
    }
    const admitted = await this.admit(msg.op, msg.path, msg.old);
    const resumable = msg.resumable === true && msg.size >= RESUMABLE_MIN_BYTES;
    let staged: StagedFile | null = null;
    if (admitted !== null) {
      let parent: DirRef | null = null;
      try {
        parent = await this.holdParent(msg.path);
        // A directory the source replaced by this file is moved aside now, its rows with it. Anything
        // else in the way fails the install's rename and is moved aside then (installFile): looking
        // first would cost every file a lookup of its final name, mostly of one that is not there.
        if (admitted.recordedKind === 'dir') {
          await this.outsideGroupTransaction();
          if (await this.deps.writer.makeRoomFor(msg.path, 'file', true)) this.deps.manifest.removeTree(msg.path);
        }
        const hasher = this.deps.hasher.createStreamHasher();
        const place = { parent, rel: msg.path, finalPath: this.deps.root.abs(msg.path), recorded: admitted.known };
        const target = { size: msg.size, hash: msg.hash, mode: msg.mode, mtimeMs: msg.mtimeMs, chown: this.idsFor(msg.owner) };
        // A resumable file may continue a kept partial: wait for it, to tell the agent where to
        // resume. Any other file's create runs in the background, its chunks queued behind it.
        staged = resumable ? await StagedFile.create(place, target, hasher, this.deps.partials) : StagedFile.begin(place, target, hasher);
      } catch (err) {
        if (err instanceof ProtocolError && err.code !== 'UNSAFE_PATH') throw err;
        this.failFrom(msg.op, msg.path, err);
      } finally {
        parent?.release(); // the staged file holds its own reference
      }
    }
    if (resumable) {
      // The agent waits for this before sending data; a failed begin gets only its result.
      if (staged === null) return;
      this.deps.conn.send({ type: 'resumeFrom', op: msg.op, offset: staged.bytesWritten });
      if (staged.bytesWritten > 0) this.deps.log.info(`${msg.path}: resuming at byte ${staged.bytesWritten} of ${msg.size}`);
    }
    const transfer: Transfer = {
      path: msg.path, staged, remaining: msg.size - (staged?.bytesWritten ?? 0), resumable, hashLater: msg.hash === null, owner: msg.owner ?? null,
    };
    if (transfer.remaining === 0 && !transfer.hashLater) await this.finishTransfer(msg.op, transfer);
    else this.transfers.set(msg.op, transfer);
  }

  private async onChunk(op: number, offset: number, data: Buffer): Promise<void> {
    const transfer = this.transfers.get(op);
    if (transfer === undefined) throw new ProtocolError('UNKNOWN_TRANSFER', `file data for transfer ${op}, which is not in progress`);
    if (data.byteLength > transfer.remaining) {
      throw new ProtocolError('BAD_OFFSET', `transfer ${op} (${transfer.path}) sent more bytes than it announced`);
    }
    transfer.remaining -= data.byteLength;
    const bytes = data.byteLength;
    // Credit goes back once the bytes are written (a write may wait for its file's create), so
    // what the receiver holds in memory stays within the agent's window. A failed write is
    // reported when the group commit seals the file.
    const writing = transfer.staged === null ? null : transfer.staged.write(offset, data);
    if (writing === null) this.returnCredit(bytes);
    else void writing.then(() => this.returnCredit(bytes));
    if (transfer.remaining === 0 && !transfer.hashLater) {
      this.transfers.delete(op);
      await this.finishTransfer(op, transfer);
    }
  }

  private async onFileEnd(msg: FileEndMessage): Promise<void> {
    const transfer = this.transfers.get(msg.op);
    if (transfer === undefined) throw new ProtocolError('UNKNOWN_TRANSFER', `fileEnd for transfer ${msg.op}, which is not in progress`);
    if (!transfer.hashLater) {
      throw new ProtocolError('UNEXPECTED_MESSAGE', `fileEnd for transfer ${msg.op} (${transfer.path}), whose fileBegin already carried its hash`);
    }
    if (transfer.remaining > 0) {
      throw new ProtocolError('BAD_OFFSET', `fileEnd for transfer ${msg.op} (${transfer.path}) before its last ${transfer.remaining} bytes`);
    }
    this.transfers.delete(msg.op);
    transfer.staged?.expectHash(msg.hash);
    await this.finishTransfer(msg.op, transfer);
  }

  private returnCredit(bytes: number): void {
    this.credit += bytes;
    if (this.credit >= 1 << 20 || this.queued === 0) this.sendCredit();
  }

  private async finishTransfer(op: number, transfer: Transfer): Promise<void> {
    const staged = transfer.staged;
    if (staged === null) return; // already failed and reported
    // Start verifying (and, for a file that came alone, fsyncing) now, so it runs while later files
    // arrive; the group commit waits for it and reports a file that failed (a write error, CHECKSUM_MISMATCH).
    staged.seal(this.transfers.size + this.pending.length < GROUP_SYNC_MIN_FILES).catch(() => undefined);
    const t = staged.target;
    const entry: Entry = { path: transfer.path, kind: 'file', size: t.size, mtimeMs: t.mtimeMs, mode: t.mode, hash: staged.hash, target: null, owner: transfer.owner };
    await this.addPending({ op, path: transfer.path, staged, installs: entry, record: (now) => this.deps.manifest.recordPresent(entry, now) }, t.size);
  }

  private async onAbort(op: number): Promise<void> {
    const transfer = this.transfers.get(op);
    if (transfer === undefined) throw new ProtocolError('UNKNOWN_TRANSFER', `abort for transfer ${op}, which is not in progress`);
    this.transfers.delete(op);
    if (transfer.staged !== null) {
      await this.discard(transfer.path, transfer.staged);
      this.fail(op, 'ABORTED', `${transfer.path}: the agent abandoned the transfer`);
    }
  }

  private async onMkdir(msg: MkdirMessage): Promise<void> {
    const admitted = await this.admit(msg.op, msg.path, msg.old);
    if (admitted === null) return;
    const entry: Entry = { path: msg.path, kind: 'dir', size: 0, mtimeMs: msg.mtimeMs, mode: msg.mode, hash: null, target: null, owner: msg.owner ?? null };
    await this.attempt(msg.op, msg.path, async () => {
      (await this.holdParent(msg.path)).release();
      await this.deps.manifest.recordInstalling([entry], this.deps.now());
      await this.deps.writer.makeRoomFor(msg.path, 'dir', admitted.known);
      await this.deps.writer.ensureDir(msg.path, msg.mode, this.idsFor(msg.owner));
      if ((await this.deps.writer.setDirTime(msg.path, msg.mtimeMs)) !== 'set') {
        // Swapped for a symlink (or removed) since ensureDir: recording the time would claim what the disk lacks.
        throw new ProtocolError('UNSAFE_PATH', `refusing ${JSON.stringify(msg.path)}: it is no longer a directory reachable without a symlink on the standby`);
      }
      await this.addPending({
        op: msg.op, path: msg.path, staged: null, record: (now) => this.deps.manifest.recordPresent(entry, now),
        stillThere: () => this.deps.writer.hasKind(msg.path, 'dir'),
      }, 0);
    });
  }

  private async onSymlink(msg: SymlinkMessage): Promise<void> {
    const entry: Entry = {
      path: msg.path, kind: 'symlink', size: Buffer.byteLength(msg.target), mtimeMs: msg.mtimeMs, mode: 0o777, hash: null, target: msg.target,
      owner: msg.owner ?? null,
    };
    await this.placeEntry(msg, entry, () => this.deps.writer.writeSymlink(msg.path, msg.target, msg.mtimeMs, this.idsFor(msg.owner)));
  }

  /** A FIFO, socket or device node: re-created (never opened), like rsync -a's -D. */
  private async onSpecial(msg: SpecialMessage): Promise<void> {
    const entry: Entry = { path: msg.path, kind: 'special', size: 0, mtimeMs: msg.mtimeMs, mode: msg.mode, hash: null, target: msg.node, owner: msg.owner ?? null };
    await this.placeEntry(msg, entry, () => this.deps.writer.writeSpecial(msg.path, msg.node, msg.mode, msg.mtimeMs, this.idsFor(msg.owner)));
  }

  /**
   * A symlink or special file: made (by `write`) under a temporary name and renamed over the path,
   * after room is made for it; recorded at the group commit.
   */
  private async placeEntry(msg: SymlinkMessage | SpecialMessage, entry: Entry, write: () => Promise<void>): Promise<void> {
    const admitted = await this.admit(msg.op, msg.path, msg.old);
    if (admitted === null) return;
    await this.attempt(msg.op, msg.path, async () => {
      const parent = await this.holdParent(msg.path);
      let displaced: boolean;
      try {
        await this.deps.manifest.recordInstalling([entry], this.deps.now());
        displaced = await this.deps.writer.makeRoomFor(msg.path, entry.kind, admitted.known);
        await write();
      } finally {
        parent.release();
      }
      await this.addPending({
        op: msg.op, path: msg.path, staged: null,
        record: (now) => {
          if (displaced) this.deps.manifest.removeTree(msg.path);
          this.deps.manifest.recordPresent(entry, now);
        },
        stillThere: () => this.deps.writer.hasKind(msg.path, entry.kind),
      }, 0);
    });
  }

  private async onSetMeta(msg: SetMetaMessage): Promise<void> {
    if ((await this.admit(msg.op, msg.path, msg.old)) === null) return;
    const row = this.deps.manifest.get(msg.path);
    const st = row?.kind === 'file' ? this.deps.writer.probe(msg.path) : null;
    if (row === undefined || st === null || st.kind !== 'file' || st.size !== row.size || st.nlink > 1) {
      // The content the agent counts on is gone (or is a hard link the receiver did not make, whose
      // metadata it will not change through): make the next reconciliation send it.
      if (row !== undefined) {
        await this.outsideGroupTransaction();
        this.deps.manifest.markDamaged(msg.path);
      }
      this.fail(msg.op, 'NEEDS_CONTENT', st !== null && st.nlink > 1 ? hardLink(msg.path, st.nlink).message : `${msg.path}: not on the standby as recorded; send its content`);
      return;
    }
    await this.attempt(msg.op, msg.path, async () => {
      const entry: Entry = { ...row, mode: msg.mode, mtimeMs: msg.mtimeMs, owner: msg.owner ?? row.owner ?? null };
      await this.deps.manifest.recordInstalling([entry], this.deps.now());
      await this.deps.writer.setFileMeta(msg.path, msg.mode, msg.mtimeMs, this.idsFor(msg.owner));
      await this.addPending({
        op: msg.op, path: msg.path, staged: null, record: (now) => this.deps.manifest.recordPresent(entry, now),
        stillThere: () => this.deps.writer.hasFile(msg.path, row.size),
      }, 0);
    });
  }
  private idsFor(owner: Owner | null | undefined): TargetIds | null {
    return this.deps.ownerIds?.(owner) ?? null;
  }

  private async onDelete(msg: DeleteMessage): Promise<void> {
    // Only a tombstone: the gate (snapshot time) decides when the file leaves the disk.
    if ((await this.admit(msg.op, msg.path, msg.old)) === null) return;
    const { manifest, writer } = this.deps;
    await this.addPending({
      op: msg.op, path: msg.path, staged: null,
      record: (now) => {
        const row = manifest.get(msg.path);
        // A damaged row with nothing on disk (a change marked by recordInstalling but never made,
        // or a file lost since): no file for a tombstone to keep, so the row goes.
        if (row !== undefined && row.damaged && row.deletedAt === null && writer.probe(msg.path) === null) manifest.remove(msg.path);
        else manifest.recordTombstone(msg.path, msg.deletedAt, now);
      },
    }, 0);
  }

  /** Runs a disk operation; an I/O failure fails the op (reported), not the session. */
  private async attempt(op: number, path: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof ProtocolError && err.code !== 'UNSAFE_PATH') throw err;
      this.failFrom(op, path, err);
    }
  }

  private async addPending(item: PendingOp, bytes: number): Promise<void> {
    const { commitOps, commitBytes } = this.deps.limits;
    // A large file's fsync takes long: commit it in a group of its own, the small ones first.
    const large = bytes >= LARGE_FILE_BYTES;
    if (large) await this.startCommit();
    this.pending.push(item);
    this.pendingPrefixes.add(item.path);
    for (const dir of ancestorsOf(item.path)) this.pendingPrefixes.add(dir);
    this.pendingBytes += bytes;
    if (large || this.pending.length >= commitOps || this.pendingBytes >= commitBytes) await this.startCommit();
    else this.scheduleCommit();
  }

  /** Commits every waiting op and returns once all is recorded. Must run inside the queue (or after it drained). */
  private async commit(): Promise<void> {
    await this.startCommit();
    await this.committing?.done;
  }

  /**
   * Starts the group commit of the waiting ops beside the queue, once the group before it is
   * recorded: one group at a time, so groups are recorded in order and what the receiver holds open
   * stays within two groups. Must run inside the queue (or after it drained).
   */
  private async startCommit(): Promise<void> {
    if (this.commitTimer !== null) {
      clearTimeout(this.commitTimer);
      this.commitTimer = null;
    }
    this.sealedWhileBusy = null;
    await this.committing?.done;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    const prefixes = this.pendingPrefixes;
    this.pending = [];
    this.pendingPrefixes = new Set();
    this.pendingBytes = 0;
    const committing = {
      prefixes,
      done: this.commitGroup(batch).catch((err: unknown) => this.onFatal(err)).finally(() => {
        if (this.committing === committing) this.committing = null;
      }),
    };
    this.committing = committing;
  }

  /**
   * Waits for the committing group before a manifest write made outside the write lock: made while
   * the group's transaction is open, on the same connection, it would commit or roll back with it.
   */
  private async outsideGroupTransaction(): Promise<void> {
    await this.committing?.done;
  }

  /** The group commit of `batch`, taken from `pending`. */
  private async commitGroup(batch: readonly PendingOp[]): Promise<void> {
    const { writer, manifest, root } = this.deps;

    const sealed = await Promise.all(batch.map(async (p) => {
      if (p.staged === null) return true;
      try {
        await p.staged.seal();
        return true;
      } catch (err) {
        await this.discard(p.path, p.staged);
        this.failFrom(p.op, p.path, err);
        return false;
      }
    }));
    // The data of every file sealed above, durable before any of them is renamed into place.
    const unsynced = batch.filter((p, i) => sealed[i] && p.staged !== null && !p.staged.durable);
    if (unsynced.length > 0) {
      try {
        await syncFileSystems(unsynced.map((p) => (p.staged as StagedFile).parent.fd));
      } catch (err) {
        for (const p of unsynced) {
          sealed[batch.indexOf(p)] = false;
          await this.discard(p.path, p.staged as StagedFile);
          this.failFrom(p.op, p.path, err);
        }
      }
    }
    try {
      await manifest.recordInstalling(batch.flatMap((p, i) => (sealed[i] && p.installs !== undefined ? [p.installs] : [])), this.deps.now());
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      await this.groupNotRecorded(batch.filter((p, i) => sealed[i]), [], new Set(), err);
      return;
    }
    const done: PendingOp[] = [];
    /** Ops the loop below reached: each either failed there (with its result) or is in `done`. */
    const reached = new Set<PendingOp>();
    try {
      await manifest.withWriteLock(async () => {
        // Each directory the files were created in must still be the one at their path: a directory
        // moved away (or swapped for a symlink) since would take the renames with it. Checked once
        // per directory, under the lock the gate's moves take too.
        const moved = new Set<DirRef>();
        for (const parent of new Set(batch.flatMap((p, i) => (p.staged !== null && sealed[i] ? [p.staged.parent] : [])))) {
          if (!root.stillAt(parent)) moved.add(parent);
        }
        for (let i = 0; i < batch.length; i++) {
          const p = batch[i] as PendingOp;
          if (!sealed[i]) continue;
          reached.add(p);
          if (p.staged !== null) {
            try {
              if (moved.has(p.staged.parent)) {
                throw new ProtocolError('UNSAFE_PATH', `${p.path}: its directory was moved or replaced on the standby while the file arrived; not applied`);
              }
              await this.installFile(p.path, p.staged);
              stopAfterInstall(++installsInProcess);
            } catch (err) {
              await this.discard(p.path, p.staged);
              this.failFrom(p.op, p.path, err);
              continue;
            }
          } else if (p.stillThere !== undefined && !(await p.stillThere())) {
            this.fail(p.op, 'NEEDS_CONTENT', `${p.path}: removed from the standby while the op was applied; send it again`);
            continue;
          }
          done.push(p);
        }
        try {
          // The renames durable: an fsync of each directory for a few files fsynced alone; for a group,
          // one syncfs per file system its files' directories are on (the other ops' directories fsynced).
          if (unsynced.length === 0 && done.length < GROUP_SYNC_MIN_FILES) {
            await writer.fsyncDirs(new Set(done.map((p) => parentOf(p.path))));
          } else {
            const staged = done.flatMap((p) => (p.staged === null ? [] : [p.staged.parent.fd]));
            await syncFileSystems(staged);
            await writer.fsyncDirs(new Set(done.flatMap((p) => (p.staged === null ? [parentOf(p.path)] : []))));
          }
        } finally {
          for (const p of done) p.staged?.release();
        }
        const now = this.deps.now();
        for (const p of done) p.record(now);
      });
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      await this.groupNotRecorded(batch.filter((p, i) => sealed[i]), done, reached, err);
      return;
    }
    // Renames changed their directories' mtimes: put back what the source has.
    for (const parent of new Set(done.map((p) => parentOf(p.path)))) await this.restoreDirTime(parent);
    let files = 0;
    let bytes = 0;
    for (const p of done) {
      this.results.push({ op: p.op, ok: true });
      if (p.staged !== null) {
        files++;
        bytes += p.staged.target.size;
      }
    }
    this.counters.ops += done.length;
    this.counters.files += files;
    this.counters.bytes += bytes;
    this.deps.observer?.committed(files, bytes);
    this.sendResults();
  }

  /**
   * Renames a sealed file into place (StagedFile.install). Something there that the manifest does
   * not account for (a directory, or anything at all at a path it has no row for: a first sync onto
   * files already on the standby) fails the rename, and is moved aside as makeRoomFor does, never
   * overwritten; then the rename is made again. Runs under the group's write lock.
   */
  private async installFile(path: string, staged: StagedFile): Promise<void> {
    try {
      staged.install();
      return;
    } catch (err) {
      if (!IN_THE_WAY.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    if (await this.deps.writer.makeRoomFor(path, 'file', staged.recorded)) this.deps.manifest.removeTree(path);
    staged.install(true);
  }

  /**
   * The manifest could not record a group (its file system is full: SQLite's journal could not
   * grow). Nothing of it is recorded, so none of it may be reported done: each op fails with
   * ENOSPC, as a file that could not be written does, and the session goes on. What was renamed
   * into place stays on disk under its damaged row (recordInstalling; the agent sends it again); what
   * was not is discarded.
   */
  private async groupNotRecorded(ops: readonly PendingOp[], installed: readonly PendingOp[], reached: ReadonlySet<PendingOp>, err: unknown): Promise<void> {
    const why = `the manifest could not record it (${describeError(err)})`;
    for (const p of ops) {
      if (installed.includes(p)) {
        p.staged?.release();
        this.fail(p.op, 'ENOSPC', `${p.path}: ${why}; it is on disk, unrecorded, and must be sent again`);
      } else if (!reached.has(p)) {
        if (p.staged !== null) await this.discard(p.path, p.staged);
        this.fail(p.op, 'ENOSPC', `${p.path}: ${why}; not applied`);
      }
    }
    this.sendResults();
  }

  /** The connection ended mid-transfer: keep a large file's data for the next connection, else discard it. */
  private async leaveUnfinished(path: string, staged: StagedFile, resumable: boolean): Promise<void> {
    // Chunks still on their way to disk count: let them land first (a failed one fails keepAsPartial).
    await staged.ready().catch(() => undefined);
    // All of it arrived (only its fileEnd was missing): a partial must be shorter than the file to be taken.
    if (resumable && staged.bytesWritten >= 1 << 20 && staged.bytesWritten < staged.target.size) {
      try {
        await staged.keepAsPartial(this.deps.partials);
        await this.restoreDirTime(parentOf(path));
        this.deps.log.info(`${path}: kept ${staged.bytesWritten} of ${staged.target.size} bytes to resume later`);
        return;
      } catch (err) {
        this.deps.log.warn('PARTIAL_FAILED', `${path}: cannot keep the unfinished transfer (${describeError(err)}); it will start over`);
      }
    }
    await this.discard(path, staged);
  }

  /**
   * Drops a staged file. Its temporary name came and went in the parent directory, which changed
   * that directory's mtime: put back the recorded one, as a commit does after its renames.
   */
  private async discard(path: string, staged: StagedFile): Promise<void> {
    await staged.abort();
    await this.restoreDirTime(parentOf(path));
  }

  /** Sets a directory's mtime back to its manifest row (the source's), if it has a live one. */
  private async restoreDirTime(dir: string): Promise<void> {
    if (dir === '') return;
    const row = this.deps.manifest.get(dir);
    if (row?.kind !== 'dir' || row.deletedAt !== null) return;
    // Swapped for a symlink at this moment: its time on disk (changed by our renames) may now differ
    // from its row, which the agent would never see; a damaged row makes the next reconciliation send it again.
    if ((await this.deps.writer.setDirTime(dir, row.mtimeMs)) === 'unreachable') this.deps.manifest.markDamaged(dir);
  }

  private failFrom(op: number, path: string, err: unknown): void {
    const code = err instanceof WarmsyncError ? err.code : ((err as NodeJS.ErrnoException).code ?? 'APPLY_FAILED');
    this.fail(op, code, `${path}: ${describeError(err)}`);
  }

  private fail(op: number, code: string, message: string): void {
    this.deps.log.warn(code, message);
    this.counters.failed++;
    this.deps.observer?.failed();
    this.results.push({ op, ok: false, code: /^[A-Z_]+$/.test(code) ? code : 'APPLY_FAILED', message: message.slice(0, 1024) });
  }

  private sendResults(): void {
    if (this.results.length === 0) return;
    for (const msg of resultBatches(this.results.splice(0))) this.deps.conn.send(msg);
  }

  private sendCredit(): void {
    if (this.credit === 0) return;
    this.deps.conn.send({ type: 'credit', bytes: this.credit });
    this.credit = 0;
  }
}

/** A write that failed for lack of space: SQLite's SQLITE_FULL, or ENOSPC from the file system. */
function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC';
}
