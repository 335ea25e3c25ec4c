/**
 * atlassian-events: a pull-based Readable over `GET /admin/v1/orgs/{orgId}/events-stream`.
 *
 * Out: Batch (at most one page; pages are cut where `attributes.processedAt` enters a new UTC
 *      hour, so no batch spans two hours), already through validate and normalize-time: each
 *      page is processed by page-process.ts on `pageWorkers` worker threads, and a batch carries
 *      its valid events as finished lines (`packed`), its invalid records in `quarantined`, and
 *      `fetched`. The validate and normalize-time Transforms pass such batches on unchanged.
 *      A batch with no records carries only a new position (the cursor moved, nothing to write).
 * Fetching ahead: while a page is processed, the page its tail names next is already requested
 *      (at most MAX_AHEAD = 4 ahead, one request at a time); it is used only if the full parse
 *      names the same cursor. See #fetchAhead.
 * Memory: up to 1 + MAX_AHEAD pages in flight (each ≤ `pageSize` records, ≤ `maxPageBytes` of
 *      body, plus its lines) and `highWaterMark` batches; one V8 isolate per page worker.
 * Backpressure: the next page is requested only when downstream pulls (`_read`).
 * Errors: 401/403/404 end the stream with AuthError/ForbiddenError/OrgNotFoundError at once (a
 *      404 without Atlassian's error document with ApiError: a wrong --api-url path). A redirect,
 *      or a next page given as a URL on another host, ends it with ForeignLinkError: never followed.
 *      429 is retried for as long as it takes, honouring Retry-After, X-Retry-After and
 *      X-RateLimit-Reset. Requests are paced (rate-pacer.ts): evenly within the `rateLimit`
 *      budget, and held until X-RateLimit-Reset when X-RateLimit-Remaining reaches 0. 5xx, resets, timeouts and malformed pages are retried with exponential
 *      backoff and full jitter, `maxRetries` times, then end the stream with ApiError. A rejected
 *      cursor (400) falls back to `from` = last processedAt − `cursorFallbackOverlapMs`.
 * Stop and destroy: `signal` ends the stream cleanly at the next page boundary (an in-flight
 *      request is abandoned, its page never emitted). destroy() aborts any request first.
 */
import type { Readable } from 'node:stream';
import { GeneratorReadable } from './generator-readable.js';
import { Agent, request, type Dispatcher } from 'undici';
import { systemClock, type Clock } from '../clock.js';
import {
  AbortError,
  ApiError,
  AuthError,
  ConfigError,
  ForbiddenError,
  ForeignLinkError,
  InvalidCursorError,
  OrgNotFoundError,
} from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { PipelineMetrics } from '../metrics.js';
import { hourOf, parseRfc3339 } from '../time.js';
import { foreignOrigin, guessNextCursor, HOUR_UNKNOWN, type ProcessedPage } from './page-process.js';
import { PageProcessor } from './page-workers.js';
import { samePosition, type Batch, type PollEnd, type Position, type QuarantineRecord } from '../types.js';
import { DEFAULT_RATE_BUDGET, header, parseRateLimitReset, RatePacer, type Headers, type RateBudget } from './rate-pacer.js';

export interface AtlassianEventsOptions {
  /** API base URL (an origin, or a gateway's origin and path prefix). Default `https://api.atlassian.com`. The key is only ever sent here. */
  apiUrl?: string;
  /** Atlassian organization id, put in the request path (`/admin/v1/orgs/{orgId}/events-stream`). */
  orgId: string;
  /** Organization API key, sent as a bearer token. Never logged. */
  apiKey: string;
  /** Where to start: a saved position, or `{from: epochMs, skip: 0}` on the first run. */
  start: Position;
  /** processedAt (RFC 3339) of the last event already handled, for the invalid-cursor fallback. */
  lastProcessedAt?: string;
  /**
   * Where the collection began (epoch ms): the fallback when a cursor is rejected before any
   * event with a processedAt was handled. Default: `start.from`, else 0.
   */
  fallbackFrom?: number;
  /** `limit` asked of the API. Default 500 (the API's maximum). */
  pageSize?: number;
  /** Keep polling every `intervalMs` after catching up (true) or end the stream (false). Default false. */
  follow?: boolean;
  /** Pause between polls when following. Default 300,000 (5 minutes). */
  intervalMs?: number;
  /** How far before the last processedAt to restart when a cursor is rejected. Default 600,000 (10 min). */
  cursorFallbackOverlapMs?: number;
  /** Per-request timeout (headers and body). Default 30,000. */
  requestTimeoutMs?: number;
  /** Retries of a page after 5xx, reset, timeout or malformed body. Default 8. 429s do not count. */
  maxRetries?: number;
  /** First backoff step. Default 500 ms. */
  backoffBaseMs?: number;
  /** Longest backoff step. Default 60,000 ms. */
  backoffCapMs?: number;
  /**
   * Request budget, spread evenly: at most `requests` starts per `windowMs`. Default 50 per
   * minute (events-stream's limit). `false`: no budget of its own; X-RateLimit-Remaining/-Reset
   * and 429s are honoured either way.
   */
  rateLimit?: RateBudget | false;
  /** Largest response body read. Default 64 MiB. */
  maxPageBytes?: number;
  /** Ends the stream cleanly (not an error) at the next safe point. */
  signal?: AbortSignal;
  /** Batches buffered ahead of downstream. Default 1. */
  highWaterMark?: number;
  /**
   * Worker threads that parse, validate and normalise pages (page-process.ts), keeping that JSON
   * work off the main thread; pages fetched ahead (see #fetchAhead) are processed side by side.
   * 0: on the main thread. Default 2. Each worker is a V8 isolate of its own (some 30–40 MB).
   */
  pageWorkers?: number;
}

export interface AtlassianEventsDeps {
  /** HTTP dispatcher. Default: a keep-alive Agent owned (and closed) by the source. */
  dispatcher?: Dispatcher;
  /** Time source for waits, pacing and timestamps. Default: the system clock. */
  clock?: Clock;
  /** Uniform [0,1) for jitter. Default Math.random. */
  random?: () => number;
  /** Where retries, rate-limit waits and cursor fallbacks are logged. Default: no logging. */
  logger?: Logger;
  /** Metrics and health state to update (requests, progress). Default: none. */
  metrics?: PipelineMetrics;
}

export { parsePage, type Page } from './page-process.js';

type Outcome =
  | { ok: true; page: ProcessedPage }
  | { ok: false; retry: 'rate_limit'; waitMs: number | undefined }
  | { ok: false; retry: 'server_error' | 'network' | 'timeout' | 'malformed'; detail: string }
  | { ok: false; fatal: Error };

/**
 * Milliseconds to wait from rate-limit headers, or undefined if none is usable.
 * `Retry-After` and `X-Retry-After` answer this request and win; `X-RateLimit-Reset` (when the
 * whole window resets, often rounded to the minute) is used only when neither is present.
 */
export function retryHintMs(headers: Headers, now: number): number | undefined {
  const waits: number[] = [];
  for (const name of ['retry-after', 'x-retry-after']) {
    const v = header(headers, name);
    if (v === undefined || v === '') continue;
    if (/^\d+(\.\d+)?$/.test(v)) waits.push(Number(v) * 1000);
    else {
      const at = Date.parse(v);
      if (Number.isFinite(at)) waits.push(at - now);
    }
  }
  if (waits.length > 0) return Math.max(0, ...waits);
  const at = parseRateLimitReset(header(headers, 'x-ratelimit-reset'), now);
  return at === undefined ? undefined : Math.max(0, at - now);
}

const MIN_RATE_LIMIT_WAIT_MS = 1000;
const MAX_RATE_LIMIT_WAIT_MS = 24 * 3_600_000;

/**
 * A processedAt further ahead of this machine's clock than this is not believed for the
 * checkpoint's lastProcessedAt: the invalid-cursor fallback restarts from it, and a bogus future
 * value would skip every event in between.
 */
const MAX_FUTURE_SKEW_MS = 24 * 3_600_000;

/** A response body over `maxPageBytes`: a page refused as malformed, not a network failure. */
class BodyTooLargeError extends Error {}

async function readBody(body: Dispatcher.ResponseData['body'], max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      body.destroy();
      throw new BodyTooLargeError(`response body larger than ${max} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  // One ArrayBuffer of its own (not Buffer's shared pool), so it can move to a page worker.
  const out = Buffer.allocUnsafeSlow(size);
  let at = 0;
  for (const c of chunks) at += c.copy(out, at);
  return out;
}

/**
 * The API URL, or ConfigError: https, or plain http to this machine only (the bearer token must
 * not cross a network in clear text). A path is kept, as the prefix of a gateway in front of the
 * API (`https://gateway.example.com/atlassian` → `…/atlassian/admin/v1/orgs/…`).
 */
export function checkApiUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--api-url is not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`--api-url must be https, got ${url.protocol}`);
  // Never echoed: a password here is a secret.
  if (url.username !== '' || url.password !== '') throw new ConfigError('--api-url must not hold a user name or password: the API key goes in ATLASSIAN_API_KEY');
  if (url.search !== '' || url.hash !== '') throw new ConfigError(`--api-url must be the API's base URL, without a query or fragment (got ${JSON.stringify(url.origin + url.pathname)}…)`);
  if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
    throw new ConfigError(`--api-url ${url.origin} would send the API key unencrypted: use https (plain http is allowed only for 127.0.0.1, ::1 and localhost)`);
  }
  return url;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/** A page fetched and processed, and the position it was fetched at. */
interface Fetched {
  page: ProcessedPage;
  pos: Position;
}

/** A page being fetched ahead of its turn. */
interface Ahead {
  pos: Position;
  abort: AbortController;
  promise: Promise<Outcome | undefined>;
}

/** Pages fetched ahead of the one being processed. */
export const MAX_AHEAD = 4;

class EventsStreamReadable extends GeneratorReadable {
  readonly #opts: Required<Omit<AtlassianEventsOptions, 'signal' | 'lastProcessedAt' | 'rateLimit'>> & {
    signal: AbortSignal | undefined;
  };
  readonly #deps: Required<Omit<AtlassianEventsDeps, 'dispatcher' | 'metrics'>> & { metrics: PipelineMetrics | undefined };
  /** The API URL's origin: where pagination may point (besides Atlassian's own API). */
  readonly #origin: string;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  /** Aborted first on destroy, so a pending request never holds up teardown. */
  readonly #destroyed = new AbortController();
  readonly #requestSignal: AbortSignal;
  #position: Position;
  #lastProcessedAt: string | undefined;
  #hour = HOUR_UNKNOWN;
  readonly #pacer: RatePacer;
  readonly #pages: PageProcessor;
  /** Pages being fetched ahead, in cursor order (see #fetchAhead). */
  #ahead: Ahead[] = [];
  /**
   * The guessed successor of the last page ahead, kept while the list was full; fetched once
   * there is room (see #resumeAhead).
   */
  #deferred: { after: Position; next: Position } | undefined;

  constructor(options: AtlassianEventsOptions, deps: AtlassianEventsDeps) {
    super(options.highWaterMark ?? 1);
    const apiUrl = checkApiUrl(options.apiUrl ?? 'https://api.atlassian.com');
    this.#opts = {
      apiUrl: `${apiUrl.origin}${apiUrl.pathname.replace(/\/+$/, '')}`,
      orgId: options.orgId,
      apiKey: options.apiKey,
      start: options.start,
      pageSize: options.pageSize ?? 500,
      follow: options.follow ?? false,
      intervalMs: options.intervalMs ?? 300_000,
      cursorFallbackOverlapMs: options.cursorFallbackOverlapMs ?? 600_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      maxRetries: options.maxRetries ?? 8,
      backoffBaseMs: options.backoffBaseMs ?? 500,
      backoffCapMs: options.backoffCapMs ?? 60_000,
      maxPageBytes: options.maxPageBytes ?? 64 * 1024 * 1024,
      highWaterMark: options.highWaterMark ?? 1,
      pageWorkers: options.pageWorkers ?? 2,
      fallbackFrom: options.fallbackFrom ?? options.start.from ?? 0,
      signal: options.signal,
    };
    this.#deps = {
      clock: deps.clock ?? systemClock,
      random: deps.random ?? Math.random,
      logger: deps.logger ?? silentLogger,
      metrics: deps.metrics,
    };
    this.#origin = apiUrl.origin;
    this.#ownsDispatcher = deps.dispatcher === undefined;
    this.#dispatcher = deps.dispatcher ?? new Agent({ keepAliveTimeout: 30_000, connections: 2 });
    this.#requestSignal = this.#opts.signal === undefined
      ? this.#destroyed.signal
      : AbortSignal.any([this.#destroyed.signal, this.#opts.signal]);
    this.#pages = new PageProcessor(this.#opts.pageWorkers);
    this.#pacer = new RatePacer(options.rateLimit === false ? undefined : options.rateLimit ?? DEFAULT_RATE_BUDGET);
    this.#position = { ...options.start };
    this.#lastProcessedAt = options.lastProcessedAt;
    if (deps.metrics !== undefined) {
      // Where this run's range starts in time, for the progress line: the checkpoint's
      // processedAt, else the position's `from`, else where the collection began.
      const h = deps.metrics.health;
      h.rangeStartMs = (options.lastProcessedAt === undefined ? undefined : parseRfc3339(options.lastProcessedAt)) ?? options.start.from ?? this.#opts.fallbackFrom;
      if (h.fetchedUpToMs === undefined || h.fetchedUpToMs < h.rangeStartMs) h.fetchedUpToMs = h.rangeStartMs;
    }
  }

  /** The position after the last batch emitted. */
  get position(): Position {
    return { ...this.#position };
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#destroyed.abort();
    this.#abandonAhead();
    const closeDispatcher = this.#ownsDispatcher ? this.#dispatcher.close().catch(() => {}) : Promise.resolve();
    const closePages = this.#pages.close().catch(() => {});
    this.endGenerator()
      .then(() => Promise.all([closeDispatcher, closePages]))
      .then(() => cb(err), () => cb(err));
  }

  get #stopping(): boolean {
    return this.#opts.signal?.aborted === true;
  }

  #url(pos: Position): string {
    const q = new URLSearchParams({ limit: String(this.#opts.pageSize) });
    if (pos.cursor !== undefined) q.set('cursor', pos.cursor);
    else if (pos.from !== undefined) q.set('from', String(Math.trunc(pos.from)));
    return `${this.#opts.apiUrl}/admin/v1/orgs/${encodeURIComponent(this.#opts.orgId)}/events-stream?${q}`;
  }

  protected override async *generate(): AsyncGenerator<Batch, void, undefined> {
    const { follow, intervalMs } = this.#opts;
    const { clock, metrics } = this.#deps;
    let poll = { startedMs: clock.now(), pages: 0, records: 0 };
    for (;;) {
      const fetched = await this.#take(this.#position);
      if (fetched === undefined) return; // stopping
      // The position actually fetched: a rejected cursor is replaced by a time-based one.
      const { page, pos } = fetched;
      const first = Math.min(pos.skip, page.count);
      const fresh = page.count - first;
      poll.pages++;
      poll.records += fresh;
      metrics?.eventsReceived.inc(fresh);
      if (metrics !== undefined) metrics.health.received += fresh;
      // A null next, or a next equal to the cursor just used, means "this is the end for now":
      // stay on this page and remember how much of it was handled.
      const stays = page.next === null || (page.next === pos.cursor && pos.cursor !== undefined);
      const after: Position = stays ? { ...pos, skip: pos.skip + fresh } : { cursor: page.next!, skip: 0 };
      // Caught up: nothing on the page, no next cursor, or a next cursor that goes nowhere.
      const caughtUp = page.count === 0 || stays;
      const now = clock.now();
      if (caughtUp && metrics !== undefined) {
        metrics.health.caughtUpMs = now;
        metrics.polls.inc();
      }
      // The poll's summary rides on its last batch, so the sink reports it after handling it.
      const end: PollEnd | undefined = caughtUp
        ? { ...poll, durationMs: now - poll.startedMs, ...(follow && !this.#stopping ? { nextPollAtMs: now + intervalMs } : {}) }
        : undefined;
      // Caught up: a page fetched ahead would be stale by the next poll.
      if (caughtUp) this.#abandonAhead();
      yield* this.#cut(pos, page, first, after, end);
      if (!caughtUp) continue;
      if (!follow || this.#stopping) return;
      await clock.sleep(intervalMs, this.#requestSignal);
      if (this.#stopping) return;
      if (this.#destroyed.signal.aborted) throw new AbortError();
      poll = { startedMs: clock.now(), pages: 0, records: 0 };
    }
  }

  /**
   * Cuts a page's fresh records (from `first` on) into batches at UTC-hour changes of
   * processedAt. `pollEnd`, when the page ends a poll, goes on the last batch (an empty one if
   * the page brought nothing). Each batch carries its records already validated and normalised:
   * valid events packed as lines, invalid ones as quarantine records, and `fetched` set.
   */
  *#cut(pos: Position, page: ProcessedPage, first: number, after: Position, pollEnd?: PollEnd): Generator<Batch> {
    const total = page.count - first;
    if (total === 0) {
      if (!samePosition(after, pos) || pollEnd !== undefined) {
        this.#position = after;
        yield {
          records: [],
          events: [],
          quarantined: [],
          position: after,
          hour: this.#hour === HOUR_UNKNOWN ? hourOf(this.#deps.clock.now()) : this.#hour,
          ...(pollEnd === undefined ? {} : { pollEnd }),
        };
      }
      return;
    }
    let start = 0;
    let hour = this.#hour;
    // Where the fresh records' events and quarantine entries begin.
    let event = 0;
    for (let i = 0; i < first; i++) event += page.valid[i]!;
    let q = 0;
    while (q < page.quarantined.length && page.quarantined[q]!.index < first) q++;
    let lastProcessedAt: string | undefined;
    let lastProcessedAtMs = -Infinity;
    const latestBelievable = this.#deps.clock.now() + MAX_FUTURE_SKEW_MS;
    const emit = (end: number, position: Position): Batch => {
      const events = page.events;
      const eventEnd = event + countValid(page.valid, first + start, first + end);
      const quarantined: QuarantineRecord[] = [];
      for (; q < page.quarantined.length && page.quarantined[q]!.index < first + end; q++) {
        const entry = page.quarantined[q]!;
        quarantined.push({ reason: entry.reason, record: JSON.parse(entry.text) as unknown });
      }
      const batch: Batch = {
        records: [],
        events: [],
        quarantined,
        fetched: end - start,
        position,
        hour: hour === HOUR_UNKNOWN ? hourOf(this.#deps.clock.now()) : hour,
      };
      if (eventEnd > event) {
        batch.packed = {
          bytes: events.bytes,
          start: event === 0 ? events.start : events.ends[event - 1]!,
          ends: events.ends.subarray(event, eventEnd),
          ids: events.ids.slice(event, eventEnd),
          timeMs: events.timeMs.subarray(event, eventEnd),
        };
      }
      event = eventEnd;
      if (lastProcessedAt !== undefined) {
        batch.lastProcessedAt = lastProcessedAt;
        // Only forward: a re-delivery keeps its old processedAt.
        const known = this.#lastProcessedAt === undefined ? -Infinity : parseRfc3339(this.#lastProcessedAt) ?? -Infinity;
        if (lastProcessedAtMs > known) this.#lastProcessedAt = lastProcessedAt;
        const h = this.#deps.metrics?.health;
        if (h !== undefined && (h.fetchedUpToMs === undefined || lastProcessedAtMs > h.fetchedUpToMs)) h.fetchedUpToMs = lastProcessedAtMs;
      }
      if (end === total && pollEnd !== undefined) batch.pollEnd = pollEnd;
      this.#position = position;
      this.#hour = batch.hour;
      start = end;
      lastProcessedAt = undefined;
      lastProcessedAtMs = -Infinity;
      return batch;
    };
    for (let i = 0; i < total; i++) {
      const h = page.hour[first + i]!;
      const pMs = page.processedAtMs[first + i]!;
      const p = page.processedAt[first + i] ?? undefined;
      if (h !== HOUR_UNKNOWN && h !== hour) {
        if (i > start) yield emit(i, { ...pos, skip: pos.skip + i });
        hour = h;
      }
      // Compared as instants (offsets and letter case differ between strings), ignoring the
      // impossible future.
      if (p !== undefined && pMs > lastProcessedAtMs && pMs <= latestBelievable) {
        lastProcessedAt = p;
        lastProcessedAtMs = pMs;
      }
    }
    yield emit(total, after);
  }

  #backoff(attempt: number): number {
    const { backoffBaseMs, backoffCapMs } = this.#opts;
    const ceiling = Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(attempt, 30));
    return Math.floor(this.#deps.random() * ceiling); // full jitter
  }

  /**
   * The page at `pos`: the one fetched ahead for it (see #fetchAhead) when the guess was right,
   * else fetched now. A wrong guess abandons every page fetched ahead.
   */
  async #take(pos: Position): Promise<Fetched | undefined> {
    const ahead = this.#ahead.shift();
    let first: Outcome | undefined;
    if (ahead !== undefined && samePosition(ahead.pos, pos)) {
      first = await ahead.promise;
      if (first?.ok === true) this.#resumeAhead();
    } else if (ahead !== undefined) this.#abandonAhead(ahead);
    return this.#fetchWithRetries(pos, this.#requestSignal, first);
  }

  /** Aborts the pages fetched ahead (and `first`, already taken off the list). */
  #abandonAhead(first?: Ahead): void {
    if (first !== undefined) first.abort.abort();
    for (const a of this.#ahead) a.abort.abort();
    this.#ahead = [];
    this.#deferred = undefined;
  }

  /**
   * Fetches the successor kept back while the list was full (see #fetchAhead), now that a page
   * has left it, if it still follows the last page ahead. Its predecessor's body is in, and every
   * page ahead was started after the body before it, so requests stay one after another.
   */
  #resumeAhead(): void {
    const deferred = this.#deferred;
    this.#deferred = undefined;
    if (deferred === undefined || this.#stopping || this.#destroyed.signal.aborted) return;
    const last = this.#ahead.at(-1);
    if (last === undefined || !samePosition(last.pos, deferred.after) || this.#ahead.length >= MAX_AHEAD) return;
    this.#startAhead(deferred.next);
  }

  #startAhead(next: Position): void {
    const abort = new AbortController();
    this.#ahead.push({ pos: next, abort, promise: this.#fetchOnceAhead(next, AbortSignal.any([this.#requestSignal, abort.signal])) });
  }

  /**
   * Starts fetching the page after the one whose body just arrived at `pos`, with the cursor the
   * body's tail names (guessNextCursor), so the request and its processing overlap the processing
   * of this page instead of waiting for it. Requests stay one after another (this runs once the
   * body is in). The guess is checked against the cursor the full parse finds before the page is
   * used (#take); at most MAX_AHEAD pages are fetched ahead. Fetching ahead is the first attempt
   * only: its outcome, good or bad, is handed to #fetchWithRetries in the page's turn, which
   * retries, backs off and falls back exactly as if it had made that attempt itself.
   */
  #fetchAhead(body: Uint8Array, pos: Position): void {
    if (this.#stopping || this.#destroyed.signal.aborted) return;
    // The page after `pos` in the chain: the first one ahead when `pos` is the page fetched in
    // its turn, else the one after `pos` among those ahead.
    const at = this.#ahead.findIndex((a) => samePosition(a.pos, pos)) + 1;
    const guess = guessNextCursor(body, this.#origin);
    if (guess === undefined || guess === pos.cursor) return;
    const successor = this.#ahead[at];
    if (successor !== undefined) {
      if (successor.pos.cursor === guess && successor.pos.skip === 0) return;
      // Fetched on another guess (from an answer that was then refused, say): it and everything
      // after it are abandoned, and the chain continues from this body.
      for (const a of this.#ahead.splice(at)) a.abort.abort();
      this.#deferred = undefined;
    }
    const next: Position = { cursor: guess, skip: 0 };
    if (this.#ahead.length >= MAX_AHEAD) {
      // Full: keep the guess for when a page leaves the list, else the chain would stop here
      // and the page after the last one ahead would wait for its turn to be fetched.
      if (at === this.#ahead.length) this.#deferred = { after: pos, next };
      return;
    }
    this.#startAhead(next);
  }

  /** The first attempt at a page fetched ahead (see #fetchAhead); undefined when none was made. Never rejects. */
  async #fetchOnceAhead(pos: Position, signal: AbortSignal): Promise<Outcome | undefined> {
    try {
      return await this.#pacedFetch(pos, signal);
    } catch {
      return undefined;
    }
  }

  /** Waits for the request budget, then makes one attempt; undefined when stopped or aborted during the wait. */
  async #pacedFetch(pos: Position, signal: AbortSignal): Promise<Outcome | undefined> {
    const { clock, logger } = this.#deps;
    const paceMs = this.#pacer.delay(clock.now());
    if (paceMs > 0) {
      this.#countWait('pacing', paceMs);
      if (paceMs >= 5000) logger.info('pacing requests to the API rate limit; waiting', { waitMs: Math.round(paceMs) });
      await clock.sleep(paceMs, signal);
      if (this.#stopping || signal.aborted) return undefined;
    }
    this.#pacer.started(clock.now());
    return this.#fetchOnce(pos, signal);
  }

  /** Fetches one page, retrying transient failures. Undefined when stopping. */
  async #fetchWithRetries(pos: Position, signal: AbortSignal, firstOutcome?: Outcome): Promise<Fetched | undefined> {
    const { clock, logger, metrics } = this.#deps;
    let failures = 0;
    let rateLimited = 0;
    let current = pos;
    for (;;) {
      if (this.#stopping) return undefined;
      if (signal.aborted) throw new AbortError();
      let outcome: Outcome;
      if (firstOutcome !== undefined) {
        // The first attempt was made ahead of time (see #fetchAhead).
        outcome = firstOutcome;
        firstOutcome = undefined;
      } else {
        const attempt = await this.#pacedFetch(current, signal);
        if (attempt === undefined) {
          if (this.#stopping) return undefined;
          throw new AbortError();
        }
        outcome = attempt;
      }
      if (outcome.ok) return { page: outcome.page, pos: current };
      // Pages fetched ahead were guessed from this answer, which was refused: they stop, so the
      // retry below is again the only request.
      this.#abandonAhead();
      if ('fatal' in outcome) {
        if (outcome.fatal instanceof InvalidCursorError && current.cursor !== undefined) {
          current = this.#fallbackPosition();
          metrics?.apiRetries.inc({ cause: 'invalid_cursor' });
          logger.warn('the API rejected the saved cursor; restarting from processedAt minus the overlap', {
            from: new Date(current.from!).toISOString(),
          });
          continue;
        }
        throw outcome.fatal;
      }
      if (this.#stopping) return undefined;
      let waitMs: number;
      if (outcome.retry === 'rate_limit') {
        rateLimited++;
        // Honour hints of any length, but never retry at once (a hint of 0, or a reset time that
        // already passed, would become a tight loop) and never beyond a day (a nonsense hint).
        const hint = outcome.waitMs;
        // Without a hint, the backoff, but also never less than the minimum.
        waitMs = Math.min(Math.max(hint ?? this.#backoff(rateLimited), MIN_RATE_LIMIT_WAIT_MS), MAX_RATE_LIMIT_WAIT_MS);
        this.#countWait('429', waitMs);
        logger.warn('rate limited by the API; waiting', { waitMs: Math.round(waitMs) });
      } else {
        failures++;
        if (failures > this.#opts.maxRetries) throw this.#gaveUp(outcome.retry, outcome.detail);
        waitMs = this.#backoff(failures);
        logger.warn('page request failed; retrying', { cause: outcome.retry, detail: outcome.detail, attempt: failures, waitMs });
      }
      metrics?.apiRetries.inc({ cause: outcome.retry });
      await clock.sleep(waitMs, signal);
    }
  }

  /** The error once a page failed `maxRetries` retries: what failed, where (--api-url) and what to check. */
  #gaveUp(cause: 'server_error' | 'network' | 'timeout' | 'malformed', detail: string): ApiError {
    const where = `the events API at ${this.#opts.apiUrl} (--api-url)`;
    const attempts = `${this.#opts.maxRetries + 1} attempts`;
    if (cause === 'network' || cause === 'timeout') {
      return new ApiError(`cannot reach ${where}: ${attempts} failed, the last with ${detail}. Check --api-url, DNS, proxies and firewalls between here and the API`);
    }
    if (cause === 'server_error') {
      return new ApiError(`${where} kept failing: ${attempts}, the last answered ${detail}. The API (or a proxy in front of it) is failing; a later run continues from the checkpoint`);
    }
    return new ApiError(`${where} kept sending pages that are not events-stream pages: ${attempts}, the last: ${detail}. Check that --api-url leads to the API, or to a gateway that passes its pages through`);
  }

  #countWait(reason: 'pacing' | '429', ms: number): void {
    const metrics = this.#deps.metrics;
    if (metrics === undefined) return;
    metrics.rateLimitWaits.inc({ reason });
    metrics.rateLimitWaitSeconds.inc({ reason }, ms / 1000);
    metrics.health.rateLimitWaits++;
    metrics.health.rateLimitWaitMs += ms;
  }

  #fallbackPosition(): Position {
    const parsed = this.#lastProcessedAt === undefined ? undefined : parseRfc3339(this.#lastProcessedAt);
    // Never restart ahead of now: events between would be skipped.
    const last = parsed === undefined ? undefined : Math.min(parsed, this.#deps.clock.now());
    const from = last === undefined ? this.#opts.fallbackFrom : last - this.#opts.cursorFallbackOverlapMs;
    return { from: Math.max(0, from), skip: 0 };
  }

  async #fetchOnce(pos: Position, signal: AbortSignal): Promise<Outcome> {
    const { clock, metrics } = this.#deps;
    const { requestTimeoutMs, maxPageBytes } = this.#opts;
    const started = clock.now();
    let res: Dispatcher.ResponseData;
    const timeout = AbortSignal.timeout(requestTimeoutMs);
    try {
      res = await request(this.#url(pos), {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headers: { authorization: `Bearer ${this.#opts.apiKey}`, accept: 'application/json' },
        signal: AbortSignal.any([signal, timeout]),
        headersTimeout: requestTimeoutMs,
        bodyTimeout: requestTimeoutMs,
      });
    } catch (err) {
      metrics?.apiRequests.inc({ status: '0' });
      if (signal.aborted) return { ok: false, retry: 'network', detail: 'aborted' };
      const timedOut = timeout.aborted || (err as { code?: unknown }).code === 'UND_ERR_HEADERS_TIMEOUT';
      return { ok: false, retry: timedOut ? 'timeout' : 'network', detail: failureDetail(err, timedOut, requestTimeoutMs) };
    }
    const status = res.statusCode;
    metrics?.apiRequests.inc({ status: String(status) });
    const remainingText = header(res.headers, 'x-ratelimit-remaining');
    // Number('') is 0: an empty header would read as "used up".
    if (remainingText !== undefined && /^\s*\d+\s*$/.test(remainingText)) metrics?.rateLimitRemaining.set(Number(remainingText));
    // A 429's own hints are applied by the retry (see retryHintMs); pace on the others.
    if (status !== 429) this.#pacer.observe(res.headers, clock.now());
    let body: Buffer;
    try {
      // Always consume the body, error responses included, so the connection can be reused.
      body = await readBody(res.body, maxPageBytes);
    } catch (err) {
      if (signal.aborted) return { ok: false, retry: 'network', detail: 'aborted' };
      if (err instanceof BodyTooLargeError) return { ok: false, retry: 'malformed', detail: err.message };
      const timedOut = timeout.aborted || (err as { code?: unknown }).code === 'UND_ERR_BODY_TIMEOUT';
      return { ok: false, retry: timedOut ? 'timeout' : 'network', detail: failureDetail(err, timedOut, requestTimeoutMs) };
    }
    metrics?.apiRequestSeconds.observe((clock.now() - started) / 1000);
    if (status === 200) {
      // An abandoned page fetched ahead (see #abandonAhead) goes no further: no guess, no processing.
      if (signal.aborted) return { ok: false, retry: 'network', detail: 'aborted' };
      this.#fetchAhead(body, pos);
      const page = await this.#pages.process(body, { origin: this.#origin, pageSize: this.#opts.pageSize });
      if (typeof page === 'string') return { ok: false, retry: 'malformed', detail: page };
      if (page.nextElsewhere !== null) {
        return {
          ok: false,
          fatal: new ForeignLinkError(
            `the events API at ${this.#opts.apiUrl} gave the next page as a URL on ${page.nextElsewhere} ("meta.next"): the key is only ever sent to --api-url, ` +
              'so collection stops here. Check --api-url, or make the proxy or gateway give meta.next as a cursor or a URL on itself',
          ),
        };
      }
      if (metrics !== undefined) metrics.health.lastPageOkMs = clock.now();
      return { ok: true, page };
    }
    const text = body.toString('utf8');
    const code = apiErrorCode(text);
    const suffix = code === undefined ? '' : ` (${code})`;
    // Branch on the status, never on the body's shape: bodies are not always JSON.
    if (status === 429) return { ok: false, retry: 'rate_limit', waitMs: retryHintMs(res.headers, clock.now()) };
    if (status >= 500) return { ok: false, retry: 'server_error', detail: `HTTP ${status}${suffix}` };
    if (status === 401) {
      return { ok: false, fatal: new AuthError(`the API rejected the key (HTTP 401${suffix}): set ATLASSIAN_API_KEY to a valid, unexpired organization API key from admin.atlassian.com → Settings → API keys`) };
    }
    if (status === 403) {
      return { ok: false, fatal: new ForbiddenError(`the API refused access (HTTP 403${suffix}): the key's creator must be an organization admin, and the org needs Atlassian Guard for audit-log access`) };
    }
    if (status === 404) {
      // Atlassian answers an unknown org with its error document; a wrong path through a proxy or
      // gateway (or a wrong --api-url) gets someone else's 404 page.
      if (isAtlassianError(text)) {
        return { ok: false, fatal: new OrgNotFoundError(`organization ${JSON.stringify(this.#opts.orgId)} was not found (HTTP 404${suffix}): check --org-id`) };
      }
      return {
        ok: false,
        fatal: new ApiError(
          `the events API at ${this.#opts.apiUrl} answered HTTP 404 without Atlassian's error document: ${new URL(this.#url(pos)).pathname} is not the events-stream API there. ` +
            'Check --api-url (the API origin, e.g. https://api.atlassian.com, or your gateway\'s), and any proxy path in between',
          status,
        ),
      };
    }
    if (status === 400 && pos.cursor !== undefined) {
      return { ok: false, fatal: new InvalidCursorError(`the API rejected the cursor (HTTP 400${suffix})`) };
    }
    if (status === 408) return { ok: false, retry: 'timeout', detail: 'HTTP 408' };
    if (status >= 300 && status < 400) {
      const location = typeof res.headers.location === 'string' ? res.headers.location : '';
      const to = location === '' ? '' : ` to ${foreignOrigin(location, this.#origin) ?? this.#origin}`;
      return {
        ok: false,
        fatal: new ForeignLinkError(`the events API at ${this.#opts.apiUrl} answered HTTP ${status}, a redirect${to}: redirects are never followed, so the key is not sent anywhere else; check --api-url`),
      };
    }
    return { ok: false, fatal: new ApiError(`events-stream answered HTTP ${status}${suffix}`, status) };
  }
}

/**
 * A failed request in a few words for logs and errors: `no answer within 30 s` for a timeout (the
 * timeout's own error carries a numeric DOMException code), else the error's code and message.
 */
function failureDetail(err: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `no answer within ${timeoutMs / 1000} s`;
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !message.includes(code) ? `${code} (${message})` : message;
}

/** Whether a body is Atlassian's error document, `{"errors":[...]}` (a proxy's 404 page is not). */
function isAtlassianError(text: string): boolean {
  try {
    return Array.isArray((JSON.parse(text) as { errors?: unknown }).errors);
  } catch {
    return false;
  }
}

/** The `errors[0].code` of an Atlassian error body, if the body has one (it need not). */
function apiErrorCode(text: string): string | undefined {
  try {
    const json = JSON.parse(text) as { errors?: Array<{ code?: unknown }> };
    const code = json.errors?.[0]?.code;
    return typeof code === 'string' && /^[A-Za-z0-9._-]{1,40}$/.test(code) ? code : undefined;
  } catch {
    return undefined;
  }
}

export type AtlassianEventsSource = Readable & { readonly position: Position };

export function createAtlassianEventsSource(options: AtlassianEventsOptions, deps: AtlassianEventsDeps = {}): AtlassianEventsSource {
  return new EventsStreamReadable(options, deps);
}

/** How many of `valid[from, to)` are set. */
function countValid(valid: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n += valid[i]!;
  return n;
}
