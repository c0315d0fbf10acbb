import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, open, readFile, rename, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { UsageError, WarmsyncError, describeError } from '../errors.js';
import { compareLsn, describeSkew, parseLsn, skewInForce } from '../gate/dbposition.js';
import { chooseTarget, describePlan, settingLine, renderAutoConf, type FailoverPlan, type Setting } from '../gate/failover.js';
import { checkPostgresUrl, classifyPgError, redactUrl, withPg } from '../gate/pg.js';
import { DEFAULT_SKEW_MS } from '../gate/policy.js';
import { standbyLack } from '../gate/standby-root.js';
import { runningReceiver } from '../receiver/lock.js';
import type { Logger } from '../log.js';
import { formatTime } from '../time.js';
import { parseFlags, parseInteger, required } from './args.js';
import { ROOT_HELP, ROOT_OPTIONS, print, withRoot } from './gate-options.js';

export const FAILOVER_HELP = `Usage: warmsync failover --root DIR [--apply --pgdata DIR] [--standby URL] [options]

The W-bounded failover of a PostgreSQL standby (docs/failover.md). Reads from this standby's
manifest the watermark W and the recovery target it covers, and prints the settings that
recover the standby DB exactly up to that target, without its apply delay, and then promote it:
  LSN target (the agent ran with --db-primary): recovery_target_lsn = the newest WAL position
    the agent read from the primary at a moment W covers; no clocks compared
  time target (otherwise): recovery_target_time = W - skew
  both: recovery_target_inclusive = off, recovery_target_action = promote,
    recovery_min_apply_delay = 0
A DB recovered no further than that references only binaries this standby holds.

With --apply it writes them into PGDATA/postgresql.auto.conf (as the data dir's owner) and
restarts the standby with pg_ctl. With --standby it first pauses the standby's replay and
refuses if it has already replayed past the target, and afterwards waits until the DB is promoted and prints its last
transaction time T, for \`warmsync promote --time T\`. If the DB waits for WAL that will never
come (the target lies beyond the last WAL it received), it is promoted where it stands after
10 s without replay progress: everything it replayed is before the target.

Options:
  --target KIND        auto (default): the LSN target when one is recorded (and, with --standby,
                       the standby is the same cluster), else the time target; lsn: the LSN
                       target or fail (NO_LSN_TARGET); time: the time target
  --skew MS            for the time target. Default: the clock offset bound the agent measured
                       against the DB primary (--db-primary), else the skew the receiver
                       recorded, else ${DEFAULT_SKEW_MS}
  --apply              write the settings and restart the standby (needs --pgdata)
  --pgdata DIR         the standby's data directory
  --pg-bin DIR         where pg_ctl is (default: /usr/lib/postgresql/MAJOR/bin for the data
                       dir's PG_VERSION, else pg_ctl on PATH)
  --standby URL        the standby DB (postgres://USER@HOST:PORT/DB): paused and checked
                       before, waited for after
  --timeout SEC        how long to wait for the promotion (default 300)
${ROOT_HELP}
  -h, --help           this text`;

/** Replay standing still this long while in recovery means the WAL it waits for will not come. */
const STALL_MS = 10_000;
const POLL_MS = 500;

interface StandbyState { inRecovery: boolean; replayedMs: number | null; replayLsn: string | null }

async function standbyState(url: string): Promise<StandbyState> {
  return withPg(url, 10_000, async (client) => {
    const row = (await client.query<{ rec: boolean; ms: string | null; lsn: string | null }>(
      `SELECT pg_is_in_recovery() AS rec, floor(extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::bigint::text AS ms,
        pg_last_wal_replay_lsn()::text AS lsn`,
    )).rows[0];
    if (row === undefined) throw new Error('no row returned');
    return { inRecovery: row.rec, replayedMs: row.ms === null ? null : Number(row.ms), replayLsn: row.lsn };
  });
}

/**
 * Pauses the standby's replay (it keeps replaying after the primary died, one apply delay behind,
 * and must not pass the target while we work), then refuses when it already replayed a commit at
 * or after the target: it cannot go back.
 */
async function pauseAndCheck(url: string, plan: FailoverPlan, log: Logger): Promise<void> {
  let state: StandbyState;
  try {
    state = await standbyState(url);
    if (state.inRecovery) {
      await withPg(url, 10_000, (client) => client.query('SELECT pg_wal_replay_pause()'));
      state = await standbyState(url);
      log.info(`standby replay paused at ${state.replayLsn ?? '?'}; last replayed commit ${formatTime(state.replayedMs)}`);
    }
  } catch (err) {
    log.warn(classifyPgError(err, `--standby ${redactUrl(url)}`).code, `cannot check the standby before applying (${describeError(err)}); PostgreSQL itself refuses a target before its consistent point`);
    return;
  }
  if (!state.inRecovery) throw new WarmsyncError('PG_NOT_STANDBY', `--standby ${redactUrl(url)} is not in recovery: already promoted, or not the standby`);
  const advice = 'it may reference binaries this standby lacks. Raise recovery_min_apply_delay; to promote it anyway, use warmsync promote --references';
  if (plan.recoveryTargetLsn !== null) {
    if (state.replayLsn !== null && parseLsn(state.replayLsn) !== null && compareLsn(state.replayLsn, plan.recoveryTargetLsn) > 0) {
      throw new WarmsyncError('REPLAYED_PAST_TARGET', `the standby DB already replayed WAL up to ${state.replayLsn}, past the recovery target ${plan.recoveryTargetLsn}: ${advice}`);
    }
  } else if (state.replayedMs !== null && state.replayedMs >= plan.recoveryTarget) {
    throw new WarmsyncError('REPLAYED_PAST_TARGET', `the standby DB already replayed a commit at ${formatTime(state.replayedMs)}, at or after the recovery target ${formatTime(plan.recoveryTarget)}: ${advice}`);
  }
}

/** The standby's system identifier (the cluster it replicates), or null when it cannot be read. */
async function standbySystem(url: string): Promise<string | null> {
  return withPg(url, 10_000, async (client) => (await client.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0]?.id ?? null)
    .catch(() => null);
}

/** Writes postgresql.auto.conf atomically, owned like the data dir (PostgreSQL must read it). */
async function writeAutoConf(pgdata: string, settings: readonly Setting[]): Promise<void> {
  const file = join(pgdata, 'postgresql.auto.conf');
  const owner = await stat(pgdata);
  const text = renderAutoConf(await readFile(file, 'utf8').catch(() => ''), settings);
  const temp = `${file}.warmsync-tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (process.getuid?.() === 0) await chown(temp, owner.uid, owner.gid);
  await rename(temp, file);
}

async function pgCtl(pgdata: string, binDir: string | undefined): Promise<string> {
  if (binDir !== undefined) return join(binDir, 'pg_ctl');
  const major = (await readFile(join(pgdata, 'PG_VERSION'), 'utf8')).trim();
  const packaged = `/usr/lib/postgresql/${major}/bin/pg_ctl`;
  return existsSync(packaged) ? packaged : 'pg_ctl';
}

/** pg_ctl restart (start, when stopped), as the data dir's owner when we are root (the server refuses to run as root). */
async function restart(pgdata: string, binDir: string | undefined): Promise<void> {
  const owner = await stat(pgdata);
  const asOwner = process.getuid?.() === 0 && owner.uid !== 0 ? { uid: owner.uid, gid: owner.gid } : {};
  const ctl = await pgCtl(pgdata, binDir);
  // A stopped server is started, not "restarted": pg_ctl restart reuses the command line in
  // postmaster.opts, which in a copied or moved data dir names the old one (it starts that instead).
  const running = existsSync(join(pgdata, 'postmaster.pid'));
  const args = [running ? 'restart' : 'start', '-D', pgdata, ...(running ? ['-m', 'fast'] : []), '-w', '-t', '120', '-l', join(pgdata, 'warmsync-failover.log')];
  const out = await new Promise<{ code: number | null; text: string }>((done, fail) => {
    const child = spawn(ctl, args, { ...asOwner, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, text }));
  }).catch((err: unknown) => {
    throw new WarmsyncError('PG_CTL_FAILED', `cannot run ${ctl}: ${describeError(err)}; give --pg-bin`);
  });
  if (out.code !== 0) {
    const logFile = join(pgdata, 'warmsync-failover.log');
    const serverSaid = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').filter((l) => /FATAL|PANIC|ERROR/.test(l)).slice(-2);
    throw new WarmsyncError('PG_CTL_FAILED', `${ctl} ${args[0] ?? "restart"} exited ${out.code}: ${[...serverSaid, out.text.trim().split('\n').slice(-1)[0] ?? ''].join(' / ')} (server log: ${logFile})`);
  }
}

/**
 * Waits until the standby is out of recovery and returns its last replayed commit time. When replay
 * stands still in recovery, the WAL up to the target is not there (the primary is gone, or was idle
 * after the target): everything replayed is before the target, and it is promoted there (endAtStall).
 */
async function waitForPromotion(url: string, plan: FailoverPlan, timeoutMs: number, log: Logger, pgdata: string, binDir: string | undefined): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  let lastLsn: string | null = null;
  let still = Date.now();
  let ended = false;
  let lastError = '';
  while (Date.now() < deadline) {
    try {
      const state = await standbyState(url);
      if (!state.inRecovery) return state.replayedMs;
      if (state.replayLsn !== lastLsn) {
        lastLsn = state.replayLsn;
        still = Date.now();
      } else if (!ended && Date.now() - still >= STALL_MS && state.replayLsn !== null) {
        log.info(`replay has stood at ${state.replayLsn} (last commit ${formatTime(state.replayedMs)}) for ${STALL_MS / 1000} s, before the target ${plan.recoveryTargetLsn ?? formatTime(plan.recoveryTarget)}: promoting there`);
        await endAtStall(url, pgdata, binDir, state.replayLsn, log);
        ended = true;
      }
    } catch (err) {
      if (err instanceof WarmsyncError && err.code === 'PROMOTE_STALLED') throw err;
      lastError = describeError(err); // restarting: try again
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new WarmsyncError('PROMOTE_TIMEOUT', `the standby DB at ${redactUrl(url)} was not promoted within ${timeoutMs / 1000} s${lastError ? ` (last error: ${lastError})` : ''}; see its server log`);
}

/**
 * Promotes a standby whose replay stands at `at`, short of its recovery target. PostgreSQL refuses
 * to promote before a configured target is reached ("recovery ended before configured recovery
 * target was reached", and the server stops), and a target is reached only by reading a record at
 * or past it, which will not come. So: check with pg_waldump that the local WAL holds no record
 * at `at` (replay stood still at its end, not for another reason), then restart with no recovery
 * target and no WAL source (primary_conninfo and restore_command emptied: nothing can arrive from
 * past the target), wait until replay stands at `at` again, and promote.
 */
async function endAtStall(url: string, pgdata: string, binDir: string | undefined, at: string, log: Logger): Promise<void> {
  const waldump = join(dirname(await pgCtl(pgdata, binDir)), 'pg_waldump');
  const timeline = await withPg(url, 10_000, async (client) => (await client.query<{ tli: number }>('SELECT timeline_id AS tli FROM pg_control_checkpoint()')).rows[0]?.tli ?? 1)
    .catch(() => 1);
  const dump = spawnSync(waldump, ['-p', join(pgdata, 'pg_wal'), '-t', String(timeline), '-s', at, '-n', '1'], { encoding: 'utf8' });
  if (dump.error === undefined && dump.status === 0) {
    throw new WarmsyncError('PROMOTE_STALLED', `replay stands at ${at} in recovery, yet the standby's WAL holds a record there (${dump.stdout.trim().split('\n')[0] ?? ''}): it is not at the end of its WAL, so it is not promoted; see its server log`);
  }
  await writeAutoConf(pgdata, [['recovery_min_apply_delay', '0'], ['primary_conninfo', ''], ['restore_command', '']]);
  await restart(pgdata, binDir);
  let last: string | null = null;
  let since = Date.now();
  for (;;) {
    const state = await standbyState(url).catch(() => null);
    if (state !== null && !state.inRecovery) return;
    if (state !== null && state.replayLsn !== null) {
      if (parseLsn(state.replayLsn) !== null && compareLsn(state.replayLsn, at) > 0) {
        throw new WarmsyncError('PROMOTE_STALLED', `after the restart without a target, replay went past ${at} to ${state.replayLsn}: not promoted; see its server log`);
      }
      if (state.replayLsn !== last) {
        last = state.replayLsn;
        since = Date.now();
      } else if (state.replayLsn === at && Date.now() - since >= 1000) {
        await withPg(url, 60_000, (client) => client.query('SELECT pg_promote(true, 60)'));
        log.info(`promoted at ${at}`);
        return;
      }
    }
    if (Date.now() - since > 60_000) throw new WarmsyncError('PROMOTE_STALLED', `after the restart without a target, replay did not come back to ${at} within 60 s (it stands at ${last ?? '?'}); see its server log`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

export async function failoverCommand(argv: string[]): Promise<number> {
  const flags = parseFlags('failover', argv, {
    ...ROOT_OPTIONS, skew: { type: 'string' }, apply: { type: 'boolean' }, pgdata: { type: 'string' }, 'pg-bin': { type: 'string' },
    standby: { type: 'string' }, timeout: { type: 'string' }, target: { type: 'string' },
  }, FAILOVER_HELP);
  if (flags === null) return 0;
  const pgdata = flags.apply ? resolve(required('failover --apply', 'pgdata', flags.pgdata)) : undefined;
  if (flags.standby !== undefined) checkPostgresUrl('standby', flags.standby);
  const timeoutMs = parseInteger('timeout', flags.timeout, 300, 1, 86_400) * 1000;
  const choice = flags.target ?? 'auto';
  if (choice !== 'auto' && choice !== 'lsn' && choice !== 'time') throw new UsageError('BAD_FLAG', `failover: --target must be auto, lsn or time, not ${JSON.stringify(choice)}`);
  const flagSkew = flags.skew === undefined ? null : parseInteger('skew', flags.skew, DEFAULT_SKEW_MS, 0, 86_400_000);
  return withRoot('failover', flags, async ({ root, stateDir, manifest, log }) => {
    const lack = standbyLack(root, manifest, runningReceiver(stateDir.abs) !== null);
    const rootLost = lack?.kind === 'root' ? lack.detail : null;
    if (rootLost !== null) throw new WarmsyncError('STANDBY_ROOT_LOST', `the standby root ${rootLost}: no recovery target is covered by files a failover would find`);
    if (lack?.kind === 'verify') {
      log.warn('STANDBY_DAMAGED', `verify found ${lack.files} file(s) missing or corrupt here at ${formatTime(lack.at)}, and no agent pass has sent them again: the promoted DB may reference them`);
    }
    const watermark = manifest.getNumber('watermark');
    const skew = skewInForce({ flagMs: flagSkew, measured: manifest.dbClock(), watermark, configuredMs: manifest.getNumber('skewMs'), defaultMs: DEFAULT_SKEW_MS });
    const position = manifest.dbPosition();
    const system = flags.standby !== undefined && position !== null && choice !== 'time' ? await standbySystem(flags.standby) : null;
    const { plan, note } = chooseTarget({ choice, watermark, skewMs: skew.skewMs, position, standbySystem: system });
    if (watermark === null) throw new WarmsyncError('NO_WATERMARK', 'no watermark yet: no agent has completed a sync to this standby, so no recovery target is covered');
    if (plan === null) throw new WarmsyncError('NO_LSN_TARGET', `--target lsn: ${note ?? 'no WAL position recorded'}; use --target time (or auto)`);
    if (note !== null) {
      if (note.includes('not the same cluster')) log.warn('DB_SYSTEM_MISMATCH', `${note}; using the time target`);
      else log.info(`${note}; using the time target`);
    }
    if (manifest.getNumber('agentConnected') === 1) log.warn('AGENT_CONNECTED', 'an agent is still connected: the watermark may still move; this target is as of now');
    const conf = plan.settings.map(settingLine);
    const summary = plan.target === 'lsn' ? describePlan(plan) : `${describePlan(plan)} (skew ${describeSkew(skew)})`;
    const json = { ...plan, skewSource: skew.source, settings: Object.fromEntries(plan.settings) };
    if (pgdata === undefined) {
      print(flags.json, { ...json, applied: false, promotedAt: null },
        [summary, '', '# postgresql.auto.conf (or ALTER SYSTEM SET ...), then restart the standby:', ...conf].join('\n'));
      return 0;
    }
    if (!existsSync(join(pgdata, 'standby.signal')) && !existsSync(join(pgdata, 'recovery.signal'))) {
      throw new WarmsyncError('NOT_STANDBY_DATA', `${pgdata} has no standby.signal or recovery.signal: not a standby's data directory (or already promoted)`);
    }
    if (flags.standby !== undefined) await pauseAndCheck(flags.standby, plan, log);
    await writeAutoConf(pgdata, plan.settings);
    log.info(`wrote ${conf.length} settings to ${join(pgdata, 'postgresql.auto.conf')}; restarting the standby`);
    await restart(pgdata, flags['pg-bin']);
    const promotedAt = flags.standby === undefined ? null : await waitForPromotion(flags.standby, plan, timeoutMs, log, pgdata, flags['pg-bin']);
    const next = promotedAt === null ? '' : `promoted; its last transaction: ${formatTime(promotedAt)}. Next: warmsync promote --root ${resolve(flags.root ?? '')} --time ${promotedAt}`;
    print(flags.json, { ...json, applied: true, promotedAt },
      [summary, ...conf, `applied to ${pgdata} and restarted`, ...(next ? [next] : [])].join('\n'));
    return 0;
  });
}
