/**
 * The simulated audit log: generation of the stream (fresh events, malformed records,
 * re-deliveries) into a {@link RecordStore}, and the ground truth derived from it.
 *
 * Generation is eager: each record is rendered to JSON once, when it enters the log, and pages
 * are served by copying those bytes. Everything is drawn from one PRNG stream, so the same seed
 * and the same sequence of `append` calls give the same records (only the `processedAt` of
 * appended events follows the clock).
 */
import type { AuditEvent } from '../types.js';
import { EventFactory } from './generate.js';
import { Prng } from './prng.js';
import { RecordKind, RecordStore } from './store.js';

export interface GroundTruth {
  /** id → event as first delivered, for every valid distinct event currently in the log. */
  valid: Map<string, AuditEvent>;
  /** Every malformed record, as served, in stream order. */
  invalid: unknown[];
  /** Extra deliveries of ids already delivered (identical or changed). */
  duplicates: number;
  /** Records in the stream: valid distinct + invalid + duplicates. */
  totalRecords: number;
}

/** Counts of the ground truth, without parsing any record. */
export interface TruthSummary {
  valid: number;
  invalid: number;
  duplicates: number;
  totalRecords: number;
  /** UTF-8 bytes of distinct record texts held. */
  bytes: number;
}

export interface LogRates {
  malformedRate: number;
  duplicateRate: number;
  duplicateVariantRate: number;
  lateRate: number;
  /** Re-deliveries land 1 to this many fresh records after their original (within one batch). */
  maxRedeliveryDistance: number;
}

/** A re-delivery waiting for its position. */
interface Pending {
  of: number;
  /** Set for a changed re-delivery: the original event. */
  event?: AuditEvent;
}

export class EventLog {
  readonly store = new RecordStore();
  readonly #prng: Prng;
  readonly #factory: EventFactory;
  readonly #rates: LogRates;
  #valid = 0;
  #invalid = 0;
  #duplicates = 0;
  #byId: Map<string, number> | undefined;

  constructor(seed: number | string, orgId: string, linkBase: string, rates: LogRates) {
    this.#prng = new Prng(seed, 'events');
    this.#factory = new EventFactory(new Prng(seed, 'pools'), orgId, linkBase);
    this.#rates = rates;
  }

  /** Adds `n` fresh records processed over [start, start + spanMs). */
  fill(n: number, start: number, spanMs: number): void {
    const p = this.#prng;
    let last = this.store.length > 0 ? this.store.key(this.store.length - 1) : -Infinity;
    let i = 0;
    this.#generate(n, false, () => {
      // Evenly spread with jitter; ~2 % share the previous record's millisecond.
      let k = p.chance(0.02) && last > -Infinity ? last : start + Math.floor(((i + 0.9 * p.next()) * spanMs) / Math.max(n, 1));
      k = Math.max(k, last);
      last = k;
      i++;
      return k;
    });
  }

  /** Adds `n` fresh records processed from `now` on (0–1 ms apart). `late` makes every valid one late. */
  append(n: number, now: number, late: boolean): void {
    const p = this.#prng;
    let k = Math.max(now, this.store.length > 0 ? this.store.key(this.store.length - 1) : now);
    let first = true;
    this.#generate(n, late, () => {
      if (!first) k += p.int(2);
      first = false;
      return k;
    });
  }

  /** Index of the first delivery of valid event `id`. The index is built on first use. */
  indexOf(id: string): number | undefined {
    if (this.#byId === undefined) {
      this.#byId = new Map();
      for (let i = 0; i < this.store.length; i++) this.#index(i);
    }
    return this.#byId.get(id);
  }

  summary(): TruthSummary {
    return { valid: this.#valid, invalid: this.#invalid, duplicates: this.#duplicates, totalRecords: this.store.length, bytes: this.store.bytes };
  }

  /** Parses every record of the log: costs about one `JSON.parse` per record. */
  truth(): GroundTruth {
    const valid = new Map<string, AuditEvent>();
    const invalid: unknown[] = [];
    let duplicates = 0;
    for (let i = 0; i < this.store.length; i++) {
      const kind = this.store.kind(i);
      if (kind === RecordKind.Valid) {
        const ev = JSON.parse(this.store.text(i)) as AuditEvent;
        valid.set(ev.id, ev);
      } else if (kind === RecordKind.Invalid) {
        invalid.push(JSON.parse(this.store.text(i)));
      } else {
        duplicates++;
      }
    }
    return { valid, invalid, duplicates, totalRecords: this.store.length };
  }

  #generate(n: number, late: boolean, nextKey: () => number): void {
    const p = this.#prng;
    const { malformedRate, duplicateRate, duplicateVariantRate, lateRate, maxRedeliveryDistance } = this.#rates;
    const due = new Map<number, Pending[]>();
    for (let i = 0; i < n; i++) {
      const key = nextKey();
      const made = this.#factory.make(key, lateRate, late);
      if (p.chance(malformedRate)) {
        const { record } = this.#factory.malform(made);
        this.store.push(JSON.stringify(record), key, RecordKind.Invalid);
        this.#invalid++;
      } else {
        const idx = this.store.push(JSON.stringify(made.event), key, RecordKind.Valid);
        this.#valid++;
        this.#index(idx);
        const r = p.next();
        if (r < duplicateRate + duplicateVariantRate) {
          const at = Math.min(i + p.range(1, maxRedeliveryDistance), n - 1);
          const list = due.get(at) ?? [];
          list.push(r < duplicateRate ? { of: idx } : { of: idx, event: made.event });
          due.set(at, list);
        }
      }
      const now = due.get(i);
      if (now !== undefined) {
        due.delete(i);
        for (const d of now) this.#redeliver(d, key);
      }
    }
  }

  #redeliver(d: Pending, key: number): void {
    if (d.event === undefined) {
      this.store.pushCopy(d.of, key, RecordKind.Duplicate);
    } else {
      this.store.push(JSON.stringify(this.#factory.variant(d.event, key)), key, RecordKind.DuplicateVariant);
    }
    this.#duplicates++;
  }

  #index(i: number): void {
    if (this.#byId === undefined || this.store.kind(i) !== RecordKind.Valid) return;
    const id = this.store.id(i);
    if (id !== undefined && !this.#byId.has(id)) this.#byId.set(id, i);
  }
}
