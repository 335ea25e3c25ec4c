/**
 * The events-stream simulator, over real HTTP on 127.0.0.1 (global fetch, i.e. undici).
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSimulator, MALFORMED_KINDS } from '../src/simulator/index.js';
import type { FaultKind, Simulator, SimulatorOptions } from '../src/simulator/index.js';
import type { AuditEvent } from '../src/types.js';

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

async function get(sim: Simulator, pathAndQuery: string, key: string | null = sim.apiKey): Promise<Reply> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(pathAndQuery.startsWith('http') ? pathAndQuery : `${sim.url}${pathAndQuery}`, { headers });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

function streamPath(sim: Simulator, query: Record<string, string | number> = {}): string {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
  const s = q.toString();
  return `/admin/v1/orgs/${sim.orgId}/events-stream${s === '' ? '' : `?${s}`}`;
}

/** Walks the stream from `query` until an empty page or a null `meta.next`. */
async function walk(sim: Simulator, query: Record<string, string | number>): Promise<{ records: unknown[]; pages: Reply[]; lastCursor: string | undefined }> {
  const records: unknown[] = [];
  const pages: Reply[] = [];
  let lastCursor: string | undefined;
  let r = await get(sim, streamPath(sim, query));
  for (;;) {
    assert.equal(r.status, 200, r.text);
    pages.push(r);
    assert.ok(Array.isArray(r.json.data));
    records.push(...r.json.data);
    const next: string | null = r.json.meta.next;
    if (next === null || r.json.data.length === 0) break;
    lastCursor = next;
    // Follow links.next: a full URL on the same origin carrying the cursor.
    const link: string = r.json.links.next;
    assert.equal(new URL(link).origin, sim.url);
    assert.equal(new URL(link).searchParams.get('cursor'), next);
    r = await get(sim, link);
  }
  return { records, pages, lastCursor };
}

/** Panther's Atlassian.Audit rules, as the pipeline's validator should apply them. */
function isValid(r: unknown): boolean {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(r) || typeof r.id !== 'string' || typeof r.type !== 'string' || !isObj(r.attributes) || !isObj(r.links)) return false;
  const t = r.attributes.time;
  if (typeof t !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(t) || Number.isNaN(Date.parse(t))) return false;
  if (r.attributes.context !== undefined && !Array.isArray(r.attributes.context)) return false;
  if (r.attributes.container !== undefined && !Array.isArray(r.attributes.container)) return false;
  return true;
}

const sims: Simulator[] = [];
async function started(opts: SimulatorOptions): Promise<Simulator> {
  const sim = createSimulator(opts);
  await sim.start();
  sims.push(sim);
  return sim;
}
after(async () => {
  await Promise.all(sims.map((s) => s.close()));
});

describe('pagination', () => {
  let sim: Simulator;
  before(async () => {
    sim = await started({ events: 3000, malformedRate: 0.05, duplicateRate: 0.02, duplicateVariantRate: 0.01 });
  });

  it('walks every record once in processedAt order, and desc is the exact reverse', async () => {
    const truth = sim.truth();
    assert.ok(truth.invalid.length > 50 && truth.duplicates > 30, 'the log has malformed records and re-deliveries');
    assert.equal(truth.totalRecords, truth.valid.size + truth.invalid.length + truth.duplicates);

    const asc = await walk(sim, { limit: 500 });
    assert.equal(asc.records.length, truth.totalRecords);
    for (const p of asc.pages.slice(0, -2)) assert.equal(p.json.meta.page_size, 500);

    // First deliveries come in processedAt order, and are exactly truth.valid.
    const seen = new Map<string, AuditEvent>();
    const invalid: unknown[] = [];
    let dups = 0;
    let last = -Infinity;
    for (const r of asc.records) {
      if (!isValid(r)) {
        invalid.push(r);
        continue;
      }
      const ev = r as AuditEvent;
      if (seen.has(ev.id)) {
        dups++;
        continue;
      }
      seen.set(ev.id, ev);
      const pa = Date.parse(ev.attributes.processedAt ?? '');
      assert.ok(pa >= last, `processedAt order broken at ${ev.id}`);
      last = pa;
    }
    assert.equal(seen.size, truth.valid.size);
    for (const [id, ev] of seen) assert.deepEqual(ev, truth.valid.get(id));
    assert.deepEqual(invalid, truth.invalid);
    assert.equal(dups, truth.duplicates);

    const desc = await walk(sim, { limit: 500, sortOrder: 'desc' });
    assert.equal(desc.records.length, truth.totalRecords);
    assert.deepEqual(desc.records, [...asc.records].reverse());
  });

  it('default limit is 200, limits above 500 clamp to 500, limit < 1 is a 400', async () => {
    assert.equal((await get(sim, streamPath(sim))).json.data.length, 200);
    const big = await get(sim, streamPath(sim, { limit: 100000 }));
    assert.equal(big.json.data.length, 500);
    assert.equal(big.json.meta.page_size, 500);
    for (const bad of ['0', '-3', 'ten']) {
      const r = await get(sim, streamPath(sim, { limit: bad }));
      assert.equal(r.status, 400);
      assert.equal(r.json.errors[0].status, '400');
    }
  });

  it('the same cursor always yields the same page (cursors denote positions)', async () => {
    const p1 = await get(sim, streamPath(sim, { limit: 50 }));
    const c = p1.json.meta.next as string;
    const a = await get(sim, streamPath(sim, { cursor: c, limit: 50 }));
    const b = await get(sim, streamPath(sim, { cursor: c, limit: 50 }));
    assert.deepEqual(a.json.data, b.json.data);
    // A different limit from the same position starts at the same record.
    const c2 = await get(sim, streamPath(sim, { cursor: c, limit: 7 }));
    assert.deepEqual(c2.json.data, a.json.data.slice(0, 7));
    // prev points back at the previous page.
    const prev = await get(sim, a.json.links.prev as string);
    assert.deepEqual(prev.json.data, p1.json.data);
  });

  it('from/to filter on processedAt (inclusive from, exclusive to); bad times are 400 ADMIN-400-3', async () => {
    const clean = await started({ events: 2000, malformedRate: 0, duplicateRate: 0, seed: 7 });
    const events = [...clean.truth().valid.values()];
    const from = Date.parse(events[300]?.attributes.processedAt ?? '');
    const to = Date.parse(events[1500]?.attributes.processedAt ?? '');
    const expected = events.filter((e) => {
      const pa = Date.parse(e.attributes.processedAt ?? '');
      return pa >= from && pa < to;
    });
    const got = await walk(clean, { from, to, limit: 500 });
    assert.deepEqual(got.records, expected);
    const gotDesc = await walk(clean, { from, to, limit: 333, sortOrder: 'desc' });
    assert.deepEqual(gotDesc.records, [...expected].reverse());

    const bad: Array<Record<string, string | number>> = [{ from: 'yesterday' }, { to: new Date(to).toISOString() }, { from: to, to: from }, { from: '' }, { from: -5 }];
    for (const q of bad) {
      const r = await get(clean, streamPath(clean, q));
      assert.equal(r.status, 400);
      assert.equal(r.json.errors[0].code, 'ADMIN-400-3');
    }
  });
});

describe('end of stream', () => {
  it("'cursor' style: the last page has a cursor; past the end, data [] and a cursor that later yields appended events", async () => {
    const sim = await started({ events: 1234, duplicateRate: 0, seed: 2 });
    const { pages, lastCursor } = await walk(sim, { limit: 500 });
    // Pages of 500, 500, 234, then the empty page that ends the walk.
    assert.deepEqual(pages.map((p) => p.json.data.length), [500, 500, 234, 0]);
    const lastData = pages[2];
    const empty = pages[3];
    assert.ok(lastData !== undefined && empty !== undefined);
    assert.equal(typeof lastData.json.meta.next, 'string');
    assert.equal(typeof empty.json.meta.next, 'string', 'the empty page still carries a cursor');
    assert.equal(empty.json.meta.page_size, 0);
    assert.equal(lastCursor, lastData.json.meta.next);

    // Re-fetching the cursor returned on the last page returns only new events.
    const again = await get(sim, streamPath(sim, { cursor: lastCursor ?? '' }));
    assert.deepEqual(again.json.data, []);
    sim.append(25);
    const fresh = await get(sim, streamPath(sim, { cursor: empty.json.meta.next as string }));
    assert.equal(fresh.json.data.length, 25);
    const truth = sim.truth();
    assert.equal(truth.totalRecords, 1234 + 25);
    for (const r of fresh.json.data as unknown[]) {
      if (isValid(r)) assert.ok(truth.valid.has((r as AuditEvent).id));
    }
    const fromLastPage = await get(sim, streamPath(sim, { cursor: lastCursor ?? '' }));
    assert.deepEqual(fromLastPage.json.data, fresh.json.data);
  });

  it("'null' style: the page reaching the end has next null even with data; the last non-null cursor re-serves that page plus new events", async () => {
    const sim = await started({ events: 1234, duplicateRate: 0, endStyle: 'null', seed: 3 });
    const { pages, lastCursor } = await walk(sim, { limit: 500 });
    assert.deepEqual(pages.map((p) => p.json.data.length), [500, 500, 234]);
    const lastPage = pages[2];
    assert.ok(lastPage !== undefined && lastCursor !== undefined);
    assert.equal(lastPage.json.meta.next, null);
    assert.equal(lastPage.json.links.next, null);

    const same = await get(sim, streamPath(sim, { cursor: lastCursor, limit: 500 }));
    assert.deepEqual(same.json.data, lastPage.json.data);
    assert.equal(same.json.meta.next, null);

    sim.append(10);
    const grown = await get(sim, streamPath(sim, { cursor: lastCursor, limit: 500 }));
    assert.equal(grown.json.data.length, 244);
    assert.deepEqual(grown.json.data.slice(0, 234), lastPage.json.data);
    assert.equal(grown.json.meta.next, null);

    // An empty page also has next null.
    const future = await get(sim, streamPath(sim, { from: Date.now() + 86_400_000 }));
    assert.deepEqual(future.json.data, []);
    assert.equal(future.json.meta.next, null);

    // A full page that reaches the end also has next null: 1244 records, limit 311 → 4 full pages.
    const full = await walk(sim, { limit: 311 });
    assert.deepEqual(full.pages.map((p) => p.json.data.length), [311, 311, 311, 311]);
    assert.equal(full.pages[3]?.json.meta.next, null);
    assert.equal(typeof full.pages[2]?.json.meta.next, 'string');
  });
});

describe('errors', () => {
  let sim: Simulator;
  before(async () => {
    sim = await started({ events: 100 });
  });

  it('401 without or with a wrong key, before any other check', async () => {
    for (const key of [null, 'wrong-key']) {
      const r = await get(sim, '/admin/v1/orgs/not-my-org/events-stream', key);
      assert.equal(r.status, 401);
      const e = r.json.errors[0];
      assert.equal(e.status, '401');
      assert.equal(e.code, 'ADMIN-401-1');
      assert.equal(e.title, 'Unauthorized');
      assert.equal(typeof e.id, 'string');
      assert.equal(typeof e.detail, 'string');
      // No limit is enforced here, so none is announced (see the rate-limit tests).
      assert.equal(r.headers.get('x-ratelimit-limit'), null);
    }
    const rotated = sim.apiKey;
    sim.apiKey = 'rotated';
    assert.equal((await get(sim, streamPath(sim), rotated)).status, 401);
    sim.apiKey = rotated;
    assert.ok(sim.stats.log.some((l) => !l.authOk && l.status === 401));
  });

  it('404 ADMIN-404-2 for an unknown org, 404 for unknown paths and event ids', async () => {
    const r = await get(sim, '/admin/v1/orgs/00000000-0000-4000-8000-000000000000/events-stream');
    assert.equal(r.status, 404);
    assert.equal(r.json.errors[0].code, 'ADMIN-404-2');
    assert.equal((await get(sim, '/admin/v1/orgs/x')).status, 404);
    assert.equal((await get(sim, `/admin/v1/orgs/${sim.orgId}/events-streams`)).status, 404);
    assert.equal((await get(sim, `/admin/v1/orgs/${sim.orgId}/events/no-such-id`)).status, 404);
  });

  it('403 "Audit Log Entitlement validation failed" without Guard', async () => {
    const unentitled = await started({ events: 10, entitled: false });
    const r = await get(unentitled, streamPath(unentitled));
    assert.equal(r.status, 403);
    assert.equal(r.json.errors[0].status, '403');
    assert.equal(r.json.errors[0].detail, 'Audit Log Entitlement validation failed');
  });

  it('garbage, tampered and invalidated cursors are 400 ADMIN-400-1', async () => {
    const first = await get(sim, streamPath(sim, { limit: 10 }));
    const cursor = first.json.meta.next as string;
    const tampered = cursor.slice(0, 20) + (cursor[20] === 'A' ? 'B' : 'A') + cursor.slice(21);
    for (const c of ['garbage', tampered, Buffer.from('{"p":5,"s":"asc","e":0}').toString('base64url')]) {
      const r = await get(sim, streamPath(sim, { cursor: c }));
      assert.equal(r.status, 400);
      assert.equal(r.json.errors[0].code, 'ADMIN-400-1');
    }
    assert.equal((await get(sim, streamPath(sim, { cursor }))).status, 200);
    sim.invalidateCursors();
    const stale = await get(sim, streamPath(sim, { cursor }));
    assert.equal(stale.status, 400);
    assert.equal(stale.json.errors[0].code, 'ADMIN-400-1');
    // A new walk gets new cursors that work.
    const renewed = await get(sim, streamPath(sim, { limit: 10 }));
    assert.equal((await get(sim, streamPath(sim, { cursor: renewed.json.meta.next as string }))).status, 200);
  });

  it('serves single events and the event-actions list', async () => {
    const [id, ev] = [...sim.truth().valid][5] ?? [];
    assert.ok(id !== undefined);
    const one = await get(sim, `/admin/v1/orgs/${sim.orgId}/events/${id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.json.data, ev);
    const actions = await get(sim, `/admin/v1/orgs/${sim.orgId}/event-actions`);
    assert.equal(actions.status, 200);
    const ids = (actions.json.data as Array<{ id: string; type: string; attributes: { displayName: string; groupDisplayNames: string[] } }>).map((a) => {
      assert.equal(a.type, 'eventActions');
      assert.equal(typeof a.attributes.displayName, 'string');
      assert.ok(Array.isArray(a.attributes.groupDisplayNames));
      return a.id;
    });
    assert.ok(ids.includes('api_token_created') && ids.includes('jira_issue_viewed'));
  });
});

describe('faults', () => {
  it('every scripted fault kind is served as described', async () => {
    const sim = await started({ events: 600, faults: { retryAfterSeconds: 0, slowMs: 300 } });
    const kinds: FaultKind[] = [
      '429-retry-after', '429-x-retry-after', '429-reset', '429-none', '500', '502', '503', '504',
      'truncated', 'html', 'bad-shape-data-object', 'bad-shape-no-data', 'bad-shape-no-meta',
    ];
    sim.failNextRequests(kinds);
    const path = streamPath(sim, { limit: 500 });
    const r: Record<string, Reply> = {};
    for (const k of kinds) r[k] = await get(sim, path);
    const h = (k: string, name: string): string | null => r[k]?.headers.get(name) ?? null;

    for (const k of kinds.slice(0, 4)) {
      assert.equal(r[k]?.status, 429, k);
      assert.equal(r[k]?.json.errors[0].code, 'ADMIN-429-1');
    }
    assert.equal(h('429-retry-after', 'retry-after'), '0');
    assert.equal(h('429-x-retry-after', 'x-retry-after'), '0');
    assert.equal(h('429-x-retry-after', 'retry-after'), null);
    assert.match(h('429-reset', 'x-ratelimit-reset') ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\dZ$/);
    assert.equal(h('429-reset', 'retry-after'), null);
    assert.equal(h('429-reset', 'x-retry-after'), null);
    for (const name of ['retry-after', 'x-retry-after', 'x-ratelimit-reset', 'x-ratelimit-remaining']) assert.equal(h('429-none', name), null);

    assert.equal(r['500']?.status, 500);
    assert.equal(r['500']?.json.errors[0].code, 'ADMIN-500-1');
    assert.equal(r['502']?.status, 502);
    assert.match(h('502', 'content-type') ?? '', /text\/html/);
    assert.equal(r['502']?.json, undefined);
    assert.equal(r['503']?.status, 503);
    assert.match(h('503', 'content-type') ?? '', /text\/plain/);
    assert.equal(r['504']?.status, 504);
    assert.equal(r['504']?.text, '');

    assert.equal(r.truncated?.status, 200);
    assert.equal(Buffer.byteLength(r.truncated?.text ?? ''), Number(h('truncated', 'content-length')));
    assert.equal(r.truncated?.json, undefined, 'a truncated body does not parse');
    assert.equal(r.html?.status, 200);
    assert.match(h('html', 'content-type') ?? '', /text\/html/);
    assert.equal(r.html?.json, undefined);
    assert.ok(!Array.isArray(r['bad-shape-data-object']?.json.data) && r['bad-shape-data-object']?.json.data !== undefined);
    assert.equal(r['bad-shape-no-data']?.json.data, undefined);
    assert.equal(r['bad-shape-no-data']?.json.meta, undefined);
    assert.equal(r['bad-shape-no-meta']?.json.data.length, 500);
    assert.equal(r['bad-shape-no-meta']?.json.meta, undefined);

    // reset: status and headers arrive, then the socket dies mid-body.
    sim.failNextRequests(['reset']);
    await assert.rejects(async () => {
      const res = await fetch(`${sim.url}${path}`, { headers: { authorization: `Bearer ${sim.apiKey}` } });
      assert.equal(res.status, 200);
      await res.text();
    });

    // slow: answered normally, late.
    sim.failNextRequests(['slow']);
    const t = performance.now();
    const slow = await get(sim, path);
    assert.ok(performance.now() - t >= 280);
    assert.equal(slow.status, 200);
    assert.equal(slow.json.data.length, 500);

    // Rotating kinds.
    sim.failNextRequests(['5xx', '5xx', '5xx', '5xx', '429', '429', '429', '429', 'bad-shape']);
    const statuses: number[] = [];
    for (let i = 0; i < 9; i++) statuses.push((await get(sim, path)).status);
    assert.deepEqual(statuses, [500, 502, 503, 504, 429, 429, 429, 429, 200]);

    // Afterwards the stream is served normally; auth is checked before faults.
    sim.failNextRequests(['500']);
    assert.equal((await get(sim, path, 'bad')).status, 401);
    assert.equal((await get(sim, path)).status, 500);
    assert.equal((await get(sim, path)).status, 200);

    for (const k of [...kinds, 'reset', 'slow']) assert.ok((sim.stats.faults[k] ?? 0) >= 1, `fault ${k} counted`);
    assert.ok(sim.stats.log.some((l) => l.fault === 'reset' && l.status === 200));
  });

  it('random faults are deterministic for a seed', async () => {
    const statuses = async (): Promise<number[]> => {
      const sim = await started({ events: 50, seed: 11, faults: { rate5xx: 0.3, rate429: 0.2, rateHtml: 0.1, retryAfterSeconds: 0 } });
      const out: number[] = [];
      for (let i = 0; i < 40; i++) out.push((await get(sim, streamPath(sim))).status);
      return out;
    };
    const a = await statuses();
    assert.deepEqual(await statuses(), a);
    assert.ok(a.includes(200) && a.includes(429) && a.some((s) => s >= 500), `mixed statuses: ${a.join(',')}`);
  });
});

describe('rate limits', () => {
  it('headers on every response, Remaining decrements, 429 ADMIN-429-1 when exceeded, recovers after the window', async () => {
    const sim = await started({ events: 20, rateLimit: { requests: 3, windowMs: 1200 }, resetPrecision: 'second' });
    const path = streamPath(sim);
    const remaining: Array<string | null> = [];
    for (let i = 0; i < 3; i++) {
      const r = await get(sim, path);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-ratelimit-limit'), '3');
      assert.match(r.headers.get('x-ratelimit-reset') ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      remaining.push(r.headers.get('x-ratelimit-remaining'));
    }
    assert.deepEqual(remaining, ['2', '1', '0']);
    const limited = await get(sim, path);
    assert.equal(limited.status, 429);
    assert.equal(limited.json.errors[0].code, 'ADMIN-429-1');
    assert.equal(limited.headers.get('x-ratelimit-remaining'), '0');
    assert.match(limited.headers.get('retry-after') ?? '', /^\d+$/);
    await sleep(1300);
    const ok = await get(sim, path);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-ratelimit-remaining'), '2');
  });

  it('an enforced limit reports its reset at minute precision by default; without one no rate-limit headers are sent', async () => {
    const limited = await started({ events: 20, rateLimit: { requests: 50, windowMs: 60_000 } });
    const a = await get(limited, streamPath(limited));
    const b = await get(limited, streamPath(limited));
    assert.equal(a.headers.get('x-ratelimit-limit'), '50');
    assert.equal(Number(a.headers.get('x-ratelimit-remaining')) - 1, Number(b.headers.get('x-ratelimit-remaining')));
    assert.match(a.headers.get('x-ratelimit-reset') ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\dZ$/);
    const free = await started({ events: 20 });
    const c = await get(free, streamPath(free));
    assert.equal(c.status, 200);
    assert.equal(c.headers.get('x-ratelimit-remaining'), null);
    assert.equal(c.headers.get('x-ratelimit-reset'), null);
  });
});

describe('content', () => {
  let sim: Simulator;
  before(async () => {
    sim = await started({ events: 5000, malformedRate: 0.1, duplicateRate: 0.01, duplicateVariantRate: 0.01 });
  });

  it('valid events pass the schema, every malformed record fails it, in many ways', () => {
    const truth = sim.truth();
    for (const ev of truth.valid.values()) assert.ok(isValid(ev), JSON.stringify(ev).slice(0, 200));
    for (const r of truth.invalid) assert.ok(!isValid(r), JSON.stringify(r).slice(0, 200));
    const shapes = new Set(truth.invalid.map((r) => (r === null ? 'null' : Array.isArray(r) ? 'array' : typeof r)));
    assert.deepEqual([...shapes].sort(), ['array', 'boolean', 'null', 'number', 'object', 'string']);
    const objects = truth.invalid.filter((r): r is Record<string, unknown> => typeof r === 'object' && r !== null && !Array.isArray(r));
    const attrs = (r: Record<string, unknown>): Record<string, unknown> => (typeof r.attributes === 'object' && r.attributes !== null ? (r.attributes as Record<string, unknown>) : {});
    assert.ok(objects.some((r) => !('id' in r) && 'attributes' in r), 'missing id');
    assert.ok(objects.some((r) => typeof r.id === 'number'), 'numeric id');
    assert.ok(objects.some((r) => attrs(r).time === 'yesterday' || attrs(r).time === 'now' || attrs(r).time === 'N/A' || attrs(r).time === ''), 'time is a word');
    assert.ok(objects.some((r) => typeof attrs(r).time === 'number'), 'time is a number');
    assert.ok(objects.some((r) => typeof r.attributes === 'string'), 'attributes is a string');
    assert.ok(objects.some((r) => 'id' in r && !('links' in r)), 'links missing');
    assert.ok(objects.some((r) => typeof attrs(r).context === 'object' && !Array.isArray(attrs(r).context)), 'context not an array');
    assert.ok(MALFORMED_KINDS.length >= 19);
  });

  it('time strings come in every RFC 3339 spelling; processedAt is ISO with ms and Z and never before time', () => {
    const events = [...sim.truth().valid.values()];
    const variants: Record<string, RegExp> = {
      msZ: /T\d\d:\d\d:\d\d\.\d{3}Z$/,
      noMs: /T\d\d:\d\d:\d\dZ$/,
      micro: /T\d\d:\d\d:\d\d\.\d{6}Z$/,
      plus0200: /\.\d{3}\+02:00$/,
      minus0530: /\.\d{3}-05:30$/,
    };
    for (const [name, re] of Object.entries(variants)) assert.ok(events.some((e) => re.test(e.attributes.time)), `time variant ${name}`);
    for (const e of events) {
      assert.match(e.attributes.processedAt ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(Date.parse(e.attributes.time) <= Date.parse(e.attributes.processedAt ?? ''), e.id);
    }
  });

  it('late events exist (time more than a minute before processedAt), and append({late:true}) makes them', () => {
    const lag = (e: AuditEvent): number => Date.parse(e.attributes.processedAt ?? '') - Date.parse(e.attributes.time);
    const before = [...sim.truth().valid.values()];
    const late = before.filter((e) => lag(e) > 60_000);
    assert.ok(late.length > 100, `late events: ${late.length}`);
    assert.ok(late.some((e) => lag(e) > 3_600_000), 'some are hours late');
    const known = new Set(before.map((e) => e.id));
    sim.append(200, { late: true });
    const added = [...sim.truth().valid.values()].filter((e) => !known.has(e.id));
    assert.ok(added.length > 150);
    for (const e of added) assert.ok(lag(e) > 60_000);
  });

  it('re-deliveries: identical copies and changed copies with the same id', async () => {
    const { records } = await walk(sim, { limit: 500 });
    const first = new Map<string, string>();
    let identical = 0;
    let changed = 0;
    for (const r of records) {
      if (!isValid(r)) continue;
      const id = (r as AuditEvent).id;
      const text = JSON.stringify(r);
      const seen = first.get(id);
      if (seen === undefined) first.set(id, text);
      else if (seen === text) identical++;
      else changed++;
    }
    const truth = sim.summary();
    assert.ok(identical > 10 && changed > 10, `identical ${identical}, changed ${changed}`);
    assert.equal(identical + changed, truth.duplicates);
  });

  it('events look real: ids are v4 UUIDs, links.self names the event, sizes ~0.7–2.5 KB, varied actions and auth types', () => {
    const events = [...sim.truth().valid.values()];
    const actions = new Set<unknown>();
    const authTypes = new Set<unknown>();
    let nonEmail = 0;
    let relationsNull = 0;
    let nonAscii = 0;
    for (const e of events) {
      assert.match(e.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(e.links.self, `https://api.atlassian.com/admin/v1/orgs/${sim.orgId}/events/${e.id}`);
      const size = Buffer.byteLength(JSON.stringify(e));
      assert.ok(size > 600 && size < 3000, `size ${size}`);
      actions.add(e.attributes.action);
      const actor = e.attributes.actor as { email?: unknown; auth?: { authType?: unknown } };
      authTypes.add(actor.auth?.authType);
      if (typeof actor.email === 'string' && !actor.email.includes('@')) nonEmail++;
      if (e.relations === null) relationsNull++;
      if (/[^\x00-\x7f]/.test(JSON.stringify(e))) nonAscii++;
    }
    assert.equal(actions.size, 13);
    assert.ok(authTypes.has('session') && authTypes.has('api_token'));
    assert.ok(nonEmail > 0 && relationsNull > 0 && nonAscii > 0);
  });

  it('re-deliveries come at most maxRedeliveryDistance fresh records after the original', async () => {
    const near = await started({ events: 3000, duplicateRate: 0.1, malformedRate: 0, maxRedeliveryDistance: 40, seed: 5 });
    const { records } = await walk(near, { limit: 500 });
    const at = new Map<string, number>();
    let copies = 0;
    records.forEach((r, i) => {
      const id = (r as AuditEvent).id;
      const first = at.get(id);
      if (first === undefined) {
        at.set(id, i);
        return;
      }
      copies++;
      // 40 fresh records plus the re-deliveries interleaved among them.
      assert.ok(i - first >= 1 && i - first <= 80, `distance ${i - first}`);
    });
    assert.equal(copies, near.summary().duplicates);
    assert.ok(copies > 200);
  });

  it('is deterministic for a seed', () => {
    const a = createSimulator({ events: 300, seed: 'abc', now: 1_700_000_000_000 });
    const b = createSimulator({ events: 300, seed: 'abc', now: 1_700_000_000_000 });
    const c = createSimulator({ events: 300, seed: 'abd', now: 1_700_000_000_000 });
    assert.deepEqual(a.truth(), b.truth());
    assert.notDeepEqual([...a.truth().valid.keys()], [...c.truth().valid.keys()]);
    const first = [...a.truth().valid.values()][0];
    assert.ok(first !== undefined && Date.parse(first.attributes.processedAt ?? '') >= 1_700_000_000_000 - 6 * 3_600_000);
  });
});

describe('server lifecycle', () => {
  it('keeps connections alive and close() does not wait for idle sockets', async () => {
    const sim = createSimulator({ events: 10 });
    await sim.start();
    const r = await fetch(`${sim.url}${streamPath(sim)}`, { headers: { authorization: `Bearer ${sim.apiKey}` } });
    await r.arrayBuffer();
    assert.equal(r.headers.get('connection'), 'keep-alive');
    const t = performance.now();
    await sim.close();
    assert.ok(performance.now() - t < 1000, 'close() is prompt');
    await assert.rejects(fetch(`${sim.url}${streamPath(sim)}`));
  });

  it('close() cancels slow answers in flight', async () => {
    const sim = createSimulator({ events: 10, faults: { rateSlow: 1, slowMs: 60_000 } });
    await sim.start();
    const pending = fetch(`${sim.url}${streamPath(sim)}`, { headers: { authorization: `Bearer ${sim.apiKey}` } });
    pending.catch(() => {});
    while (sim.stats.requests < 1) await sleep(20);
    const t = performance.now();
    await sim.close();
    // The answer was held for a minute: close() did not wait for it.
    assert.ok(performance.now() - t < 30_000);
    await assert.rejects(pending);
  });

  it('runs as its own process (main.js), controlled over IPC', async () => {
    const child = fork(new URL('../src/simulator/main.js', import.meta.url), ['--options', JSON.stringify({ events: 300, duplicateRate: 0 })], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const info = JSON.parse(line.toString()) as { url: string; orgId: string; apiKey: string; summary: { totalRecords: number } };
      assert.equal(info.summary.totalRecords, 300);
      const call = async (op: string, ...args: unknown[]): Promise<unknown> => {
        const id = Math.random();
        child.send({ id, op, args });
        for (;;) {
          const [m] = (await once(child, 'message')) as [{ id: number; result?: unknown; error?: string }];
          if (m.id === id) {
            if (m.error !== undefined) throw new Error(m.error);
            return m.result;
          }
        }
      };
      assert.equal(((await call('append', 20)) as { totalRecords: number }).totalRecords, 320);
      const res = await fetch(`${info.url}/admin/v1/orgs/${info.orgId}/events-stream?limit=500`, { headers: { authorization: `Bearer ${info.apiKey}` } });
      assert.equal(((await res.json()) as { data: unknown[] }).data.length, 320);
      assert.equal(((await call('stats')) as { requests: number }).requests, 1);
      await call('close');
      await once(child, 'exit');
    } finally {
      child.kill();
    }
  });

  it('builds 200k events in seconds (timing printed, not asserted)', (ctx) => {
    const t = performance.now();
    const sim = createSimulator({ events: 200_000 });
    const ms = performance.now() - t;
    const s = sim.summary();
    ctx.diagnostic(
      `simulator: 200k events built in ${(ms / 1000).toFixed(2)} s (${((ms * 1000) / 200_000).toFixed(1)} µs/event), ` +
        `${s.totalRecords} records, ${(s.bytes / 1e6).toFixed(0)} MB of JSON, rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`,
    );
    assert.equal(s.totalRecords, s.valid + s.invalid + s.duplicates);
    assert.ok(s.valid > 190_000);
  });
});
