/**
 * A local simulator of Atlassian's organization audit-log API (events-stream and friends),
 * reproducing the behaviours the collector depends on: bearer auth and its
 * 401/403/404 bodies, `from`/`to`/`limit`/`cursor`/`sortOrder`, position cursors that keep sort
 * order and bounds, both end-of-stream styles, rate-limit headers and 429s, and scripted or random
 * faults (5xx of several body shapes, resets mid-body, truncated/HTML/wrong-shape 200s, slowness).
 *
 * Memory: the record texts (~1.3 KB per event) in Buffer slabs outside the V8 heap, plus 21
 * bytes per record; see store.ts. Generation is eager (each record rendered once, ~10 µs);
 * serving a page copies byte ranges, so a 500-record page costs well under a millisecond.
 * Only node built-ins are used.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CursorCodec } from './cursor.js';
import type { CursorState } from './cursor.js';
import { EVENT_ACTIONS } from './generate.js';
import { EventLog } from './log.js';
import type { GroundTruth, TruthSummary } from './log.js';
import { DEFAULT_API_KEY, DEFAULT_LIMIT, DEFAULT_ORG_ID, MAX_LIMIT } from './options.js';
import type { EndStyle, FaultKind, FaultOptions, RateLimitOptions, ResetPrecision, SimulatorOptions } from './options.js';
import { Prng } from './prng.js';

export type { GroundTruth, TruthSummary } from './log.js';
export type { EndStyle, FaultKind, FaultOptions, RateLimitOptions, ResetPrecision, SimulatorOptions } from './options.js';
export { DEFAULT_API_KEY, DEFAULT_ORG_ID, MAX_LIMIT, DEFAULT_LIMIT } from './options.js';
export { MALFORMED_KINDS, EVENT_ACTIONS, formatTime } from './generate.js';
export type { MalformedKind, TimeStyle } from './generate.js';

/** One request as the simulator saw it. */
export interface RequestLogEntry {
  path: string;
  /** Query parameters (first value of each). */
  query: Record<string, string>;
  /** Status sent (for `reset`, the 200 written before the socket was destroyed). */
  status: number;
  /** Whether the bearer key matched. */
  authOk: boolean;
  /** The fault applied, if any (`slow` is reported only when it was the sole fault). */
  fault?: FaultKind;
  /** Records in the `data` of an events-stream page that was sent whole. */
  records?: number;
}

export interface SimulatorStats {
  /** Requests received. */
  requests: number;
  /** Responses by status code (`"200"`, `"429"`, ...). */
  byStatus: Record<string, number>;
  /** Records sent in whole events-stream pages (including the `bad-shape-no-meta` fault, whose data is real). */
  eventsServed: number;
  /** Body bytes of those pages (events-stream 200 answers sent whole, with data). */
  bytesServed: number;
  /** Faults applied, by concrete kind (`'429-reset'`, `'502'`, `'slow'`, ...). */
  faults: Record<string, number>;
  /** The latest requests, oldest first (bounded by `maxLogEntries`). */
  log: RequestLogEntry[];
}

export interface Simulator {
  /** Listens on `host:port` (default `127.0.0.1:0`); resolves the base URL, e.g. `http://127.0.0.1:40123`. */
  start(port?: number, host?: string): Promise<string>;
  /** Stops listening, destroys open keep-alive sockets and cancels delayed (slow) answers. */
  close(): Promise<void>;
  /** Base URL once started (the pipeline's `--api-url`); throws before `start()`. */
  readonly url: string;
  /** Org id accepted in paths (baked into event links at construction, so read-only). */
  readonly orgId: string;
  /** Bearer key accepted; assign to simulate a rotated or revoked key. */
  apiKey: string;
  /** `false`: every org request answers 403 "Audit Log Entitlement validation failed". */
  entitled: boolean;
  /** End-of-stream style; may be changed at run time. */
  endStyle: EndStyle;
  /**
   * Adds `n` fresh records, processed now: they sort after every record already in the log, so a
   * poller holding a cursor sees them. Malformed and re-delivery rates apply as at construction;
   * `late: true` makes every valid new event late (time 2 min to 8 h before processedAt).
   */
  append(n: number, opts?: { late?: boolean }): void;
  /** The ground truth, parsed from the log (about one `JSON.parse` per record). */
  truth(): GroundTruth;
  /** The ground truth's counts, without parsing (cheap at any size). */
  summary(): TruthSummary;
  readonly stats: SimulatorStats;
  /** Zeroes `stats`. */
  resetStats(): void;
  /** Replaces the random fault settings (`setFaults({})` turns them all off). */
  setFaults(f: FaultOptions): void;
  /** The next `kinds.length` API requests (after auth/org checks) get these faults, in order, before any random fault. */
  failNextRequests(kinds: FaultKind[]): void;
  /** Every cursor issued so far now answers 400 `ADMIN-400-1`; new cursors work. */
  invalidateCursors(): void;
}

const ROTATE_429: readonly FaultKind[] = ['429-retry-after', '429-x-retry-after', '429-reset', '429-none'];
const ROTATE_5XX: readonly FaultKind[] = ['500', '502', '503', '504'];
const ROTATE_BAD: readonly FaultKind[] = ['bad-shape-data-object', 'bad-shape-no-data', 'bad-shape-no-meta'];

const HTML_502 = '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
const TEXT_503 = 'upstream connect error or disconnect/reset before headers. reset reason: overflow';
const HTML_LOGIN =
  '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Log in with Atlassian account</title></head>' +
  '<body><div id="root"><form action="/login" method="post"><input name="username"><button>Continue</button></form></div></body></html>';

type Route = 'events-stream' | 'event' | 'event-actions';

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  query: Record<string, string>;
  authOk: boolean;
  route: Route | 'other';
  fault?: FaultKind;
  slow?: boolean;
}

/** A computed answer before faults transform it. */
interface Answer {
  status: number;
  body: Buffer;
  headers?: Record<string, string>;
  /** Records in an events-stream page. */
  records?: number;
  /** For a page: the same page without `meta` (the `bad-shape-no-meta` fault). */
  withoutMeta?: () => Buffer;
}

interface Window {
  start: number;
  count: number;
}

class SimulatorImpl implements Simulator {
  readonly orgId: string;
  apiKey: string;
  entitled: boolean;
  endStyle: EndStyle;
  readonly stats: SimulatorStats = { requests: 0, byStatus: {}, eventsServed: 0, bytesServed: 0, faults: {}, log: [] };

  readonly #log: EventLog;
  readonly #codec: CursorCodec;
  readonly #faultPrng: Prng;
  readonly #errorPrng: Prng;
  readonly #t0 = Date.now();
  readonly #now: number;
  readonly #rateLimit: RateLimitOptions | undefined;
  readonly #resetPrecision: ResetPrecision;
  readonly #maxLog: number;
  readonly #windows = new Map<string, Window>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #server: Server;
  #faults: Required<FaultOptions> = normalizeFaults({});
  #scripted: FaultKind[] = [];
  #rotation = { r429: 0, r5xx: 0, bad: 0 };
  #epoch = 0;
  #url: string | undefined;

  constructor(o: SimulatorOptions) {
    const seed = o.seed ?? 1;
    this.orgId = o.orgId ?? DEFAULT_ORG_ID;
    this.apiKey = o.apiKey ?? DEFAULT_API_KEY;
    this.entitled = o.entitled ?? true;
    this.endStyle = o.endStyle ?? 'cursor';
    this.#now = o.now ?? this.#t0;
    this.#rateLimit = o.rateLimit;
    if (this.#rateLimit !== undefined && (!(this.#rateLimit.requests >= 0) || !(this.#rateLimit.windowMs > 0))) {
      throw new RangeError('rateLimit needs requests >= 0 and windowMs > 0');
    }
    this.#resetPrecision = o.resetPrecision ?? 'minute';
    this.#maxLog = o.maxLogEntries ?? 100_000;
    this.#faultPrng = new Prng(seed, 'faults');
    this.#errorPrng = new Prng(seed, 'errors');
    this.#codec = new CursorCodec(`cursor-key:${seed}:${this.orgId}`);
    this.setFaults(o.faults ?? {});
    const rates = {
      malformedRate: rate(o.malformedRate ?? 0.01, 'malformedRate'),
      duplicateRate: rate(o.duplicateRate ?? 0.005, 'duplicateRate'),
      duplicateVariantRate: rate(o.duplicateVariantRate ?? 0, 'duplicateVariantRate'),
      lateRate: rate(o.lateRate ?? 0.05, 'lateRate'),
      maxRedeliveryDistance: o.maxRedeliveryDistance ?? 2000,
    };
    if (!Number.isSafeInteger(rates.maxRedeliveryDistance) || rates.maxRedeliveryDistance < 1) throw new RangeError('maxRedeliveryDistance must be an integer >= 1');
    if (rates.duplicateRate + rates.duplicateVariantRate > 1) throw new RangeError('duplicateRate + duplicateVariantRate must be <= 1');
    this.#log = new EventLog(seed, this.orgId, o.linkBase ?? 'https://api.atlassian.com', rates);
    const events = o.events ?? 1000;
    if (!Number.isSafeInteger(events) || events < 0) throw new RangeError('events must be a non-negative integer');
    const spanMs = o.spanMs ?? 6 * 3_600_000;
    this.#log.fill(events, this.#now - spanMs, spanMs);
    this.#server = createServer((req, res) => this.#onRequest(req, res));
  }

  get url(): string {
    if (this.#url === undefined) throw new Error('simulator not started');
    return this.#url;
  }

  start(port = 0, host = '127.0.0.1'): Promise<string> {
    if (this.#server.listening) return Promise.reject(new Error('simulator already started'));
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        const addr = this.#server.address() as AddressInfo;
        this.#url = `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
        resolve(this.#url);
      });
    });
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      // close() alone waits for idle keep-alive sockets to time out.
      this.#server.closeAllConnections();
    });
  }

  append(n: number, opts: { late?: boolean } = {}): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError('append needs a non-negative integer');
    this.#log.append(n, this.#simNow(), opts.late ?? false);
  }

  truth(): GroundTruth {
    return this.#log.truth();
  }

  summary(): TruthSummary {
    return this.#log.summary();
  }

  resetStats(): void {
    this.stats.requests = 0;
    this.stats.byStatus = {};
    this.stats.eventsServed = 0;
    this.stats.bytesServed = 0;
    this.stats.faults = {};
    this.stats.log = [];
  }

  setFaults(f: FaultOptions): void {
    this.#faults = normalizeFaults(f);
  }

  failNextRequests(kinds: FaultKind[]): void {
    this.#scripted.push(...kinds);
  }

  invalidateCursors(): void {
    this.#epoch++;
  }

  #simNow(): number {
    return this.#now + (Date.now() - this.#t0);
  }

  // ---- request handling -------------------------------------------------------------------

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.stats.requests++;
    let url: URL;
    try {
      url = new URL(`http://simulator${req.url ?? '/'}`);
    } catch {
      this.#sendError({ req, res, path: req.url ?? '', query: {}, authOk: false, route: 'other' }, 400, 'ADMIN-400-0', 'Bad Request', 'Malformed request target');
      return;
    }
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) if (!(k in query)) query[k] = v;
    const auth = req.headers.authorization;
    const authOk = auth !== undefined && /^bearer\s+/i.test(auth) && auth.replace(/^bearer\s+/i, '').trim() === this.apiKey;
    const m = /^\/admin\/v1\/orgs\/([^/]+)\/(events-stream|event-actions|events\/([^/]+))\/?$/.exec(url.pathname);
    const route: Route | 'other' = m === null ? 'other' : m[2] === 'events-stream' ? 'events-stream' : m[2] === 'event-actions' ? 'event-actions' : 'event';
    const ctx: Ctx = { req, res, path: url.pathname, query, authOk, route };

    // Order: method, auth, path, org, entitlement, rate limit, faults, handler.
    if (req.method !== 'GET') {
      this.#sendError(ctx, 405, 'ADMIN-405-1', 'Method Not Allowed', `${req.method ?? ''} is not supported`, { Allow: 'GET' });
      return;
    }
    if (!authOk) {
      this.#sendError(ctx, 401, 'ADMIN-401-1', 'Unauthorized', auth === undefined ? 'Missing Authorization header' : 'The API key is invalid, expired or revoked');
      return;
    }
    if (m === null) {
      this.#sendError(ctx, 404, 'ADMIN-404-1', 'Not Found', `No route for ${url.pathname}`);
      return;
    }
    if (safeDecode(m[1] ?? '') !== this.orgId) {
      this.#sendError(ctx, 404, 'ADMIN-404-2', 'Not Found', 'Organization not found');
      return;
    }
    if (!this.entitled) {
      this.#sendError(ctx, 403, 'ADMIN-403-1', 'Forbidden', 'Audit Log Entitlement validation failed');
      return;
    }
    const limited = this.#consumeRateLimit(route);
    if (limited !== undefined) {
      this.#sendError(ctx, 429, 'ADMIN-429-1', 'Too Many Requests', 'Rate limit exceeded', { 'Retry-After': String(limited) });
      return;
    }
    this.#pickFault(ctx);
    const respond = (): void => {
      // A bug here must not throw out of the 'request' event and kill the test process.
      try {
        this.#deliver(ctx, this.#answer(ctx, m[3] === undefined ? undefined : safeDecode(m[3])));
      } catch (err) {
        if (res.headersSent) res.destroy(err as Error);
        else this.#sendError(ctx, 500, 'ADMIN-500-1', 'Internal Server Error', `simulator bug: ${String(err)}`);
      }
    };
    if (ctx.slow === true) {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        respond();
      }, this.#faults.slowMs);
      this.#timers.add(t);
    } else {
      respond();
    }
  }

  #pickFault(ctx: Ctx): void {
    // Two draws per request whatever the settings, so the fault sequence depends only on the
    // seed and the number of requests.
    const r = this.#faultPrng.next();
    const s = this.#faultPrng.next();
    let kind = this.#scripted.shift();
    if (kind === undefined) {
      const f = this.#faults;
      const table: ReadonlyArray<readonly [FaultKind, number]> = [
        ['429', f.rate429], ['5xx', f.rate5xx], ['reset', f.rateReset], ['truncated', f.rateTruncated], ['html', f.rateHtml], ['bad-shape', f.rateBadShape],
      ];
      let acc = 0;
      for (const [k, p] of table) {
        acc += p;
        if (r < acc) {
          kind = k;
          break;
        }
      }
      if (s < f.rateSlow) ctx.slow = true;
    }
    if (kind === 'slow') {
      ctx.slow = true;
      kind = undefined;
    }
    if (kind === '429') kind = ROTATE_429[this.#rotation.r429++ % ROTATE_429.length];
    else if (kind === '5xx') kind = ROTATE_5XX[this.#rotation.r5xx++ % ROTATE_5XX.length];
    else if (kind === 'bad-shape') kind = ROTATE_BAD[this.#rotation.bad++ % ROTATE_BAD.length];
    if (ctx.slow === true) this.#countFault('slow');
    if (kind !== undefined) ctx.fault = kind;
  }

  #answer(ctx: Ctx, eventId: string | undefined): Answer {
    switch (ctx.route) {
      case 'events-stream':
        return this.#page(ctx);
      case 'event': {
        const i = eventId === undefined ? undefined : this.#log.indexOf(eventId);
        if (i === undefined) return this.#errorAnswer(404, 'ADMIN-404-3', 'Not Found', 'Event not found');
        return { status: 200, body: Buffer.from(`{"data":${this.#log.store.text(i)}}`) };
      }
      default:
        return {
          status: 200,
          body: Buffer.from(
            JSON.stringify({
              data: EVENT_ACTIONS.map((a) => ({ id: a.id, type: 'eventActions', attributes: { displayName: a.displayName, groupDisplayNames: a.groupDisplayNames } })),
            }),
          ),
        };
    }
  }

  /** One events-stream page, computed from the cursor's position at request time. */
  #page(ctx: Ctx): Answer {
    const q = ctx.query;
    let limit = DEFAULT_LIMIT;
    if (q.limit !== undefined) {
      if (!/^-?\d{1,9}$/.test(q.limit) || Number(q.limit) < 1) return this.#errorAnswer(400, 'ADMIN-400-2', 'Bad Request', 'limit must be an integer between 1 and 500');
      limit = Math.min(Number(q.limit), MAX_LIMIT);
    }
    const store = this.#log.store;
    let st: CursorState;
    if (q.cursor !== undefined) {
      const c = this.#codec.decode(q.cursor);
      if (c === undefined || c.e !== this.#epoch || c.p > store.length) return this.#errorAnswer(400, 'ADMIN-400-1', 'Bad Request', 'Invalid page cursor');
      st = c;
    } else {
      const from = parseEpochMs(q.from);
      const to = parseEpochMs(q.to);
      if (from === null || to === null) return this.#errorAnswer(400, 'ADMIN-400-3', 'Bad Request', 'Invalid time: from and to must be UNIX epoch times in milliseconds');
      if (from !== undefined && to !== undefined && from > to) return this.#errorAnswer(400, 'ADMIN-400-3', 'Bad Request', 'Invalid time: from is after to');
      const sort = q.sortOrder ?? 'asc';
      if (sort !== 'asc' && sort !== 'desc') return this.#errorAnswer(400, 'ADMIN-400-2', 'Bad Request', 'sortOrder must be asc or desc');
      st = { p: 0, s: sort, e: this.#epoch };
      if (from !== undefined) st.f = from;
      if (to !== undefined) st.t = to;
      st.p = sort === 'asc' ? (from === undefined ? 0 : store.lowerBound(from)) : to === undefined ? store.length : store.lowerBound(to);
    }
    const lo = st.f === undefined ? 0 : store.lowerBound(st.f);
    const hi = st.t === undefined ? store.length : store.lowerBound(st.t);
    let first: number; // first index served
    let count: number;
    let step: 1 | -1;
    let nextP: number;
    let atEnd: boolean;
    let prevP: number | undefined;
    if (st.s === 'asc') {
      const start = Math.max(st.p, lo);
      const end = Math.max(start, Math.min(start + limit, hi));
      first = start;
      count = end - start;
      step = 1;
      nextP = end;
      atEnd = end >= hi;
      prevP = start > lo ? Math.max(lo, start - limit) : undefined;
    } else {
      const top = Math.min(st.p, hi);
      const bottom = Math.min(top, Math.max(top - limit, lo));
      first = top - 1;
      count = top - bottom;
      step = -1;
      nextP = bottom;
      atEnd = bottom <= lo;
      prevP = top < hi ? Math.min(hi, top + limit) : undefined;
    }
    const next = this.endStyle === 'null' && atEnd ? null : this.#codec.encode({ ...st, p: nextP, e: this.#epoch });
    const prev = prevP === undefined ? null : this.#codec.encode({ ...st, p: prevP, e: this.#epoch });
    const origin = `http://${ctx.req.headers.host ?? new URL(this.url).host}`;
    const linkTo = (cursor: string | null): string | null => {
      if (cursor === null) return null;
      const sp = new URLSearchParams({ cursor });
      if (q.limit !== undefined) sp.set('limit', q.limit);
      return `${origin}${ctx.path}?${sp.toString()}`;
    };
    const self = `${origin}${ctx.req.url ?? ctx.path}`;
    const linksJson = `"links":${JSON.stringify({ self, prev: linkTo(prev), next: linkTo(next) })}`;
    const metaJson = `"meta":${JSON.stringify({ next, page_size: count })}`;
    const build = (withMeta: boolean): Buffer => {
      const head = '{"data":[';
      const tail = withMeta ? `],${metaJson},${linksJson}}` : `],${linksJson}}`;
      let total = head.length + Buffer.byteLength(tail) + Math.max(0, count - 1);
      for (let k = 0, i = first; k < count; k++, i += step) total += store.byteLength(i);
      const out = Buffer.allocUnsafe(total);
      let at = out.write(head, 0, 'latin1');
      for (let k = 0, i = first; k < count; k++, i += step) {
        if (k > 0) out[at++] = 0x2c; // ','
        at += store.copyTo(i, out, at);
      }
      out.write(tail, at, 'utf8');
      return out;
    };
    return { status: 200, body: build(true), records: count, withoutMeta: () => build(false) };
  }

  /** Sends `answer`, transformed by the request's fault if it has one. */
  #deliver(ctx: Ctx, answer: Answer): void {
    const fault = ctx.fault;
    const json = { 'Content-Type': 'application/json' };
    if (fault === undefined || (answer.status !== 200 && !isReplacing(fault))) {
      // A body-transforming fault does not apply to an error answer.
      delete ctx.fault;
      if (answer.status === 200 && answer.records !== undefined) {
        this.stats.eventsServed += answer.records;
        this.stats.bytesServed += answer.body.length;
      }
      this.#send(ctx, answer.status, { ...json, ...answer.headers }, answer.body, answer.records);
      return;
    }
    this.#countFault(fault);
    const retry = String(this.#faults.retryAfterSeconds);
    switch (fault) {
      case '429-retry-after':
      case '429-x-retry-after':
      case '429-reset':
      case '429-none': {
        const body = this.#errorBody(429, 'ADMIN-429-1', 'Too Many Requests', 'Rate limit exceeded');
        const resetAt = formatReset(Date.now() + this.#faults.retryAfterSeconds * 1000, this.#resetPrecision);
        const limit = String(this.#rateLimit?.requests ?? 50);
        const headers: Record<string, string> =
          fault === '429-none'
            ? { ...json }
            : { ...json, 'X-RateLimit-Limit': limit, 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': resetAt };
        if (fault === '429-retry-after') headers['Retry-After'] = retry;
        if (fault === '429-x-retry-after') headers['X-Retry-After'] = retry;
        this.#send(ctx, 429, headers, body, undefined, fault !== '429-none');
        return;
      }
      case '500':
        this.#send(ctx, 500, json, this.#errorBody(500, 'ADMIN-500-1', 'Internal Server Error', 'An unexpected error occurred'));
        return;
      case '502':
        this.#send(ctx, 502, { 'Content-Type': 'text/html' }, Buffer.from(HTML_502));
        return;
      case '503':
        this.#send(ctx, 503, { 'Content-Type': 'text/plain' }, Buffer.from(TEXT_503));
        return;
      case '504':
        this.#send(ctx, 504, {}, Buffer.alloc(0));
        return;
      case 'html':
        this.#send(ctx, 200, { 'Content-Type': 'text/html; charset=utf-8' }, Buffer.from(HTML_LOGIN));
        return;
      case 'bad-shape-data-object':
        this.#send(ctx, 200, json, Buffer.from(JSON.stringify({ data: { id: 'events', type: 'events' }, meta: { page_size: 1 } })));
        return;
      case 'bad-shape-no-data':
        this.#send(ctx, 200, json, Buffer.from(JSON.stringify({ message: 'Service temporarily unavailable', statusCode: 200 })));
        return;
      case 'bad-shape-no-meta':
        if (answer.withoutMeta !== undefined) {
          this.stats.eventsServed += answer.records ?? 0;
          this.#send(ctx, 200, json, answer.withoutMeta());
        } else {
          this.#send(ctx, 200, json, Buffer.from('{"data":[]}'));
        }
        return;
      case 'truncated':
        this.#send(ctx, 200, json, answer.body.subarray(0, this.#cutPoint(answer.body.length)));
        return;
      case 'reset': {
        const { res } = ctx;
        this.#record(ctx, 200);
        const okHeaders = { ...json, 'Content-Length': String(answer.body.length) };
        res.writeHead(200, this.#rateLimit === undefined ? okHeaders : this.#headers(ctx, okHeaders));
        res.write(answer.body.subarray(0, this.#cutPoint(answer.body.length)), () => res.socket?.destroy());
        return;
      }
      default:
        // 'slow', '429', '5xx', 'bad-shape' never reach here (resolved in #pickFault).
        this.#send(ctx, answer.status, { ...json, ...answer.headers }, answer.body);
    }
  }

  /** A cut strictly inside a body (so JSON never survives intact). */
  #cutPoint(length: number): number {
    if (length < 2) return 0;
    return Math.max(1, Math.min(length - 1, Math.floor(length * (0.1 + 0.8 * this.#faultPrng.next()))));
  }

  #send(ctx: Ctx, status: number, headers: Record<string, string>, body: Buffer, records?: number, rateHeaders = true): void {
    this.#record(ctx, status, records);
    // Without an enforced limit the simulator announces none: headers claiming a budget it does
    // not enforce would make a pacing client wait for nothing.
    const h = rateHeaders && this.#rateLimit !== undefined ? this.#headers(ctx, headers) : headers;
    h['Content-Length'] = String(body.length);
    ctx.res.writeHead(status, h);
    ctx.res.end(body);
  }

  #sendError(ctx: Ctx, status: number, code: string, title: string, detail: string, extra: Record<string, string> = {}): void {
    this.#send(ctx, status, { 'Content-Type': 'application/json', ...extra }, this.#errorBody(status, code, title, detail));
  }

  #errorAnswer(status: number, code: string, title: string, detail: string): Answer {
    return { status, body: this.#errorBody(status, code, title, detail) };
  }

  #errorBody(status: number, code: string, title: string, detail: string): Buffer {
    return Buffer.from(JSON.stringify({ errors: [{ id: this.#errorPrng.uuid(), status: String(status), code, title, detail }] }));
  }

  /** Adds the X-RateLimit-* headers of the request's route window (without counting the request). */
  #headers(ctx: Ctx, headers: Record<string, string>): Record<string, string> {
    const w = this.#window(ctx.route);
    const limit = this.#rateLimit?.requests ?? 50;
    const windowMs = this.#rateLimit?.windowMs ?? 60_000;
    return {
      'X-RateLimit-Limit': String(limit),
      'X-RateLimit-Remaining': String(Math.max(0, limit - w.count)),
      'X-RateLimit-Reset': formatReset(w.start + windowMs, this.#resetPrecision),
      ...headers,
    };
  }

  #window(route: string): Window {
    const windowMs = this.#rateLimit?.windowMs ?? 60_000;
    const now = Date.now();
    let w = this.#windows.get(route);
    if (w === undefined || now >= w.start + windowMs) {
      w = { start: now, count: 0 };
      this.#windows.set(route, w);
    }
    return w;
  }

  /** Counts the request in its route's window; returns Retry-After seconds if it must be refused. */
  #consumeRateLimit(route: string): number | undefined {
    const w = this.#window(route);
    const rl = this.#rateLimit;
    if (rl !== undefined && w.count >= rl.requests) return Math.max(0, Math.ceil((w.start + rl.windowMs - Date.now()) / 1000));
    w.count++;
    return undefined;
  }

  #countFault(kind: FaultKind): void {
    this.stats.faults[kind] = (this.stats.faults[kind] ?? 0) + 1;
  }

  #record(ctx: Ctx, status: number, records?: number): void {
    const s = this.stats;
    s.byStatus[String(status)] = (s.byStatus[String(status)] ?? 0) + 1;
    const entry: RequestLogEntry = { path: ctx.path, query: ctx.query, status, authOk: ctx.authOk };
    if (ctx.fault !== undefined) entry.fault = ctx.fault;
    else if (ctx.slow === true) entry.fault = 'slow';
    if (records !== undefined) entry.records = records;
    if (s.log.length >= this.#maxLog) s.log.splice(0, Math.max(1, Math.floor(this.#maxLog / 10)));
    s.log.push(entry);
  }
}

/** Faults that replace the answer whatever it was; the others transform a 200 body. */
function isReplacing(f: FaultKind): boolean {
  return f !== 'truncated' && f !== 'reset' && f !== 'bad-shape-no-meta';
}

function normalizeFaults(f: FaultOptions): Required<FaultOptions> {
  const n: Required<FaultOptions> = {
    rate429: rate(f.rate429 ?? 0, 'rate429'),
    retryAfterSeconds: f.retryAfterSeconds ?? 1,
    rate5xx: rate(f.rate5xx ?? 0, 'rate5xx'),
    rateReset: rate(f.rateReset ?? 0, 'rateReset'),
    rateTruncated: rate(f.rateTruncated ?? 0, 'rateTruncated'),
    rateHtml: rate(f.rateHtml ?? 0, 'rateHtml'),
    rateBadShape: rate(f.rateBadShape ?? 0, 'rateBadShape'),
    rateSlow: rate(f.rateSlow ?? 0, 'rateSlow'),
    slowMs: f.slowMs ?? 2000,
  };
  if (!Number.isSafeInteger(n.retryAfterSeconds) || n.retryAfterSeconds < 0) throw new RangeError('retryAfterSeconds must be an integer >= 0');
  if (!(n.slowMs >= 0)) throw new RangeError('slowMs must be >= 0');
  if (n.rate429 + n.rate5xx + n.rateReset + n.rateTruncated + n.rateHtml + n.rateBadShape > 1 + 1e-9) throw new RangeError('fault rates (except rateSlow) must sum to <= 1');
  return n;
}

function rate(v: number, name: string): number {
  if (!(v >= 0 && v <= 1)) throw new RangeError(`${name} must be within [0, 1]`);
  return v;
}

/** undefined when absent, null when not epoch milliseconds. */
function parseEpochMs(v: string | undefined): number | undefined | null {
  if (v === undefined) return undefined;
  return /^\d{1,15}$/.test(v) ? Number(v) : null;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** ISO-8601 UTC rounded up to `precision`: `2023-10-11T17:05Z`, `2023-10-11T17:04:07Z` or full ms. */
export function formatReset(ms: number, precision: ResetPrecision): string {
  if (precision === 'minute') return `${new Date(Math.ceil(ms / 60_000) * 60_000).toISOString().slice(0, 16)}Z`;
  if (precision === 'second') return `${new Date(Math.ceil(ms / 1000) * 1000).toISOString().slice(0, 19)}Z`;
  return new Date(ms).toISOString();
}

/** Builds a simulator; the log is generated now (eagerly), the server starts with `start()`. */
export function createSimulator(options: SimulatorOptions = {}): Simulator {
  return new SimulatorImpl(options);
}
