/**
 * Hostile records for the fuzz tests, each with its own oracle, and the check of what the sink
 * wrote against those oracles.
 *
 * A case knows, from the way it was made, what must become of it: an invalid record the exact
 * reason validate gives, a valid event its id and its canonical time (computed from the epoch
 * the time was spelled from, not by src/time.ts). `assertOutput` then reads the objects back and
 * checks that every valid event is there once (the first occurrence of its id in feeding order
 * wins), byte for byte as fed but for attributes.time, and that every invalid record is
 * quarantined, exactly as fed, with its reason.
 */
import assert from 'node:assert/strict';
import { makeEvent } from './batches.js';
import { hugeString, jsonText, nested, Prng, readObjectLines, TOO_DEEP_LEVELS } from './fuzz.js';

type Json = Record<string, unknown>;

export const TOO_DEEP = 'record: nested too deeply to serialise as JSON';
const MIN_MS = Date.parse('0000-01-01T00:00:00.000Z');
const MAX_MS = Date.parse('9999-12-31T23:59:59.999Z');
const iso = (ms: number): string => new Date(ms).toISOString();

/** What must become of a case. */
export type Expect = { valid: true; id: string; canonicalTime: string } | { valid: false; reason: string };

export interface Case {
  value: unknown;
  expect: Expect;
  /** Too deep for JSON.stringify: the sink quarantines a truncated copy. */
  deep: boolean;
  /** Holds a 10 MiB string or deep nesting: not worth copying. */
  heavy?: boolean;
  label: string;
}

/** Strings that are not RFC 3339 date-times. */
export const NOT_RFC3339 = [
  'yesterday', 'now', '', ' ', '2024-13-45T99:99:99Z', '2024-10-03', '2024-10-03T10:44:26', '2024-10-03T10:44Z',
  '2024-02-30T00:00:00Z', '2023-02-29T00:00:00Z', '1900-02-29T00:00:00Z', '2024-10-03T24:00:00Z', '2024-10-03T23:60:00Z',
  '2024-10-03T23:59:61Z', '2024-10-03T10:44:26+24:00', '2024-10-03T10:44:26+05:60', '2024-10-03T10:44:26.Z',
  '2024-10-03T10:44:26.1234567890Z', '+002024-10-03T10:44:26Z', '10000-01-01T00:00:00Z', '-0001-01-01T00:00:00Z',
  '２０２４-10-03T10:44:26Z', '2024-10-03T10:44:26Z\n', ' 2024-10-03T10:44:26Z', '2024-10-03T10:44:26Z\u0000',
  '2024-10-03T10:44:26\u2028Z', '1696330000', '1696330000000', '2024-10-03T10:44:26+0200', '2024-10-03T10:44:26 Z',
  'Thu, 03 Oct 2024 10:44:26 GMT', '2024-10-03T10:44:26.457Zjunk', '2024-10-03T10:44:26,457Z', '2024-10-03T10:44:26UTC',
  '2024-1-3T1:4:6Z', '2024-10-03T10:44:26.457+00', '\ud8002024-10-03T10:44:26Z', 'NaN', 'null',
];

/** RFC 3339 strings whose instant, in UTC, falls outside years 0000–9999 (no canonical form). */
export const OUT_OF_RANGE = ['9999-12-31T23:59:60Z', '9999-12-31T23:59:60.999Z', '0000-01-01T00:00:00+00:01', '9999-12-31T23:30:00-00:31', '0000-01-01T00:59:59.999+01:00'];

// ---------------------------------------------------------------- field mutations

const WRONG_TYPES: ReadonlyArray<readonly [unknown, string]> = [
  [42, 'number'], [-1.5, 'number'], [1e308, 'number'], [0, 'number'], [true, 'boolean'], [false, 'boolean'],
  [[], 'array'], [['x', 1], 'array'], [{}, 'object'], [{ a: { b: 1 } }, 'object'], ['text', 'string'], ['', 'string'],
];

function wrongFor(expected: 'string' | 'object' | 'array'): Array<readonly [unknown, string]> {
  return WRONG_TYPES.filter(([, k]) => k !== expected);
}

/** The object holding a field (created, valid, if the event lacks it) and its path. */
interface Holder {
  path: string;
  get(e: Json): Json;
}

const attrs = (e: Json): Json => e['attributes'] as Json;
function ensure(obj: Json, key: string): Json {
  const v = obj[key];
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Json;
  const fresh: Json = {};
  obj[key] = fresh;
  return fresh;
}
function element(e: Json, key: 'context' | 'container', i: number): Json {
  let arr = attrs(e)[key];
  if (!Array.isArray(arr)) attrs(e)[key] = arr = [];
  const list = arr as unknown[];
  while (list.length <= i) list.push({ id: `${key}-${list.length}`, type: 'sites', attributes: { n: list.length }, links: { alt: 'https://x/' } });
  return list[i] as Json;
}

const TOP: Holder = { path: '', get: (e) => e };
const ATTRS: Holder = { path: 'attributes', get: attrs };
const ACTOR: Holder = { path: 'attributes.actor', get: (e) => ensure(attrs(e), 'actor') };
const ACTOR_LINKS: Holder = { path: 'attributes.actor.links', get: (e) => ensure(ensure(attrs(e), 'actor'), 'links') };
const LOCATION: Holder = { path: 'attributes.location', get: (e) => ensure(attrs(e), 'location') };
const MESSAGE: Holder = { path: 'message', get: (e) => ensure(e, 'message') };
const LINKS: Holder = { path: 'links', get: (e) => e['links'] as Json };
const ref = (key: 'context' | 'container', i: number): Holder => ({ path: `attributes.${key}[${i}]`, get: (e) => element(e, key, i) });
const refLinks = (key: 'context' | 'container', i: number): Holder => ({ path: `attributes.${key}[${i}].links`, get: (e) => ensure(element(e, key, i), 'links') });

type FieldKind = 'required-string' | 'required-object' | 'optional-string' | 'optional-object' | 'optional-array';
/** Every field the schema names. */
const FIELDS: ReadonlyArray<readonly [Holder, string, FieldKind]> = [
  [TOP, 'id', 'required-string'], [TOP, 'type', 'required-string'], [TOP, 'attributes', 'required-object'], [TOP, 'links', 'required-object'],
  [ATTRS, 'time', 'required-string'], [ATTRS, 'processedAt', 'optional-string'], [ATTRS, 'action', 'optional-string'],
  [ATTRS, 'actor', 'optional-object'], [ACTOR, 'id', 'optional-string'], [ACTOR, 'name', 'optional-string'], [ACTOR, 'email', 'optional-string'],
  [ACTOR, 'links', 'optional-object'], [ACTOR_LINKS, 'self', 'optional-string'], [ACTOR_LINKS, 'alt', 'optional-string'],
  [ATTRS, 'context', 'optional-array'], [ATTRS, 'container', 'optional-array'],
  ...(['context', 'container'] as const).flatMap((key) => [0, 2].flatMap((i) => [
    [ref(key, i), 'id', 'optional-string'], [ref(key, i), 'type', 'optional-string'], [ref(key, i), 'links', 'optional-object'],
    [refLinks(key, i), 'self', 'optional-string'], [refLinks(key, i), 'alt', 'optional-string'],
  ] as const)),
  [ATTRS, 'location', 'optional-object'],
  ...(['ip', 'geo', 'countryName', 'regionName', 'city'] as const).map((k) => [LOCATION, k, 'optional-string'] as const),
  [TOP, 'message', 'optional-object'], [MESSAGE, 'content', 'optional-string'], [MESSAGE, 'format', 'optional-string'],
  [LINKS, 'self', 'optional-string'], [LINKS, 'alt', 'optional-string'],
];

interface Mutation {
  label: string;
  apply: (e: Json) => void;
  reason: string;
}

/** Every wrong value of a field, with the reason validate must give. */
function fieldMutations(h: Holder, key: string, fk: FieldKind): Mutation[] {
  const path = h.path === '' ? key : `${h.path}.${key}`;
  const out: Mutation[] = [];
  const set = (v: unknown) => (e: Json): void => {
    h.get(e)[key] = v;
  };
  const expected = fk.endsWith('string') ? 'string' : fk.endsWith('array') ? 'array' : 'object';
  for (const [v, k] of wrongFor(expected)) out.push({ label: `${path}=${k}`, apply: set(v), reason: `${path}: expected ${expected}, got ${k}` });
  if (fk.startsWith('required')) {
    out.push({ label: `${path} deleted`, apply: (e) => void delete h.get(e)[key], reason: `${path}: missing` });
    out.push({ label: `${path}=null`, apply: set(null), reason: `${path}: missing` });
  }
  if (expected === 'array') {
    // An element that is not an object, after a valid one.
    for (const [v, k] of [...wrongFor('object'), [null, 'null'] as const]) {
      const apply = (e: Json): void => {
        element(e, key as 'context' | 'container', 1);
        (attrs(e)[key] as unknown[])[1] = v;
      };
      out.push({ label: `${path}[1]=${k}`, apply, reason: `${path}[1]: expected object, got ${k}` });
    }
  }
  return out;
}

const ID_SPICE = ['😀', '\u202Eevil\u202C', '\u0000', 'a\u0000b', '\ud800', '\udfff', '\u2028', '\u2029', '__proto__', 'constructor', ' ', 'ünïcödé', '"\\\n'];
const STRING_SPICE = ['', 'emoji 😀', 'rtl \u202Eabc', 'nul \u0000 x', 'lone \ud800 x', 'sep \u2028\u2029', 'ctl \u0001\u001f\u007f', 'quote " \\ /'];

/** Adds a key as an own data property (assigning `__proto__` would set the prototype instead). */
export function defineKey(obj: Json, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Records that are not objects at all. */
function recordValues(): Array<readonly [unknown, string]> {
  return [[42, 'number'], [-1.5e-7, 'number'], [0, 'number'], ['event', 'string'], ['', 'string'], ['\u0000\ud800', 'string'], [null, 'null'], [true, 'boolean'], [false, 'boolean'], [[], 'array'], [[makeEvent()], 'array']];
}

export interface CaseGenOptions {
  /** Instants valid times are drawn from. Default: mostly 2020–2030, some anywhere in years 0000–9999. */
  timeRange?: readonly [number, number];
  /** 10 MiB strings that random cases may use, in all. Default 0. */
  hugeBudget?: number;
}

/** Makes cases from a seeded Prng. */
export class CaseGen {
  readonly #p: Prng;
  readonly #range: readonly [number, number] | undefined;
  #huge: number;
  #n = 0;

  constructor(p: Prng, options: CaseGenOptions = {}) {
    this.#p = p;
    this.#range = options.timeRange;
    this.#huge = options.hugeBudget ?? 0;
  }

  /** A valid RFC 3339 spelling of some instant, and that instant in canonical form. */
  validTime(): { text: string; canonical: string; style: string } {
    const p = this.#p;
    const r = this.#range;
    const t = r !== undefined
      ? r[0] + p.int(r[1] - r[0])
      : p.weighted<number>([
          [Date.parse('2020-01-01T00:00:00Z') + p.int(10 * 365 * 86_400_000), 70],
          [MIN_MS + p.int(86_400_000), 8],
          [MAX_MS - p.int(86_400_000), 8],
          [MIN_MS + Math.floor(p.next() * (MAX_MS - MIN_MS)), 14],
        ]);
    const second = t - (((t % 1000) + 1000) % 1000);
    const style = p.pick(['canonical', 'no-ms', 'fraction', 'lower', 'space', 'offset', 'zero-offset', 'leap'] as const);
    switch (style) {
      case 'canonical':
        return { text: iso(t), canonical: iso(t), style };
      case 'no-ms':
        return { text: `${iso(second).slice(0, 19)}Z`, canonical: iso(second), style };
      case 'fraction': {
        let digits = '';
        for (let i = p.range(1, 9); i > 0; i--) digits += String(p.int(10));
        // Sub-millisecond digits are truncated, never rounded.
        const ms = Number(digits.slice(0, 3).padEnd(3, '0'));
        return { text: `${iso(second).slice(0, 19)}.${digits}Z`, canonical: iso(second + ms), style };
      }
      case 'lower':
        return { text: iso(t).replace('T', 't').replace('Z', 'z'), canonical: iso(t), style };
      case 'space':
        return { text: iso(t).replace('T', ' '), canonical: iso(t), style };
      case 'offset':
      case 'zero-offset': {
        const minutes = style === 'zero-offset' ? 0 : p.range(-(23 * 60 + 59), 23 * 60 + 59);
        const local = t + minutes * 60_000;
        if (local < MIN_MS || local > MAX_MS) return { text: iso(t), canonical: iso(t), style: 'canonical' };
        const sign = minutes < 0 || (minutes === 0 && p.chance(0.5)) ? '-' : '+';
        const abs = Math.abs(minutes);
        const off = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
        return { text: `${iso(local).slice(0, 23)}${off}`, canonical: iso(t), style };
      }
      case 'leap': {
        // "…:59:60" is the instant one second after "…:59:59" (accepted, as most systems do).
        const minute = t - (((t % 60_000) + 60_000) % 60_000);
        if (minute - 1000 < MIN_MS) return { text: iso(t), canonical: iso(t), style: 'canonical' };
        const frac = p.pick(['', '.000', '.5', '.999999']);
        const fracMs = frac === '' ? 0 : Number(frac.slice(1, 4).padEnd(3, '0'));
        return { text: `${iso(minute - 1000).slice(0, 17)}60${frac}Z`, canonical: iso(minute + fracMs), style };
      }
    }
  }

  #freshId(): string {
    const p = this.#p;
    const base = `00000000-0000-4000-8000-${String(++this.#n).padStart(12, '0')}`;
    if (!p.chance(0.2)) return base;
    const spice = p.pick(ID_SPICE);
    return p.chance(0.5) ? `${spice}${base}` : `${base}${spice}`;
  }

  /**
   * Changes that keep an event valid: absent/null/empty optional objects, unknown and
   * prototype-ish keys, unicode, NUL bytes, nesting JSON.stringify can still write, and (within
   * the budget) a 10 MiB string. Returns true if it used a 10 MiB string.
   */
  #benign(e: Json): boolean {
    const p = this.#p;
    const a = attrs(e);
    let heavy = false;
    for (let k = p.range(0, 4); k > 0; k--) {
      switch (p.int(14)) {
        case 0: a['actor'] = p.pick([null, {}, { email: 'not an email', auth: { authType: 'session' } }]); break;
        case 1: a['location'] = p.pick([null, {}]); break;
        case 2: if (p.chance(0.5)) delete e['message']; else e['message'] = null; break;
        case 3: a['context'] = p.pick([null, []]); break;
        case 4: a['container'] = null; break;
        case 5: e['relations'] = null; break;
        case 6: defineKey(p.chance(0.5) ? e : a, p.pick(['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', '\u0000', '😀', '1', '-0']), p.pick([{ id: 'evil', polluted: true }, 'x', null, 1, [1]])); break;
        case 7: ensure(e, 'message')['content'] = p.pick(STRING_SPICE); break;
        case 8: a['action'] = p.pick(STRING_SPICE); break;
        case 9: e['type'] = p.pick(['', 'events', 'EVENTS', ...STRING_SPICE]); break;
        case 10: e['extra'] = nested(p.range(1, 1000), p.chance(0.5) ? 'array' : 'object'); break;
        case 11: if (p.chance(0.5)) delete a['processedAt']; else a['processedAt'] = p.chance(0.5) ? null : this.validTime().text; break;
        case 12: a['unknownAttr'] = { deep: [1, { x: p.pick(STRING_SPICE) }], n: -0.5e-300 }; break;
        case 13:
          if (this.#huge > 0) {
            this.#huge--;
            ensure(e, 'message')['content'] = hugeString();
            heavy = true;
          }
          break;
      }
    }
    return heavy;
  }

  /** A valid event with a fresh id (or `id`) and a time in some valid spelling. */
  valid(id = this.#freshId()): Case & { event: Json } {
    const e = makeEvent({ id }) as Json;
    const t = this.validTime();
    attrs(e)['time'] = t.text;
    const heavy = this.#benign(e);
    return { value: e, event: e, expect: { valid: true, id, canonicalTime: t.canonical }, deep: false, heavy, label: `valid, time ${t.style} ${JSON.stringify(t.text)}` };
  }

  /** A valid event but for `attributes[key]`. */
  badTime(key: 'time' | 'processedAt', text: string, outOfRange = OUT_OF_RANGE.includes(text)): Case & { event: Json } {
    const c = this.valid();
    attrs(c.event)[key] = text;
    const why = outOfRange ? 'outside years 0000-9999 in UTC' : 'not RFC 3339';
    return { ...c, heavy: c.heavy === true || text.length > 100_000, expect: { valid: false, reason: `attributes.${key}: ${why}` }, label: `${key} ${JSON.stringify(text.slice(0, 40))}` };
  }

  #mutated(m: Mutation): Case {
    const c = this.valid();
    m.apply(c.event);
    return { ...c, expect: { valid: false, reason: m.reason }, label: m.label };
  }

  /**
   * One case of every kind of hostility, so each run covers all of them whatever the seed.
   * `huge`: also 10 MiB strings in eight places (~90 MB of JSON).
   */
  systematic(options: { huge: boolean }): Case[] {
    const cases: Case[] = [];
    for (const [h, key, fk] of FIELDS) for (const m of fieldMutations(h, key, fk)) cases.push(this.#mutated(m));
    for (const id of ['', 'x'.repeat(257), 'y'.repeat(1 << 20)]) {
      const c = this.valid();
      c.event['id'] = id;
      cases.push({ ...c, expect: { valid: false, reason: id === '' ? 'id: empty' : 'id: longer than 256 characters' }, label: `id of ${id.length} chars` });
    }
    cases.push({ ...this.valid(`${'z'.repeat(255)}\u0000`), label: 'the longest id accepted' });
    for (const text of [...NOT_RFC3339, ...OUT_OF_RANGE]) for (const key of ['time', 'processedAt'] as const) cases.push(this.badTime(key, text));
    for (const [v, k] of recordValues()) cases.push({ value: v, expect: { valid: false, reason: `record: expected object, got ${k}` }, deep: false, label: `record ${k}` });
    for (let i = 0; i < 40; i++) cases.push(this.valid());
    if (options.huge) cases.push(...this.huge());
    // Nesting JSON.parse accepts but JSON.stringify cannot write: a valid event (the sink
    // quarantines it), an invalid one (both reasons), and a record that is itself that deep.
    const deepValid = this.valid();
    deepValid.event['extra'] = nested(TOO_DEEP_LEVELS);
    cases.push({ ...deepValid, deep: true, heavy: true, label: 'valid, too deep' });
    const deepInvalid = this.badTime('time', 'yesterday');
    deepInvalid.event['extra'] = nested(TOO_DEEP_LEVELS, 'array');
    cases.push({ ...deepInvalid, deep: true, heavy: true, label: 'invalid, too deep' });
    cases.push({ value: nested(TOO_DEEP_LEVELS, 'array'), expect: { valid: false, reason: 'record: expected object, got array' }, deep: true, heavy: true, label: 'record too deep' });
    // Nesting JSON.stringify can still write.
    const deepOk = this.valid();
    deepOk.event['extra'] = nested(2000);
    cases.push({ ...deepOk, heavy: true, label: 'valid, 2000 levels' });
    return cases;
  }

  /**
   * 10 MiB strings: in a valid event's message, an unknown attribute, a key name and its type;
   * as an id, a time, a processedAt and a whole record. `only` picks some of them by label.
   */
  huge(only?: readonly string[]): Case[] {
    const s = hugeString();
    const make = (label: string, f: (c: Case & { event: Json }) => Case): Case => ({ ...f(this.valid()), heavy: true, label });
    const all: Case[] = [
      make('huge message.content', (c) => ((ensure(c.event, 'message')['content'] = s), c)),
      make('huge unknown attribute', (c) => ((attrs(c.event)['blob'] = s), c)),
      make('huge key', (c) => (defineKey(attrs(c.event), s, 1), c)),
      make('huge type', (c) => ((c.event['type'] = s), c)),
      make('huge id', (c) => ((c.event['id'] = s), { ...c, expect: { valid: false, reason: 'id: longer than 256 characters' } })),
      { ...this.badTime('time', s), label: 'huge time' },
      { ...this.badTime('processedAt', s), label: 'huge processedAt' },
      { value: s, expect: { valid: false, reason: 'record: expected object, got string' }, deep: false, heavy: true, label: 'huge record' },
    ];
    return only === undefined ? all : all.filter((c) => only.includes(c.label));
  }

  /** A random case: mostly valid events, wrong fields, bad times, non-objects and re-deliveries. */
  random(earlier: readonly Case[]): Case {
    const p = this.#p;
    switch (p.weighted<string>([['valid', 45], ['field', 25], ['time', 8], ['record', 5], ['dup-variant', 8], ['dup-copy', 4], ['deep', 0.2]])) {
      case 'field': {
        const [h, key, fk] = p.pick(FIELDS);
        return this.#mutated(p.pick(fieldMutations(h, key, fk)));
      }
      case 'time':
        return this.badTime(p.pick(['time', 'processedAt']), p.chance(0.2) ? p.pick(OUT_OF_RANGE) : p.pick(NOT_RFC3339));
      case 'record': {
        const [v, k] = p.pick(recordValues());
        return { value: v, expect: { valid: false, reason: `record: expected object, got ${k}` }, deep: false, label: `record ${k}` };
      }
      case 'dup-variant': {
        // The id of an earlier event, other content.
        const prior = earlier.length > 0 ? p.pick(earlier) : undefined;
        return { ...this.valid(prior?.expect.valid === true ? prior.expect.id : undefined), label: 'same id, other content' };
      }
      case 'dup-copy': {
        // A byte-identical re-delivery of an earlier record, valid or not.
        const prior = earlier.length > 0 ? p.pick(earlier) : undefined;
        if (prior === undefined || prior.heavy === true) return this.valid();
        return { ...prior, value: JSON.parse(JSON.stringify(prior.value)) as unknown, label: `copy of: ${prior.label}` };
      }
      case 'deep': {
        const c = this.valid();
        attrs(c.event)['nested'] = nested(TOO_DEEP_LEVELS);
        return { ...c, deep: true, heavy: true, label: 'valid, too deep (random)' };
      }
      default:
        return this.valid();
    }
  }
}

export function shuffle<T>(p: Prng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = p.int(i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** A case's record as raw JSON text, as an API page would carry it. */
export function caseText(c: Case): string {
  return jsonText(c.value);
}

/** What the output must hold, derived from the cases in feeding order. */
interface Oracle {
  /** id → the exact line of its first valid occurrence. */
  written: Map<string, string>;
  /** Exact quarantine lines (of records JSON.stringify can write), with multiplicity. */
  quarantined: Map<string, number>;
  /** Too-deep records: the reason, and the id of valid events. */
  tooDeep: string[];
  duplicates: number;
}

function oracle(cases: readonly Case[]): Oracle {
  const o: Oracle = { written: new Map(), quarantined: new Map(), tooDeep: [], duplicates: 0 };
  const admitted = new Set<string>();
  const quarantinedIds = new Set<string>();
  for (const c of cases) {
    if (!c.expect.valid) {
      if (c.deep) o.tooDeep.push(`${c.expect.reason}; ${TOO_DEEP}|`);
      else {
        // Dedupe drops an invalid record whose id (a string of 1–256 characters) was quarantined.
        const id = typeof c.value === 'object' && c.value !== null ? (c.value as { id?: unknown }).id : undefined;
        if (typeof id === 'string' && id.length > 0 && id.length <= 256) {
          if (quarantinedIds.has(id)) {
            o.duplicates++;
            continue;
          }
          quarantinedIds.add(id);
        }
        const line = JSON.stringify({ reason: c.expect.reason, record: c.value });
        o.quarantined.set(line, (o.quarantined.get(line) ?? 0) + 1);
      }
      continue;
    }
    const { id, canonicalTime } = c.expect;
    if (admitted.has(id)) {
      o.duplicates++;
      continue;
    }
    admitted.add(id);
    if (c.deep) {
      o.tooDeep.push(`${TOO_DEEP}|${id}`);
      continue;
    }
    // The event as fed, with only attributes.time replaced (in place, so keys keep their order).
    const a = attrs(c.value as Json);
    const fed = a['time'];
    a['time'] = canonicalTime;
    o.written.set(id, JSON.stringify(c.value));
    a['time'] = fed;
  }
  return o;
}

export interface OutputCounts {
  written: number;
  quarantined: number;
  /** Duplicates the oracle expects to have been dropped. */
  duplicates: number;
  objects: number;
}

const show = (s: string): string => JSON.stringify(s.slice(0, 80));

/**
 * Reads back every object under the two prefixes of `dir` and checks them against `cases`, in the
 * order they were fed. Call it before the cases' values are fed (the transforms rewrite
 * attributes.time in place): it returns a function that does the reading and checking.
 */
export function expectOutput(cases: readonly Case[]): (dir: string, eventsPrefix: string, quarantinePrefix: string) => Promise<OutputCounts> {
  const want = oracle(cases);
  return async (dir, eventsPrefix, quarantinePrefix) => {
    const events = await readObjectLines(dir, eventsPrefix);
    const quarantine = await readObjectLines(dir, quarantinePrefix);
    const seen = new Set<string>();
    for (const line of events.lines) {
      const id = (JSON.parse(line) as { id: string }).id;
      assert.ok(!seen.has(id), `id ${show(id)} written twice`);
      seen.add(id);
      const expected = want.written.get(id);
      assert.ok(expected !== undefined, `id ${show(id)} written but not expected`);
      if (line !== expected) assert.equal(line.slice(0, 2000), expected.slice(0, 2000), `event ${show(id)} differs from what was fed`);
      assert.equal(line.length, expected.length, `event ${show(id)} differs from what was fed`);
    }
    const missing = [...want.written.keys()].filter((id) => !seen.has(id));
    assert.deepEqual(missing.map(show), [], 'valid events missing');
    const left = new Map(want.quarantined);
    const tooDeep: string[] = [];
    for (const line of quarantine.lines) {
      const q = JSON.parse(line) as { reason: unknown; record: unknown };
      assert.deepEqual(Object.keys(q), ['reason', 'record']);
      assert.match(String(q.reason), /^[\w.[\]]+: \S/, 'a reason names the field path first');
      const count = left.get(line);
      if (count !== undefined) {
        if (count === 1) left.delete(line);
        else left.set(line, count - 1);
        continue;
      }
      // A record too deep to write is kept truncated, with the reason.
      assert.ok(String(q.reason).endsWith(TOO_DEEP), `unexpected quarantine line: ${line.slice(0, 300)}`);
      assert.ok(line.includes('[truncated: nested too deep]'));
      const id = q.reason === TOO_DEEP ? (q.record as { id?: unknown }).id : '';
      tooDeep.push(`${String(q.reason)}|${String(id)}`);
    }
    assert.deepEqual([...left.keys()].map((l) => l.slice(0, 200)), [], 'invalid records not quarantined, or with another reason');
    assert.deepEqual(tooDeep.sort(), [...want.tooDeep].sort());
    return { written: events.lines.length, quarantined: quarantine.lines.length, duplicates: want.duplicates, objects: events.objects + quarantine.objects };
  };
}
