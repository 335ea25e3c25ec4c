/**
 * rate-pacer: spaces API requests so a long backfill stays under the rate limit without 429s and
 * still uses the whole allowed rate.
 *
 * Two rules, whichever asks for the later start wins:
 * 1. The budget: at most `requests` per `windowMs`, spread evenly. Request starts are at least
 *    `windowMs / requests × (1 + margin)` apart, so any window of `windowMs` holds at most
 *    `requests` starts, however the server aligns its windows. The default is events-stream's
 *    50 requests per minute.
 * 2. The headers: when a response says `X-RateLimit-Remaining: 0` before this client has used its
 *    own budget for the window, the server's limit is tighter than the budget (a lower limit, or
 *    other clients of the same key), and the next request waits until `X-RateLimit-Reset` (plus
 *    a small margin). A Remaining of 0 on the budget's last request of a window is expected and
 *    the spacing already covers it: holding until a reset announced at minute precision would
 *    waste up to a minute per window.
 * A 429's own wait (Retry-After etc.) is applied by the caller's retry, not here.
 *
 * Pure bookkeeping: no timers. The caller asks `delay(now)`, sleeps (abortably), then calls
 * `started(now)` and, for each response, `observe(headers, now)`.
 */
import { ConfigError } from '../errors.js';
import { parseDuration } from '../time.js';

export interface RateBudget {
  /** Requests allowed per window. */
  requests: number;
  /** Window length in ms. */
  windowMs: number;
}

/** events-stream: 50 requests per minute per API path. */
export const DEFAULT_RATE_BUDGET: RateBudget = { requests: 50, windowMs: 60_000 };

/** Extra spacing over the exact budget, against network jitter at window edges. */
const SPACING_MARGIN = 0.01;
/** Wait this long past an announced reset, against clock skew and rounding. */
const RESET_MARGIN_MS = 250;
/** Largest budget (the pacer keeps one start time per allowed request). */
export const MAX_BUDGET_REQUESTS = 100_000;
/** A reset announced further out than this is nonsense; cap the wait. */
const MAX_RESET_WAIT_MS = 24 * 3_600_000;

export type Headers = Record<string, string | string[] | undefined>;

/** A response header's first value, trimmed. */
export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return (Array.isArray(v) ? v[0] : v)?.trim();
}

/**
 * `X-RateLimit-Reset` as epoch ms: ISO-8601 UTC, seen with minute precision
 * (`2023-10-11T17:05Z`), seconds and fractions accepted; a bare integer is seconds from now, or
 * epoch seconds (≥ 1e9) or epoch milliseconds (≥ 1e12). Undefined when absent or unreadable.
 */
export function parseRateLimitReset(value: string | undefined, now: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) {
    // A count of seconds from now; a number this large can only be epoch seconds (or ms).
    const n = Number(value);
    if (n >= 1e12) return n;
    if (n >= 1e9) return n * 1000;
    return now + n * 1000;
  }
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i.exec(value);
  if (m === null) return undefined;
  const zone = m[4]!.toUpperCase() === 'Z' ? 'Z' : m[4]!.replace(/^([+-]\d{2}):?(\d{2})$/, '$1:$2');
  const at = Date.parse(`${m[1]}${m[2] ?? ':00'}${zone}`);
  return Number.isFinite(at) ? at : undefined;
}

export class RatePacer {
  readonly #budget: RateBudget | undefined;
  readonly #gapMs: number;
  /** The last `budget.requests` start times, a ring. */
  readonly #starts: Float64Array;
  #count = 0;
  #next = 0;

  /** `budget` undefined: no spacing of its own, only the headers' Remaining/Reset. */
  constructor(budget: RateBudget | undefined) {
    if (budget !== undefined && !(budget.requests > 0 && budget.windowMs > 0)) {
      throw new RangeError('a rate budget needs requests > 0 and windowMs > 0');
    }
    if (budget !== undefined && budget.requests > MAX_BUDGET_REQUESTS) {
      throw new RangeError(`a rate budget allows at most ${MAX_BUDGET_REQUESTS} requests per window`);
    }
    this.#budget = budget;
    this.#gapMs = budget === undefined ? 0 : (budget.windowMs / budget.requests) * (1 + SPACING_MARGIN);
    this.#starts = new Float64Array(budget?.requests ?? 0);
  }

  /** The even spacing of the budget, in ms (0 without one). */
  get gapMs(): number {
    return this.#gapMs;
  }

  /** How long to wait before the next request may start. */
  delay(now: number): number {
    return Math.max(0, this.#next - now);
  }

  /** A request starts now. */
  started(now: number): void {
    this.#next = Math.max(this.#next, now + this.#gapMs);
    if (this.#starts.length > 0) this.#starts[this.#count++ % this.#starts.length] = now;
  }

  /** True when this client started its whole budget within the last window. */
  #budgetSpent(now: number): boolean {
    const b = this.#budget;
    if (b === undefined || this.#count < b.requests) return false;
    const oldest = this.#starts[this.#count % b.requests]!;
    return oldest > now - b.windowMs;
  }

  /** A response arrived: an exhausted window holds the next request until its reset. */
  observe(headers: Headers, now: number): void {
    const remaining = Number(header(headers, 'x-ratelimit-remaining') ?? NaN);
    if (!Number.isFinite(remaining) || remaining > 0 || this.#budgetSpent(now)) return;
    const reset = parseRateLimitReset(header(headers, 'x-ratelimit-reset'), now);
    // A reset already past (rounded down, or a skewed clock) says nothing: the budget spacing
    // applies, and a 429 would carry its own wait.
    if (reset === undefined || reset <= now) return;
    this.#next = Math.max(this.#next, Math.min(reset, now + MAX_RESET_WAIT_MS) + RESET_MARGIN_MS);
  }
}

/**
 * `--rate-limit` (and ATLASSIAN_AUDIT_RATE_LIMIT): "N" per minute, "N/DURATION" (at most a day),
 * or "0" for no budget of its own (false). Undefined stays undefined; anything else is a
 * ConfigError.
 */
export function parseRateBudget(v: string | undefined): RateBudget | false | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*(\d+)\s*(?:\/\s*(\S+))?\s*$/.exec(v);
  const requests = m === null ? NaN : Number(m[1]);
  const windowMs = m?.[2] === undefined ? 60_000 : parseDuration(m[2]);
  if (requests === 0 && m?.[2] === undefined) return false;
  if (!Number.isInteger(requests) || requests < 1 || requests > MAX_BUDGET_REQUESTS || windowMs === undefined || windowMs < 1 || windowMs > 86_400_000) {
    throw new ConfigError(`--rate-limit must be requests per minute like 50, or per duration (at most 1d) like 300/1m or 10/2s, or 0 for none (got ${JSON.stringify(v)})`);
  }
  return { requests, windowMs };
}
