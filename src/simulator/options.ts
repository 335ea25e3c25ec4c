/**
 * Options of the events-stream simulator, their defaults, and the fault vocabulary.
 */

/**
 * A scripted or random fault. Each replaces the normal answer to one request (except `slow`,
 * which only delays it).
 *
 * - `429`: HTTP 429 `ADMIN-429-1`; the retry hint rotates through the four `429-*` kinds below.
 * - `429-retry-after`: 429 with `Retry-After: <retryAfterSeconds>` and the `X-RateLimit-*` headers.
 * - `429-x-retry-after`: 429 with `X-Retry-After: <retryAfterSeconds>` and the `X-RateLimit-*` headers.
 * - `429-reset`: 429 whose only hint is `X-RateLimit-Reset` (now + retryAfterSeconds, at
 *   `resetPrecision`), with `X-RateLimit-Limit` and `X-RateLimit-Remaining: 0`.
 * - `429-none`: 429 with no retry hint and no `X-RateLimit-*` headers at all (a gateway's 429).
 * - `5xx`: rotates through `500`, `502`, `503`, `504`.
 * - `500`: JSON `{"errors":[{... "code":"ADMIN-500-1"}]}`. `502`: an HTML error page.
 *   `503`: a plain-text body. `504`: an empty body.
 * - `reset`: status 200 and headers (with the full Content-Length) and part of the body are
 *   written, then the socket is destroyed.
 * - `truncated`: status 200 with a JSON body cut short; Content-Length matches the cut body.
 * - `html`: status 200, `Content-Type: text/html`, an HTML login page instead of JSON.
 * - `bad-shape`: status 200 JSON of the wrong shape; rotates through `bad-shape-data-object`
 *   (`data` is an object), `bad-shape-no-data` (`{"message": ...}`, neither `data` nor `meta`)
 *   and `bad-shape-no-meta` (the real page's `data` array, without `meta`: a client that treats an
 *   absent `meta.next` as the end of the walk may accept it, and must then resume from its last
 *   cursor).
 * - `slow`: waits `slowMs` before answering normally.
 */
export type FaultKind =
  | '429'
  | '429-retry-after'
  | '429-x-retry-after'
  | '429-reset'
  | '429-none'
  | '5xx'
  | '500'
  | '502'
  | '503'
  | '504'
  | 'reset'
  | 'truncated'
  | 'html'
  | 'bad-shape'
  | 'bad-shape-data-object'
  | 'bad-shape-no-data'
  | 'bad-shape-no-meta'
  | 'slow';

/**
 * Random faults: each rate is the probability that one API request (after authentication and
 * org checks) gets that fault. Draws come from a PRNG stream of their own, seeded by `seed`, so
 * the same sequence of requests meets the same faults. The rates other than `rateSlow` are
 * exclusive and must sum to at most 1; `rateSlow` is drawn independently and can combine.
 */
export interface FaultOptions {
  /** Probability of a 429 whose retry hint rotates (see {@link FaultKind} `429`). Default 0. */
  rate429?: number;
  /** Seconds announced by fault 429s (`Retry-After`, `X-Retry-After`, reset time); integer ≥ 0. Default 1. */
  retryAfterSeconds?: number;
  /** Probability of a 500/502/503/504 with varying body shapes. Default 0. */
  rate5xx?: number;
  /** Probability of a socket destroyed mid-body after a 200 status line. Default 0. */
  rateReset?: number;
  /** Probability of a 200 with a truncated JSON body. Default 0. */
  rateTruncated?: number;
  /** Probability of a 200 with an HTML body. Default 0. */
  rateHtml?: number;
  /** Probability of a 200 JSON body of the wrong shape. Default 0. */
  rateBadShape?: number;
  /** Probability that a request is delayed by `slowMs` before it is answered. Default 0. */
  rateSlow?: number;
  /** Delay of slow answers, ms. Default 2000. */
  slowMs?: number;
}

/** Enforced rate limit: at most `requests` per fixed window of `windowMs`, per API route. */
export interface RateLimitOptions {
  requests: number;
  windowMs: number;
}

/** How the walk ends; see {@link SimulatorOptions.endStyle}. */
export type EndStyle = 'cursor' | 'null';

/** Precision of the `X-RateLimit-Reset` header. */
export type ResetPrecision = 'minute' | 'second' | 'millisecond';

export interface SimulatorOptions {
  /** Seed of every random choice (events, ids, malformed records, faults, cursor MAC key). Default 1. */
  seed?: number | string;
  /** Organization id expected in the path. Default `'5f0e8c1a-3b7d-4e2a-9c6f-1d2b3a4c5e6f'`. */
  orgId?: string;
  /** API key expected as `Authorization: Bearer <apiKey>`. Default `'simulator-test-api-key'`. */
  apiKey?: string;
  /** `false` answers every org request with 403 "Audit Log Entitlement validation failed". Default true. */
  entitled?: boolean;
  /**
   * Fresh records (valid or malformed) in the log at construction. Re-deliveries come on top, so
   * the stream holds `events + duplicates` records. Generated eagerly. Default 1000.
   */
  events?: number;
  /** Fraction of fresh records that are malformed per Panther's Atlassian.Audit schema. Default 0.01. */
  malformedRate?: number;
  /**
   * Fraction of valid events delivered a second time, byte-identical (so with the original's,
   * older, `processedAt`), 1 to `maxRedeliveryDistance` records later. Default 0.005.
   */
  duplicateRate?: number;
  /**
   * Fraction of valid events delivered a second time with different content (same id,
   * `processedAt` of the re-delivery, an extra `attributes.redelivery` key), 1 to
   * `maxRedeliveryDistance` records later. Exclusive of `duplicateRate`. Default 0.
   */
  duplicateVariantRate?: number;
  /**
   * Upper bound of the distance, in fresh records, from an event to its re-delivery; a dedupe
   * window must span at least this many. Re-deliveries never leave the batch (construction or one
   * `append`) of their original: those due past its end come right after its last record. Default 2000.
   */
  maxRedeliveryDistance?: number;
  /** Fraction of valid events whose `attributes.time` is 2 min to 8 h before `processedAt`. Default 0.05. */
  lateRate?: number;
  /** Simulated "now" at construction, epoch ms; the clock then advances with real time. Default `Date.now()`. */
  now?: number;
  /** The initial events' `processedAt` values are spread over the `spanMs` before `now`. Default 6 h. */
  spanMs?: number;
  /** Base of the links inside events (`links.self` etc.), fixed so content does not depend on the port. Default `'https://api.atlassian.com'`. */
  linkBase?: string;
  /**
   * End of the walk. `'cursor'` (Atlassian's description): every page, even an empty one, carries
   * a non-null `meta.next`; past the end it points at the end, so fetching it later returns what
   * was appended since. `'null'` (a vendor's mock): a page that reaches the end of the stream (or
   * of `to`) has `meta.next: null` and `links.next: null`, whether it has data or not; the client
   * must re-fetch the last non-null cursor, which returns the same page again plus anything
   * appended since (cursors denote positions; pages are computed at request time). Default `'cursor'`.
   */
  endStyle?: EndStyle;
  /**
   * Enforced rate limit, announced with `X-RateLimit-Limit/-Remaining/-Reset` on every answer.
   * Default undefined: no limit, and no rate-limit headers (except on injected 429 faults).
   */
  rateLimit?: RateLimitOptions;
  /** Precision of `X-RateLimit-Reset` (rounded up). Default `'minute'` (`2023-10-11T17:05Z`), as observed. */
  resetPrecision?: ResetPrecision;
  /** Random faults from the start. Default none. */
  faults?: FaultOptions;
  /** Maximum entries kept in `stats.log` (older ones are dropped). Default 100000. */
  maxLogEntries?: number;
}

export const DEFAULT_ORG_ID = '5f0e8c1a-3b7d-4e2a-9c6f-1d2b3a4c5e6f';
export const DEFAULT_API_KEY = 'simulator-test-api-key';
export const MAX_LIMIT = 500;
export const DEFAULT_LIMIT = 200;
