/**
 * The log drop-off alarm: when no new event has been written for `afterMs`, the
 * `dropoff_alarm` gauge goes to 1 and one warning is logged; when events are written again, the
 * gauge goes back to 0 and one info line is logged.
 *
 * "Written" means in a complete object (quarantined records and duplicates do not count). The
 * quiet time runs from the last such object; until one completes, from when the checkpoint last
 * recorded events written (`lastEventsWrittenAt`; in an older state file, its newest processedAt),
 * else from when the process started. The alarm is evaluated every `min(afterMs / 10, 60 s)` and at every scrape.
 */
import type { Clock } from './clock.js';
import { silentLogger, type Logger } from './log.js';
import type { PipelineMetrics } from './metrics.js';

/** The range `--dropoff-after` accepts: 15 minutes to 30 days. */
export const DROPOFF_MIN_MS = 15 * 60_000;
export const DROPOFF_MAX_MS = 30 * 86_400_000;

export interface DropoffAlarmOptions {
  /** Quiet time that raises the alarm, ms. */
  afterMs: number;
}

export interface DropoffAlarmDeps {
  metrics: PipelineMetrics;
  logger?: Logger;
  /** Default: the metrics' clock. */
  clock?: Clock;
}

export class DropoffAlarm {
  readonly #afterMs: number;
  readonly #metrics: PipelineMetrics;
  readonly #logger: Logger;
  readonly #clock: Clock;
  /** The last write (or start) the alarm was raised against. */
  #raisedAgainst: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #check = (): void => {
    this.check();
  };

  constructor(options: DropoffAlarmOptions, deps: DropoffAlarmDeps) {
    if (!Number.isFinite(options.afterMs) || options.afterMs <= 0) throw new RangeError('afterMs must be a positive number of milliseconds');
    this.#afterMs = options.afterMs;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger ?? silentLogger;
    this.#clock = deps.clock ?? deps.metrics.clock;
    deps.metrics.health.checkDropoff = this.#check;
  }

  /** Evaluates the alarm now; returns the gauge's value. */
  check(): 0 | 1 {
    const h = this.#metrics.health;
    // After a restart, until an events object completes, the last events write the checkpoint
    // recorded stands in: a poller restarted more often than --dropoff-after still raises the
    // alarm. (Not newestProcessedAtMs, which quarantine-only objects also move.)
    const last = h.lastWrittenMs ?? h.resumedLastWriteMs ?? h.startedMs;
    const now = this.#clock.now();
    if (this.#raisedAgainst === undefined) {
      if (now - last >= this.#afterMs) {
        this.#raisedAgainst = last;
        h.dropoff = 1;
        this.#logger.warn('audit log drop-off: no new event written for longer than --dropoff-after', {
          quietSince: new Date(last).toISOString(),
          quietForSeconds: Math.round((now - last) / 1000),
          dropoffAfterSeconds: Math.round(this.#afterMs / 1000),
        });
      }
    } else if (last > this.#raisedAgainst) {
      const quietMs = last - this.#raisedAgainst;
      this.#raisedAgainst = undefined;
      h.dropoff = 0;
      this.#logger.info('audit log drop-off over: events are being written again', {
        wroteAt: new Date(last).toISOString(),
        quietForSeconds: Math.round(quietMs / 1000),
      });
    }
    return h.dropoff;
  }

  /** Checks on a timer (unref'd, so it never keeps the process alive). */
  start(): void {
    clearInterval(this.#timer);
    this.#metrics.health.checkDropoff = this.#check;
    this.#timer = setInterval(() => this.check(), Math.min(this.#afterMs / 10, 60_000));
    this.#timer.unref();
  }

  /** Stops the timer and the checks at scrape time (the gauge keeps its last value). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#metrics.health.checkDropoff === this.#check) this.#metrics.health.checkDropoff = undefined;
  }
}
