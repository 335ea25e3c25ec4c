/**
 * The progress line of long work (a backfill), redrawn in place on a terminal:
 *
 *   10.2% · 30,113 written · 450 ev/s · ETA 10 min 54 s · rate-limit waits 62 (75 s) · at 2026-06-13T05:59Z
 *
 * - percent: how far the newest fetched `processedAt` is through the range, from where this run
 *   started (the checkpoint's position in time) to now;
 * - written: events in complete objects since the process started;
 * - ev/s: records received from the API per second over the last ~10 s;
 * - rate-limit waits: how many requests were held for the rate limit, and for how long in all;
 * - ETA: from how fast the position has moved through time (it must outrun the clock).
 *
 * On a narrow terminal the parts at the end are left off (never wrapped: a wrapped line could not
 * be redrawn in place).
 *
 * Only on a TTY (the CLI decides); elsewhere the per-poll and per-object log lines serve. Log
 * lines written through {@link ProgressLine.wrap} clear the line first and redraw it after, so
 * the two never mix. The line stops for good when the source first catches up (or, with
 * `stopWhenCaughtUp: false`, at `stop()`).
 */
import type { Clock } from './clock.js';
import type { PipelineMetrics } from './metrics.js';

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressLineOptions {
  /** Redraw period. Default 1,000 ms. */
  intervalMs?: number;
  /**
   * Stop for good when the source first catches up (a poller then just polls). Default true;
   * `false` for a run that ends when caught up, so the final line, drawn by `stop()` after the
   * last objects are complete, shows every event written.
   */
  stopWhenCaughtUp?: boolean;
}

/** "1 h 02 min", "3 min 05 s", "42 s", "2 d 03 h". */
export function formatEta(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86_400)} d ${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')} h`;
}

const CLEAR = '\r\x1b[2K';

export class ProgressLine {
  readonly #out: ProgressStream;
  readonly #metrics: PipelineMetrics;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #stopWhenCaughtUp: boolean;
  #timer: NodeJS.Timeout | undefined;
  /** The line now on screen (without CLEAR), or '' when none is. */
  #shown = '';
  #done = false;
  /** Whether any line was drawn: `stop()` draws a final line only then. */
  #drawn = false;
  /** Samples of (time, received, position) for the rates, oldest first, ~10 s deep. */
  #samples: { at: number; received: number }[] = [];
  #first: { at: number; position: number } | undefined;

  constructor(out: ProgressStream, deps: { metrics: PipelineMetrics; clock?: Clock }, options: ProgressLineOptions = {}) {
    this.#out = out;
    this.#metrics = deps.metrics;
    this.#clock = deps.clock ?? deps.metrics.clock;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#stopWhenCaughtUp = options.stopWhenCaughtUp ?? true;
  }

  /** The line for the current state (exposed for tests). */
  render(): string {
    const h = this.#metrics.health;
    const now = this.#clock.now();
    this.#samples.push({ at: now, received: h.received });
    while (this.#samples.length > 2 && now - this.#samples[0]!.at > 10_000) this.#samples.shift();
    const oldest = this.#samples[0]!;
    const rate = now > oldest.at ? ((h.received - oldest.received) * 1000) / (now - oldest.at) : 0;
    const start = h.rangeStartMs;
    const pos = h.fetchedUpToMs;
    let percent = '?%';
    let eta = '?';
    if (h.caughtUpMs !== undefined) {
      // Caught up: the stream's end is reached, however old its newest event is.
      percent = '100.0%';
      eta = '0 s';
    } else if (start !== undefined && pos !== undefined && now > start) {
      percent = `${Math.min(100, Math.max(0, ((pos - start) * 100) / (now - start))).toFixed(1)}%`;
      this.#first ??= { at: now, position: pos };
      // How many ms of the stream pass per ms of wall time; the gap to now closes at (speed - 1).
      const elapsed = now - this.#first.at;
      const speed = elapsed > 0 ? (pos - this.#first.position) / elapsed : 0;
      if (speed > 1) eta = formatEta((now - pos) / (speed - 1));
    }
    // Most important first: on a narrow terminal the tail is left off.
    const parts = [
      percent,
      `${h.written.toLocaleString('en-US')} written`,
      `${Math.round(rate).toLocaleString('en-US')} ev/s`,
      `ETA ${eta}`,
      `rate-limit waits ${h.rateLimitWaits.toLocaleString('en-US')} (${Math.round(h.rateLimitWaitMs / 1000).toLocaleString('en-US')} s)`,
      ...(pos === undefined ? [] : [`at ${new Date(pos).toISOString().slice(0, 16)}Z`]),
    ];
    // Longer than the terminal, the line would wrap and CLEAR would erase only its last row.
    const columns = this.#out.columns !== undefined && this.#out.columns > 0 ? this.#out.columns : 80;
    let line = parts.join(' · ');
    while (line.length > columns - 1 && parts.length > 1) {
      parts.pop();
      line = parts.join(' · ');
    }
    return line.slice(0, Math.max(1, columns - 1));
  }

  #draw(): void {
    if (this.#done) return;
    if (this.#stopWhenCaughtUp && this.#metrics.health.caughtUpMs !== undefined) {
      this.stop();
      return;
    }
    // Nothing to say before the run knows its range (state not read yet).
    if (this.#metrics.health.rangeStartMs === undefined) return;
    this.#shown = this.render();
    this.#drawn = true;
    this.#out.write(`${CLEAR}${this.#shown}`);
  }

  start(): void {
    if (this.#timer !== undefined || this.#done) return;
    this.#draw();
    this.#timer = setInterval(() => this.#draw(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Draws the final state and leaves it on its own line. */
  stop(): void {
    if (this.#done) return;
    this.#done = true;
    clearInterval(this.#timer);
    this.#shown = '';
    // A run that failed before it knew its range (a locked state file, say) showed nothing.
    if (!this.#drawn && this.#metrics.health.rangeStartMs === undefined) return;
    this.#out.write(`${CLEAR}${this.render()}\n`);
  }

  /** A stream for the logger: each write clears the progress line first and redraws it after. */
  wrap(stream: ProgressStream): ProgressStream {
    const self = this;
    return {
      get isTTY() {
        return stream.isTTY;
      },
      write(s: string) {
        if (self.#shown === '') return stream.write(s);
        stream.write(`${CLEAR}${s}`);
        return stream.write(self.#shown);
      },
    };
  }
}
