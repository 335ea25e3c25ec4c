/**
 * The checkpoint: where the stream stands, the ids recently written, and which object keys are
 * reserved but not yet committed. One JSON file, replaced atomically (write, fsync, rename,
 * fsync the directory), guarded by a lock file so two processes never run on one state.
 *
 * Delivery: the sink calls `reserve` before it uploads a byte to a new key, and `commit` only
 * after every object of an epoch is complete. A crash between the two leaves the key in
 * `inflight`; the next run replays from the saved position and rewrites that same key, so each
 * event ends up in exactly one object.
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { describeError, StateError } from './errors.js';
import type { Logger } from './log.js';
import type { DedupeWindow } from './transforms/dedupe.js';
import type { EpochCommit, ObjectKind, SinkJournal } from './sinks/object-sink.js';
import { hourPath, parseRfc3339 } from './time.js';
import { samePosition, type Position } from './types.js';

export interface RunSummary {
  /** When the run started, ISO 8601 UTC. */
  startedAt: string;
  /** When the run ended, ISO 8601 UTC. */
  finishedAt: string;
  /** `ok`: finished; `stopped`: ended by the graceful stop signal; `error`: failed or was aborted. */
  outcome: 'ok' | 'error' | 'stopped';
  /** Records received and committed in the run: events + quarantined + duplicates. */
  fetched: number;
  /** Events written to committed objects in the run. */
  events: number;
  /** Records written to quarantine objects in the run. */
  quarantined: number;
  /** Events dropped by dedupe in the run. */
  duplicates: number;
  /** Objects completed and committed in the run. */
  objects: number;
  /** The error's message when the run failed; absent otherwise. */
  error?: string;
}

export interface CheckpointState {
  /** Format version; always 1. */
  version: 1;
  /** Random id of this state, part of every object name, so two states never collide. */
  stateId: string;
  /** Organization the state belongs to (`replay` for a replay state); a run for another org refuses it. */
  orgId: string;
  /** Where the collection began (epoch ms): the fallback if a cursor is rejected before any event. */
  origin: number;
  /** Where the collector resumes reading the API. Replay leaves it as it is. */
  position: Position;
  /**
   * When `position` last moved (or was set, for a new state), ISO 8601 UTC: the cursor's age in
   * `status`. Absent in files written before it existed, until a commit moves the position.
   */
  positionMovedAt?: string;
  /**
   * When a commit last wrote events (quarantine-only commits do not count), ISO 8601 UTC: the
   * drop-off alarm's stand-in for the last write after a restart. Absent until one has.
   */
  lastEventsWrittenAt?: string;
  /** processedAt of the newest event in a complete object. */
  lastProcessedAt?: string;
  /** Object names handed out so far. */
  seq: number;
  /** Ids of the most recently written events, oldest first (the dedupe window). */
  dedupe: string[];
  /** Keys reserved but not committed: a crashed run may have completed them. */
  inflight: Partial<Record<ObjectKind, string>>;
  /** `fetched` = records received = events + quarantined + duplicates (absent in older files). */
  totals: { fetched?: number; events: number; quarantined: number; duplicates: number; objects: number };
  /** When the file was last saved, ISO 8601 UTC. */
  updatedAt: string;
  /** Summary of the latest run that ended (ok, stopped or failed); absent until one has. */
  lastRun?: RunSummary;
  /**
   * Replay progress by input name (src/replay.ts): units handed to complete objects, and whether
   * the input was read to its end. Only replay writes it; `position` is then left as it is.
   */
  replay?: Record<string, { records: number; done: boolean }>;
}

export function newState(orgId: string, from: number): CheckpointState {
  return {
    version: 1,
    stateId: randomBytes(4).toString('hex'),
    orgId,
    origin: from,
    position: { from, skip: 0 },
    seq: 0,
    dedupe: [],
    inflight: {},
    totals: { fetched: 0, events: 0, quarantined: 0, duplicates: 0, objects: 0 },
    updatedAt: new Date().toISOString(),
    positionMovedAt: new Date().toISOString(),
  };
}

/**
 * Whether anything was ever committed past the start: a cursor, records of the first page, or
 * records counted. Until then the state does not pin where a collection starts.
 */
export function hasCollected(state: CheckpointState): boolean {
  const p = state.position;
  return p.cursor !== undefined || p.skip > 0 || (state.totals.fetched ?? 0) > 0 || state.lastProcessedAt !== undefined;
}

/** Points a state that has collected nothing (see hasCollected) at a new start. Its reserved keys stay, to be rewritten. */
export function startOver(state: CheckpointState, from: number): void {
  if (state.origin === from && state.position.from === from) return;
  state.origin = from;
  state.position = { from, skip: 0 };
  state.positionMovedAt = new Date().toISOString();
}

function invalid(path: string, why: string): StateError {
  return new StateError(
    `state file ${path} is unusable (${why}); refusing to start again from zero. ` +
      'Restore it from a backup, or move it aside to re-collect from --from (dedupe cannot then stop duplicates of events already written)',
  );
}

function checkState(path: string, json: unknown): CheckpointState {
  if (typeof json !== 'object' || json === null) throw invalid(path, 'not a JSON object');
  const s = json as Partial<CheckpointState>;
  if (s.version !== 1) throw invalid(path, `unknown version ${JSON.stringify(s.version)}`);
  if (typeof s.stateId !== 'string' || !/^[0-9a-f]{8}$/.test(s.stateId)) throw invalid(path, 'bad stateId');
  if (typeof s.orgId !== 'string') throw invalid(path, 'bad orgId');
  if (typeof s.origin !== 'number') throw invalid(path, 'bad origin');
  const p = s.position;
  if (typeof p !== 'object' || p === null || typeof p.skip !== 'number' || (typeof p.cursor !== 'string' && typeof p.from !== 'number')) {
    throw invalid(path, 'bad position');
  }
  if (typeof s.seq !== 'number' || !Array.isArray(s.dedupe) || !s.dedupe.every((x) => typeof x === 'string')) throw invalid(path, 'bad seq or dedupe');
  if (typeof s.inflight !== 'object' || s.inflight === null) throw invalid(path, 'bad inflight');
  if (typeof s.totals !== 'object' || s.totals === null) throw invalid(path, 'bad totals');
  // Informational times: a bad one is dropped, not a reason to refuse the state.
  for (const k of ['positionMovedAt', 'lastEventsWrittenAt'] as const) {
    if (s[k] !== undefined && (typeof s[k] !== 'string' || !Number.isFinite(Date.parse(s[k])))) delete s[k];
  }
  if (s.replay !== undefined) {
    const r = s.replay as unknown;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw invalid(path, 'bad replay');
    for (const v of Object.values(r)) {
      const e = v as { records?: unknown; done?: unknown };
      if (typeof e !== 'object' || e === null || !Number.isSafeInteger(e.records) || (e.records as number) < 0 || typeof e.done !== 'boolean') throw invalid(path, 'bad replay');
    }
  }
  // Files written before `fetched` was counted: every record then was one of the three.
  s.totals.fetched ??= s.totals.events + s.totals.quarantined + s.totals.duplicates;
  return s as CheckpointState;
}

/** Reads the state file. Undefined if it does not exist; StateError if it is corrupt. */
export async function loadState(path: string): Promise<CheckpointState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateError(`cannot read state file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalid(path, text.length === 0 ? 'empty file' : 'not valid JSON, perhaps truncated');
  }
  return checkState(path, json);
}

let saveCount = 0;

/**
 * The JSON of each dedupe window saved, by array: a commit makes a new snapshot array, and the
 * saves until the next commit (object reservations, the run summary) write the same one again.
 * The window is the bulk of the file (100,000 ids ≈ 4 MB), so it is serialised once per commit.
 */
const windowJson = new WeakMap<readonly string[], string>();

/** The state as JSON, with the dedupe window's text reused when it is unchanged. */
function stateJson(state: CheckpointState): string {
  let window = windowJson.get(state.dedupe);
  if (window === undefined) {
    window = JSON.stringify(state.dedupe);
    windowJson.set(state.dedupe, window);
  }
  const { dedupe: _omitted, ...rest } = state;
  return `${JSON.stringify(rest).slice(0, -1)},"dedupe":${window}}`;
}

/** Writes the state atomically: a reader sees the old file or the new one, never a mix. */
export async function saveState(path: string, state: CheckpointState): Promise<void> {
  state.updatedAt = new Date().toISOString();
  const tmp = `${path}.${process.pid}.${++saveCount}.tmp`;
  await mkdir(dirname(resolve(path)), { recursive: true });
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(stateJson(state));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(resolve(path)), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * What /proc says of a process: its state letter and its start time (clock ticks after boot, field
 * 22 of /proc/PID/stat); `gone` when there is no such process; undefined without /proc (not Linux).
 */
function procStat(pid: number): { state: string; startTime: string } | 'gone' | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    return readOrUndefined('/proc/self/stat') === undefined ? undefined : 'gone';
  }
  // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so fields count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
}

/** This process's start time as /proc gives it (see procStat), or '' without /proc. */
function ownStartTime(): string {
  const s = procStat(process.pid);
  return typeof s === 'object' ? s.startTime : '';
}

/**
 * Whether the process that wrote a lock still runs. A zombie (killed, not yet reaped by its
 * parent) does not; nor does another process that has the same pid now, told by its start time
 * when the lock recorded one (pids are reused, and a container's collector is often pid 1 or 7
 * after every restart).
 */
function holderAlive(pid: number, startTime: string): boolean {
  const s = procStat(pid);
  if (s === 'gone') return false;
  if (s !== undefined) return s.state !== 'Z' && s.state !== 'X' && (startTime === '' || s.startTime === startTime);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid, token and start time of a lock file's content (`<pid> <token> <start time>`); NaN pid when unreadable. */
function parseLock(content: string): { pid: number; token: string; startTime: string } {
  const [pid, token, startTime] = content.trim().split(/\s+/);
  return { pid: Number(pid), token: token ?? '', startTime: startTime ?? '' };
}

/** Who holds `<state>.lock`, if anyone: its pid, and whether that process is running. */
export function lockHolder(statePath: string): { pid: number; running: boolean } | undefined {
  const seen = readOrUndefined(`${statePath}.lock`);
  if (seen === undefined) return undefined;
  const { pid, token, startTime } = parseLock(seen);
  if (!Number.isInteger(pid) || pid <= 0) return { pid: 0, running: false };
  return { pid, running: holderAlive(pid, startTime) && !(pid === process.pid && !heldTokens.has(token)) };
}

/** A held lock on a state file. */
export interface StateLock {
  /** Throws StateError if another process has taken the lock since (it was judged stale). */
  verify(): void;
  release(): void;
}

/**
 * Takes `<state>.lock`, holding `<pid> <token> <start time>`. Creation is atomic with its content
 * (written to a private file, then hard-linked into place), so nobody ever reads a half-written
 * lock. A lock whose process is gone (killed with SIGKILL, a zombie not yet reaped, or its pid
 * now another process's: see holderAlive) is taken over by renaming it aside and checking that
 * what was moved is the stale lock that was read; a live lock moved by mistake in a race is put
 * back. A holder re-reads its lock before every checkpoint write (`verify`), so even a lost race
 * stops a process before it writes.
 */
export function acquireLock(statePath: string): StateLock {
  const lockPath = `${statePath}.lock`;
  const token = randomBytes(8).toString('hex');
  const mine = `${process.pid} ${token} ${ownStartTime()}`.trimEnd() + '\n';
  const tmp = `${lockPath}.${process.pid}.${token}`;
  const fail = (err: unknown): never => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new StateError(`cannot create lock file ${lockPath}: its directory does not exist`);
    throw new StateError(`cannot create lock file ${lockPath}: ${(err as Error).message}`);
  };
  try {
    writeFileSync(tmp, mine, { mode: 0o600 });
  } catch (err) {
    fail(err);
  }
  try {
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        linkSync(tmp, lockPath);
        return lockHandle(lockPath, mine);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') fail(err);
      }
      const seen = readOrUndefined(lockPath);
      if (seen === undefined) continue; // released meanwhile
      const { pid: holder, token: holderToken, startTime: holderStart } = parseLock(seen);
      // Our own pid with a token this process does not hold: a previous process that had the
      // same pid (a container's PID 1 after a kill) left it. Stale.
      const ownButNotHeld = holder === process.pid && !heldTokens.has(holderToken);
      if (Number.isInteger(holder) && holder > 0 && !ownButNotHeld && holderAlive(holder, holderStart)) {
        throw new StateError(
          `state ${statePath} is in use by ${holder === process.pid ? 'another run in this process' : `another process (pid ${holder})`}; ` +
            `two runs on one state would write duplicates. If no such run exists, delete ${lockPath}`,
        );
      }
      // Stale. Move it aside atomically, then make sure it was the stale one that moved.
      const aside = `${lockPath}.stale.${process.pid}.${token}`;
      try {
        renameSync(lockPath, aside);
      } catch {
        continue; // someone else moved or released it
      }
      const moved = readOrUndefined(aside);
      if (moved !== seen) {
        // A live lock was taken between the read and the rename: put it back, never replace it.
        try {
          linkSync(aside, lockPath);
        } catch {
          // a third process took the lock meanwhile; the displaced holder's verify() stops it
        }
      }
      rmQuiet(aside);
    }
    throw new StateError(`could not take the lock ${lockPath}: it keeps changing hands`);
  } finally {
    rmQuiet(tmp);
  }
}

/** Tokens of the locks this process holds (several runs in one process, on different states). */
const heldTokens = new Set<string>();

function lockHandle(lockPath: string, mine: string): StateLock {
  let released = false;
  const { token } = parseLock(mine);
  heldTokens.add(token);
  return {
    verify() {
      if (released) throw new StateError(`the lock ${lockPath} was released`);
      if (readOrUndefined(lockPath) !== mine) {
        throw new StateError(`the lock ${lockPath} was taken over by another process; stopping before writing the checkpoint`);
      }
    },
    release() {
      if (released) return;
      released = true;
      heldTokens.delete(token);
      if (readOrUndefined(lockPath) === mine) rmQuiet(lockPath);
    },
  };
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function rmQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

export interface StateJournalOptions {
  path: string;
  prefix: string;
  quarantinePrefix: string;
  /** The dedupe stage's window; commits save its snapshot. */
  window?: DedupeWindow;
  /**
   * Called after an epoch's objects are complete and before the checkpoint is written: the
   * crash window exactly-once delivery must survive. Tests use it to kill the process there.
   */
  beforeCommit?: (commit: EpochCommit) => void;
  /** The lock on the state file, re-checked before every checkpoint write. */
  lock?: StateLock;
  /** Records a committed position in the state. Default: it becomes `state.position` (replay keeps its own, see src/replay.ts). */
  commitPosition?: (state: CheckpointState, position: Position) => void;
}

/** The SinkJournal backed by the state file. */
export class StateJournal implements SinkJournal {
  readonly state: CheckpointState;
  readonly #opts: StateJournalOptions;
  readonly #pending: Partial<Record<ObjectKind, string>>;
  /** Commits and reservations since this journal was made. */
  readonly session = { fetched: 0, events: 0, quarantined: 0, duplicates: 0, objects: 0, keys: [] as string[] };

  constructor(state: CheckpointState, options: StateJournalOptions) {
    this.state = state;
    this.#opts = options;
    this.#pending = { ...state.inflight };
  }

  pendingKeys(): Partial<Record<ObjectKind, string>> {
    return { ...this.#pending };
  }

  async reserve(kind: ObjectKind, hour: number): Promise<string> {
    const s = this.state;
    s.seq++;
    const prefix = kind === 'events' ? this.#opts.prefix : this.#opts.quarantinePrefix;
    const key = `${prefix}${hourPath(hour)}/${s.stateId}-${String(s.seq).padStart(10, '0')}.json.zst`;
    s.inflight[kind] = key;
    this.#opts.lock?.verify();
    await saveState(this.#opts.path, s);
    return key;
  }

  async commit(c: EpochCommit): Promise<void> {
    this.#opts.beforeCommit?.(c);
    const s = this.state;
    if (this.#opts.commitPosition === undefined) {
      if (!samePosition(s.position, c.position)) s.positionMovedAt = new Date().toISOString();
      s.position = c.position;
    } else {
      this.#opts.commitPosition(s, c.position);
    }
    if (c.lastProcessedAt !== undefined && (s.lastProcessedAt === undefined || parseRfc3339(c.lastProcessedAt)! > parseRfc3339(s.lastProcessedAt)!)) {
      s.lastProcessedAt = c.lastProcessedAt;
    }
    const w = this.#opts.window;
    if (w !== undefined && c.dedupeMark !== undefined) {
      w.commit(c.dedupeMark);
      s.dedupe = w.snapshot(c.dedupeMark);
    }
    for (const kind of ['events', 'quarantine'] as const) {
      if (s.inflight[kind] !== undefined && c.keys.includes(s.inflight[kind])) delete s.inflight[kind];
    }
    if (c.events > 0) s.lastEventsWrittenAt = new Date().toISOString();
    s.totals.fetched = (s.totals.fetched ?? 0) + c.fetched;
    s.totals.events += c.events;
    s.totals.quarantined += c.quarantined;
    s.totals.duplicates += c.duplicates;
    s.totals.objects += c.keys.length;
    this.session.fetched += c.fetched;
    this.session.events += c.events;
    this.session.quarantined += c.quarantined;
    this.session.duplicates += c.duplicates;
    this.session.objects += c.keys.length;
    this.session.keys.push(...c.keys);
    this.#opts.lock?.verify();
    await saveState(this.#opts.path, s);
  }
}

/**
 * Records a run's summary in the state and saves it. A failure to save is logged, not thrown: the
 * run's own outcome (or error) is what the caller reports.
 */
export async function saveRunSummary(
  path: string,
  state: CheckpointState,
  lock: StateLock,
  run: Omit<RunSummary, 'error'> & { failure: unknown },
  logger: Logger,
): Promise<void> {
  const { failure, ...rest } = run;
  state.lastRun = {
    startedAt: rest.startedAt,
    finishedAt: rest.finishedAt,
    outcome: rest.outcome,
    fetched: rest.fetched,
    events: rest.events,
    quarantined: rest.quarantined,
    duplicates: rest.duplicates,
    objects: rest.objects,
    ...(failure === undefined ? {} : { error: describeError(failure) }),
  };
  try {
    lock.verify();
    await saveState(path, state);
  } catch (err) {
    logger.error('could not save the run summary', { error: describeError(err) });
  }
}

/** Removes a state file and its lock (tests and the demo). */
export async function removeState(path: string): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.lock`, { force: true });
}
