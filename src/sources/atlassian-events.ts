/**
 * atlassian-events: a pull-based Readable over `GET /admin/v1/orgs/{orgId}/events-stream`.
 *
 * Out: Batch (records as received, at most one page; pages are cut where
 *      `attributes.processedAt` enters a new UTC hour, so no batch spans two hours).
 *      A batch with no records carries only a new position (the cursor moved, nothing to write).
 * Memory: one page (≤ `pageSize` records, ≤ `maxPageBytes` of body) plus `highWaterMark` batches.
 * Backpressure: the next page is requested only when downstream pulls (`_read`).
 * Errors: 401/403/404 end the stream with AuthError/ForbiddenError/OrgNotFoundError at once.
 *      429 is retried for as long as it takes, honouring Retry-After, X-Retry-After and
 *      X-RateLimit-Reset. 5xx, resets, timeouts and malformed pages are retried with exponential
 *      backoff and full jitter, `maxRetries` times, then end the stream with ApiError. A rejected
 *      cursor (400) falls back to `from` = last processedAt − `cursorFallbackOverlapMs`.
 * Stop and destroy: `signal` ends the stream cleanly at the next page boundary (an in-flight
 *      request is abandoned, its page never emitted). destroy() aborts any request first.
 */
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { systemClock, type Clock } from '../clock.js';
import {
  AbortError,
  ApiError,
  AuthError,
  ConfigError,
  ForbiddenError,
  InvalidCursorError,
  OrgNotFoundError,
} from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { PipelineMetrics } from '../metrics.js';
import { hourOf, parseRfc3339 } from '../time.js';
import type { Batch, Position } from '../types.js';

export interface AtlassianEventsOptions {
  /** API origin. Default `https://api.atlassian.com`. Pagination never leaves this origin. */
  apiUrl?: string;
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
  /** Largest response body read. Default 64 MiB. */
  maxPageBytes?: number;
  /** Ends the stream cleanly (not an error) at the next safe point. */
  signal?: AbortSignal;
  /** Batches buffered ahead of downstream. Default 1. */
  highWaterMark?: number;
}

export interface AtlassianEventsDeps {
  /** HTTP dispatcher. Default: a keep-alive Agent owned (and closed) by the source. */
  dispatcher?: Dispatcher;
  clock?: Clock;
  /** Uniform [0,1) for jitter. Default Math.random. */
  random?: () => number;
  logger?: Logger;
  metrics?: PipelineMetrics;
}

interface Page {
  records: unknown[];
  next: string | null;
}

type Outcome =
  | { ok: true; page: Page }
  | { ok: false; retry: 'rate_limit'; waitMs: number | undefined }
  | { ok: false; retry: 'server_error' | 'network' | 'timeout' | 'malformed'; detail: string }
  | { ok: false; fatal: Error };

/**
 * Milliseconds to wait from rate-limit headers, or undefined if none is usable.
 * `Retry-After` and `X-Retry-After` answer this request and win; `X-RateLimit-Reset` (when the
 * whole window resets, often rounded to the minute) is used only when neither is present.
 */
export function retryHintMs(headers: Record<string, string | string[] | undefined>, now: number): number | undefined {
  const h = (name: string): string | undefined => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const waits: number[] = [];
  for (const name of ['retry-after', 'x-retry-after']) {
    const v = h(name)?.trim();
    if (v === undefined || v === '') continue;
    if (/^\d+(\.\d+)?$/.test(v)) waits.push(Number(v) * 1000);
    else {
      const at = Date.parse(v);
      if (Number.isFinite(at)) waits.push(at - now);
    }
  }
  if (waits.length > 0) return Math.max(0, ...waits);
  const reset = h('x-ratelimit-reset')?.trim();
  if (reset === undefined || reset === '') return undefined;
  // Seen with minute precision ("2023-10-11T17:05Z"); accept seconds too.
  const withSeconds = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$/.test(reset)
    ? reset.replace(/(Z|[+-]\d{2}:\d{2})$/, ':00$1')
    : reset;
  const at = parseRfc3339(withSeconds);
  if (at !== undefined) return Math.max(0, at - now);
  if (/^\d+$/.test(reset)) return Number(reset) * 1000;
  return undefined;
}

const HOUR_UNKNOWN = -1;
const MIN_RATE_LIMIT_WAIT_MS = 1000;
const MAX_RATE_LIMIT_WAIT_MS = 24 * 3_600_000;

/**
 * The UTC hour a raw record belongs to (its processedAt, else its time, else unknown), and its
 * processedAt when that is valid: one parse of each field per record.
 */
function recordTimes(record: unknown): { hour: number; processedAt: string | undefined } {
  const none = { hour: HOUR_UNKNOWN, processedAt: undefined };
  if (typeof record !== 'object' || record === null) return none;
  const attrs = (record as { attributes?: unknown }).attributes;
  if (typeof attrs !== 'object' || attrs === null) return none;
  const { processedAt, time } = attrs as { processedAt?: unknown; time?: unknown };
  const p = typeof processedAt === 'string' ? parseRfc3339(processedAt) : undefined;
  if (p !== undefined) return { hour: hourOf(p), processedAt: processedAt as string };
  const t = typeof time === 'string' ? parseRfc3339(time) : undefined;
  return { hour: t === undefined ? HOUR_UNKNOWN : hourOf(t), processedAt: undefined };
}

async function readBody(body: Dispatcher.ResponseData['body'], max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > max) {
      body.destroy();
      throw new Error(`response body larger than ${max} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses a page body. Returns a reason string when it is not a usable page. */
export function parsePage(text: string): Page | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return text.trimStart().startsWith('<') ? 'body is HTML, not JSON' : 'body is not valid JSON';
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return 'body is not a JSON object';
  const { data, meta } = json as { data?: unknown; meta?: unknown };
  if (!Array.isArray(data)) return '"data" is not an array';
  // A page without `meta` is broken, not the end: treating it as the end would stop a --once
  // run early. An absent or null `meta.next` is the end.
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return '"meta" is missing or not an object';
  let next: string | null = null;
  const n = (meta as { next?: unknown }).next;
  if (n !== undefined && n !== null) {
    if (typeof n !== 'string' || n.length === 0 || n.length > 4096) return '"meta.next" is not a cursor string';
    next = n;
  }
  return { records: data, next };
}

class EventsStreamReadable extends Readable {
  readonly #opts: Required<Omit<AtlassianEventsOptions, 'signal' | 'lastProcessedAt'>> & {
    signal: AbortSignal | undefined;
  };
  readonly #deps: Required<Omit<AtlassianEventsDeps, 'dispatcher' | 'metrics'>> & { metrics: PipelineMetrics | undefined };
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  /** Aborted first on destroy, so a pending request never holds up teardown. */
  readonly #destroyed = new AbortController();
  readonly #requestSignal: AbortSignal;
  readonly #it: AsyncGenerator<Batch, void, undefined>;
  #position: Position;
  #lastProcessedAt: string | undefined;
  #hour = HOUR_UNKNOWN;

  constructor(options: AtlassianEventsOptions, deps: AtlassianEventsDeps) {
    super({ objectMode: true, highWaterMark: options.highWaterMark ?? 1 });
    const apiUrl = new URL(options.apiUrl ?? 'https://api.atlassian.com');
    if (apiUrl.protocol !== 'https:' && apiUrl.protocol !== 'http:') throw new ConfigError(`--api-url must be http(s), got ${apiUrl.protocol}`);
    this.#opts = {
      apiUrl: apiUrl.origin,
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
      fallbackFrom: options.fallbackFrom ?? options.start.from ?? 0,
      signal: options.signal,
    };
    this.#deps = {
      clock: deps.clock ?? systemClock,
      random: deps.random ?? Math.random,
      logger: deps.logger ?? silentLogger,
      metrics: deps.metrics,
    };
    this.#ownsDispatcher = deps.dispatcher === undefined;
    this.#dispatcher = deps.dispatcher ?? new Agent({ keepAliveTimeout: 30_000, connections: 2 });
    this.#requestSignal = this.#opts.signal === undefined
      ? this.#destroyed.signal
      : AbortSignal.any([this.#destroyed.signal, this.#opts.signal]);
    this.#position = { ...options.start };
    this.#lastProcessedAt = options.lastProcessedAt;
    this.#it = this.#generate();
  }

  /** The position after the last batch emitted. */
  get position(): Position {
    return { ...this.#position };
  }

  override _read(): void {
    this.#it.next().then(
      (r) => {
        if (r.done === true) this.push(null);
        else this.push(r.value);
      },
      (err: unknown) => this.destroy(err as Error),
    );
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#destroyed.abort();
    const closeDispatcher = this.#ownsDispatcher ? this.#dispatcher.close().catch(() => {}) : Promise.resolve();
    this.#it
      .return(undefined)
      .catch(() => {})
      .then(() => closeDispatcher)
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

  async *#generate(): AsyncGenerator<Batch, void, undefined> {
    const { follow, intervalMs } = this.#opts;
    const { clock, metrics } = this.#deps;
    for (;;) {
      const fetched = await this.#fetchWithRetries(this.#position);
      if (fetched === undefined) return; // stopping
      // The position actually fetched: a rejected cursor is replaced by a time-based one.
      const { page, pos } = fetched;
      const fresh = pos.skip > 0 ? page.records.slice(pos.skip) : page.records;
      metrics?.eventsReceived.inc(fresh.length);
      // A null next, or a next equal to the cursor just used, means "this is the end for now":
      // stay on this page and remember how much of it was handled.
      const stays = page.next === null || (page.next === pos.cursor && pos.cursor !== undefined);
      const after: Position = stays ? { ...pos, skip: pos.skip + fresh.length } : { cursor: page.next!, skip: 0 };
      yield* this.#cut(pos, fresh, after);
      // Caught up: nothing on the page, no next cursor, or a next cursor that goes nowhere.
      const caughtUp = page.records.length === 0 || stays;
      if (!caughtUp) continue;
      if (metrics !== undefined) {
        metrics.health.lastPollSuccessMs = clock.now();
        metrics.lastPollSuccess.set(clock.now() / 1000);
      }
      if (!follow || this.#stopping) return;
      await clock.sleep(intervalMs, this.#requestSignal);
      if (this.#stopping) return;
      if (this.#destroyed.signal.aborted) throw new AbortError();
    }
  }

  /** Cuts a page's fresh records into batches at UTC-hour changes of processedAt. */
  *#cut(pos: Position, records: unknown[], after: Position): Generator<Batch> {
    const samePosition = after.cursor === pos.cursor && after.from === pos.from && after.skip === pos.skip;
    if (records.length === 0) {
      if (!samePosition) {
        this.#position = after;
        yield { records: [], events: [], quarantined: [], position: after, hour: this.#hour === HOUR_UNKNOWN ? hourOf(this.#deps.clock.now()) : this.#hour };
      }
      return;
    }
    let start = 0;
    let hour = this.#hour;
    let lastProcessedAt: string | undefined;
    const emit = (end: number, position: Position): Batch => {
      const batch: Batch = {
        records: records.slice(start, end),
        events: [],
        quarantined: [],
        position,
        hour: hour === HOUR_UNKNOWN ? hourOf(this.#deps.clock.now()) : hour,
      };
      if (lastProcessedAt !== undefined) {
        batch.lastProcessedAt = lastProcessedAt;
        this.#lastProcessedAt = lastProcessedAt;
      }
      this.#position = position;
      this.#hour = batch.hour;
      start = end;
      lastProcessedAt = undefined;
      return batch;
    };
    for (let i = 0; i < records.length; i++) {
      const { hour: h, processedAt: p } = recordTimes(records[i]);
      if (h !== HOUR_UNKNOWN && h !== hour) {
        if (i > start) yield emit(i, { ...pos, skip: pos.skip + i });
        hour = h;
      }
      if (p !== undefined && (lastProcessedAt === undefined || p > lastProcessedAt)) lastProcessedAt = p;
    }
    yield emit(records.length, after);
  }

  #backoff(attempt: number): number {
    const { backoffBaseMs, backoffCapMs } = this.#opts;
    const ceiling = Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(attempt, 30));
    return Math.floor(this.#deps.random() * ceiling); // full jitter
  }

  /** Fetches one page, retrying transient failures. Undefined when stopping. */
  async #fetchWithRetries(pos: Position): Promise<{ page: Page; pos: Position } | undefined> {
    const { clock, logger, metrics } = this.#deps;
    let failures = 0;
    let rateLimited = 0;
    let current = pos;
    for (;;) {
      if (this.#stopping) return undefined;
      if (this.#destroyed.signal.aborted) throw new AbortError();
      const outcome = await this.#fetchOnce(current);
      if (outcome.ok) return { page: outcome.page, pos: current };
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
        waitMs = hint === undefined ? this.#backoff(rateLimited) : Math.min(Math.max(hint, MIN_RATE_LIMIT_WAIT_MS), MAX_RATE_LIMIT_WAIT_MS);
        metrics?.rateLimitWaitSeconds.inc(waitMs / 1000);
        logger.warn('rate limited by the API; waiting', { waitMs: Math.round(waitMs) });
      } else {
        failures++;
        if (failures > this.#opts.maxRetries) {
          throw new ApiError(`events-stream kept failing after ${this.#opts.maxRetries} retries (last: ${outcome.retry}: ${outcome.detail})`);
        }
        waitMs = this.#backoff(failures);
        logger.warn('page request failed; retrying', { cause: outcome.retry, detail: outcome.detail, attempt: failures, waitMs });
      }
      metrics?.apiRetries.inc({ cause: outcome.retry });
      await clock.sleep(waitMs, this.#requestSignal);
    }
  }

  #fallbackPosition(): Position {
    const last = this.#lastProcessedAt === undefined ? undefined : parseRfc3339(this.#lastProcessedAt);
    const from = last === undefined ? this.#opts.fallbackFrom : last - this.#opts.cursorFallbackOverlapMs;
    return { from: Math.max(0, from), skip: 0 };
  }

  async #fetchOnce(pos: Position): Promise<Outcome> {
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
        signal: AbortSignal.any([this.#requestSignal, timeout]),
        headersTimeout: requestTimeoutMs,
        bodyTimeout: requestTimeoutMs,
      });
    } catch (err) {
      metrics?.apiRequests.inc({ status: '0' });
      if (this.#requestSignal.aborted) return { ok: false, retry: 'network', detail: 'aborted' };
      const timedOut = timeout.aborted || (err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT';
      return { ok: false, retry: timedOut ? 'timeout' : 'network', detail: (err as { code?: string }).code ?? (err as Error).message };
    }
    const status = res.statusCode;
    metrics?.apiRequests.inc({ status: String(status) });
    const remaining = Number(res.headers['x-ratelimit-remaining']);
    if (Number.isFinite(remaining)) metrics?.rateLimitRemaining.set(remaining);
    let text: string;
    try {
      // Always consume the body, error responses included, so the connection can be reused.
      text = await readBody(res.body, maxPageBytes);
    } catch (err) {
      if (this.#requestSignal.aborted) return { ok: false, retry: 'network', detail: 'aborted' };
      const timedOut = timeout.aborted || (err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT';
      return { ok: false, retry: timedOut ? 'timeout' : 'network', detail: (err as { code?: string }).code ?? (err as Error).message };
    }
    metrics?.apiRequestSeconds.observe((clock.now() - started) / 1000);
    if (status === 200) {
      const page = parsePage(text);
      if (typeof page === 'string') return { ok: false, retry: 'malformed', detail: page };
      if (page.records.length > this.#opts.pageSize) {
        return { ok: false, retry: 'malformed', detail: `page has ${page.records.length} records, more than the ${this.#opts.pageSize} asked for` };
      }
      return { ok: true, page };
    }
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
      return { ok: false, fatal: new OrgNotFoundError(`organization ${JSON.stringify(this.#opts.orgId)} was not found (HTTP 404${suffix}): check --org-id`) };
    }
    if (status === 400 && pos.cursor !== undefined) {
      return { ok: false, fatal: new InvalidCursorError(`the API rejected the cursor (HTTP 400${suffix})`) };
    }
    if (status === 408) return { ok: false, retry: 'timeout', detail: 'HTTP 408' };
    return { ok: false, fatal: new ApiError(`events-stream answered HTTP ${status}${suffix}`, status) };
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
