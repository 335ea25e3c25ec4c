import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guessNextCursor, pageText, parsePage, processPage, type ProcessedPage } from '../../src/sources/page-process.js';
import { PageProcessor } from '../../src/sources/page-workers.js';
import { recordText, TOO_DEEP, truncateDepth } from '../../src/record-text.js';
import { normalizeBatch } from '../../src/transforms/normalize-time.js';
import { validateBatch } from '../../src/transforms/validate.js';
import { parseRfc3339 } from '../../src/time.js';
import { RAW_TEXT, type AuditEvent, type Batch, type WithRawText } from '../../src/types.js';
import { createSimulator } from '../../src/simulator/index.js';
import { makeEvent } from '../helpers/batches.js';

let OPTS = { origin: 'http://127.0.0.1:1', pageSize: 500 };

/** What the Transform stages make of a page: the reference processPage must agree with. */
function viaStages(body: Buffer): { next: string | null; events: AuditEvent[]; lines: (string | undefined)[]; quarantined: { reason: string; record: unknown }[] } {
  const page = parsePage(pageText(body), OPTS.origin);
  if (typeof page === 'string') throw new Error(page);
  const batch: Batch = { records: page.records, events: [], quarantined: [], position: { skip: 0 }, hour: 0 };
  normalizeBatch(validateBatch(batch));
  const events: AuditEvent[] = [];
  const lines: (string | undefined)[] = [];
  for (const e of batch.events) {
    try {
      lines.push((e as WithRawText)[RAW_TEXT]);
      recordText(e);
      events.push(e);
    } catch {
      lines.pop();
      batch.quarantined.push({ reason: TOO_DEEP, record: truncateDepth(e) });
    }
  }
  return { next: page.next, events, lines, quarantined: batch.quarantined };
}

/** The lines of a processed page, as text. */
function linesOf(p: ProcessedPage): string[] {
  const e = p.events;
  const out: string[] = [];
  for (let i = 0; i < e.ends.length; i++) out.push(Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength).toString('utf8', i === 0 ? e.start : e.ends[i - 1], e.ends[i]));
  return out;
}

/** Asserts processPage agrees with the stages on `body`: the same events (as objects), ids, times, quarantine records and reasons. */
function assertAgrees(body: Buffer, label: string): ProcessedPage {
  const want = viaStages(body);
  const got = processPage(body, OPTS);
  assert.ok(typeof got !== 'string', `${label}: ${String(got)}`);
  assert.equal(got.next, want.next, label);
  const lines = linesOf(got);
  assert.equal(lines.length, want.events.length, `${label}: events`);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), `${label}: line ${i} is one line`);
    assert.deepEqual(JSON.parse(line), want.events[i], `${label}: event ${i}`);
    // An event the stages would write as received is written as received, byte for byte.
    if (want.lines[i] !== undefined) assert.equal(line, `${want.lines[i]}\n`, `${label}: event ${i} as received`);
  }
  assert.deepEqual(got.events.ids, want.events.map((e) => e.id), `${label}: ids`);
  assert.deepEqual([...got.events.timeMs], want.events.map((e) => parseRfc3339(e.attributes.time)), `${label}: times`);
  assert.deepEqual(got.quarantined.map((q) => ({ reason: q.reason, record: JSON.parse(q.text) as unknown })), want.quarantined, `${label}: quarantine`);
  assert.equal(got.valid.reduce((n, v) => n + v, 0), want.events.length, `${label}: valid flags`);
  return got;
}

function page(elements: string[], next: string | null = 'n1', prefix = ''): Buffer {
  return Buffer.from(`${prefix}{"data":[${elements.join(',')}],"meta":${JSON.stringify({ next, page_size: elements.length })},"links":{"self":"x"}}`);
}

const ev = (over: Parameters<typeof makeEvent>[0] = {}): string => JSON.stringify(makeEvent(over));

test('simulated pages (non-ASCII names, every time spelling, malformed records) come out as the stages make them', async () => {
  const sim = createSimulator({ events: 6000, seed: 11, now: Date.parse('2026-03-02T12:00:00.000Z') });
  await sim.start();
  const before = OPTS;
  OPTS = { ...OPTS, origin: sim.url };
  try {
    let url = `${sim.url}/admin/v1/orgs/${sim.orgId}/events-stream?limit=500&from=0`;
    let pages = 0;
    let spliced = 0;
    for (;;) {
      const res = await fetch(url, { headers: { authorization: `Bearer ${sim.apiKey}` } });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200);
      const got = assertAgrees(body, `page ${pages}`);
      spliced += viaStages(body).lines.filter((l) => l === undefined).length;
      pages++;
      if (got.next === null || got.count === 0) break;
      url = `${sim.url}/admin/v1/orgs/${sim.orgId}/events-stream?limit=500&cursor=${encodeURIComponent(got.next)}`;
    }
    assert.ok(pages >= 12, `walked ${pages} pages`);
    // The simulator spells many times other than canonically: those lines had the time put into the text as received.
    assert.ok(spliced > 1000, `${spliced} rewritten times`);
  } finally {
    OPTS = before;
    await sim.close();
  }
});

test('a rewritten time goes into the text as received; everything else in the line stays byte for byte', () => {
  const text = '{"id":"s1","type":"events","attributes":{ "time" : "2026-11-21T10:15:00Z", "context":[{"attributes":{"time":"2026-11-21T10:15:00Z"}}],"x":"é"},"links":{}}';
  const got = processPage(page([text]), OPTS);
  assert.ok(typeof got !== 'string');
  assert.deepEqual(linesOf(got), [`${text.replace('"time" : "2026-11-21T10:15:00Z"', '"time" : "2026-11-21T10:15:00.000Z"')}\n`]);
  assertAgrees(page([text]), 'spaced time, nested time');
});

test('keys the scan cannot vouch for, duplicates and line breaks fall back to serialising, and still agree', () => {
  const cases: Record<string, string> = {
    'escaped time key': '{"id":"k1","type":"t","attributes":{"tim\\u0065":"2026-11-21T10:15:00+01:00"},"links":{}}',
    'escaped attributes key': '{"id":"k2","type":"t","attributes":{"time":"2026-01-01T00:00:00Z"},"attribute\\u0073":{"time":"2026-11-21T10:15:00+01:00"},"links":{}}',
    'duplicate attributes': '{"id":"k3","type":"t","attributes":{"time":"2020-01-01T00:00:00Z"},"links":{},"attributes":{"time":"2026-11-21T10:15:00+01:00"}}',
    'duplicate time': '{"id":"k4","type":"t","attributes":{"time":"2020-01-01T00:00:00Z","time":"2026-11-21T10:15:00+01:00"},"links":{}}',
    'time escaped in value': '{"id":"k5","type":"t","attributes":{"time":"2026-11-21T10:15:00\\u002b01:00"},"links":{}}',
    'line break between tokens': '{"id":"k6","type":"t",\n"attributes":{"time":"2026-11-21T10:15:00+01:00"},"links":{}}',
    'canonical, line break': '{"id":"k7","type":"t",\r\n"attributes":{"time":"2026-11-21T10:15:00.000Z"},"links":{}}',
  };
  for (const [label, text] of Object.entries(cases)) assertAgrees(page([text, ev()]), label);
});

test('pages the byte reading cannot take (escaped non-ASCII, invalid UTF-8, long non-ASCII ids) take the text path and agree', () => {
  const escaped = page([ev({ id: 'caf\\u00e9-1' }).replace('"caf\\\\u00e9-1"', '"caf\\u00e9-1"'), ev()]);
  assert.ok(escaped.includes('caf\\u00e9-1'));
  const got = assertAgrees(escaped, 'escaped é');
  assert.equal(got.events.ids[0], 'café-1');
  const broken = Buffer.concat([Buffer.from('{"data":['), Buffer.from(ev({ id: 'bad-utf8-x' }).replace('bad-utf8-x', 'bad-utf8-\u0001')), Buffer.from('],"meta":{"next":null}}')]);
  broken[broken.indexOf(0x01)] = 0xff; // a byte that is not UTF-8 inside the id
  assert.equal(assertAgrees(broken, 'invalid UTF-8').events.ids[0], 'bad-utf8-\ufffd');
  // 200 × "é": 400 bytes, 200 characters; the limit is 256 characters.
  const long = 'é'.repeat(200);
  assert.deepEqual(assertAgrees(page([ev({ id: long })]), 'long non-ASCII id').events.ids, [long]);
  const tooLong = processPage(page([ev({ id: 'é'.repeat(257) })]), OPTS) as ProcessedPage;
  assert.deepEqual(tooLong.quarantined.map((q) => q.reason), ['id: longer than 256 characters']);
});

test('non-ASCII ids, cursors and quarantined records leave the byte path decoded', () => {
  const body = page([ev({ id: 'événement-Ωμέγα-😀' }), JSON.stringify({ id: 'ünvalid', attributes: { time: 'soon' }, name: 'Zoë' })], 'cürsor');
  const got = assertAgrees(body, 'non-ASCII');
  assert.deepEqual(got.events.ids, ['événement-Ωμέγα-😀']);
  assert.equal(got.next, 'cürsor');
  assert.equal((JSON.parse(got.quarantined[0]!.text) as { name: string }).name, 'Zoë');
});

test('a %-escaped non-ASCII cursor in a URL, and duplicate time or attributes keys, come out as the text path makes them', () => {
  const url = `${OPTS.origin}/admin/v1/orgs/o/events-stream?cursor=%C3%A9abc&limit=5`;
  const body = Buffer.from(`{"data":[${ev()}],"meta":{"next":${JSON.stringify(url)}}}`);
  assert.equal(assertAgrees(body, 'escaped cursor').next, 'éabc');
  for (const [label, text] of [
    ['two time keys', '{"id":"d1","type":"t","attributes":{"time":"2026-11-21T10:15:00Z","time":"2026-11-21T10:15:00Z"},"links":{}}'],
    ['two attributes keys', '{"id":"d2","type":"t","attributes":{"time":"2026-11-21T10:15:00Z"},"attributes":{"time":"2026-11-21T10:15:00Z"},"links":{}}'],
  ] as const) {
    const got = assertAgrees(page([text]), label);
    // Serialised: one time key, canonical, and no stale copy for a parser that keeps the first duplicate.
    assert.deepEqual(linesOf(got)[0]!.match(/"time":"[^"]*"/g), ['"time":"2026-11-21T10:15:00.000Z"'], label);
  }
});

test('a byte order mark, a deep record and a page over the size asked for', () => {
  assertAgrees(page([ev(), ev({ time: '2026-11-21T10:15:00+02:00' })], 'n', '\ufeff'), 'BOM');
  const deepEvent = JSON.stringify({ ...makeEvent(), extra: 0 }).replace('"extra":0', `"extra":${'['.repeat(20_000)}1${']'.repeat(20_000)}`);
  const got = assertAgrees(page([deepEvent, ev()]), 'deep');
  assert.deepEqual(got.quarantined.map((q) => q.reason), [TOO_DEEP]);
  assert.equal(processPage(page([ev(), ev()]), { ...OPTS, pageSize: 1 }), 'page has 2 records, more than the 1 asked for');
  assert.equal(processPage(Buffer.from('<html>'), OPTS), 'body is HTML, not JSON');
});

test('the next-cursor guess reads the tail; it is a guess, and says nothing when the tail is not the rest of the page', () => {
  assert.equal(guessNextCursor(page([ev()], 'abc'), OPTS.origin), 'abc');
  assert.equal(guessNextCursor(page([ev()], null), OPTS.origin), undefined);
  const url = `${OPTS.origin}/admin/v1/orgs/o/events-stream?cursor=xyz&limit=5`;
  assert.equal(guessNextCursor(Buffer.from(`{"data":[],"meta":{"next":${JSON.stringify(url)}}}`), OPTS.origin), 'xyz');
  // meta before data, and a "meta" key inside the last event: that tail is not the rest of an object.
  assert.equal(guessNextCursor(Buffer.from(`{"meta":{"next":"a"},"data":[{"x":{"meta":{"next":"b"}}}]}`), OPTS.origin), undefined);
  // links.next on another host (a gateway's upstream) is never followed: meta.next's cursor is the guess.
  assert.equal(guessNextCursor(Buffer.from(page([ev()], 'c2').toString().replace('"links":{"self":"x"}', '"links":{"next":"https://evil.invalid/?cursor=c2"}')), OPTS.origin), 'c2');
  // A meta.next URL on another host ends the walk: no guess.
  assert.equal(guessNextCursor(Buffer.from('{"data":[],"meta":{"next":"https://evil.invalid/admin/v1/orgs/o/events-stream?cursor=c3"}}'), OPTS.origin), undefined);
  assert.equal(guessNextCursor(Buffer.from('{"data":[]}'), OPTS.origin), undefined);
});

test('on worker threads a page comes out exactly as inline; closing answers calls in flight', async () => {
  const bodies = [
    page([ev(), ev({ time: '2026-11-21T10:15:00+01:00' }), '{"id":1}', ev({ id: 'Ωμέγα' })]),
    page([ev({ id: 'caf\\u00e9' }).replace('caf\\\\u00e9', 'caf\\u00e9')], null),
    Buffer.from('not json'),
  ];
  const pool = new PageProcessor(2);
  try {
    const got = await Promise.all(bodies.map((b) => pool.process(Buffer.from(b), OPTS)));
    for (let i = 0; i < bodies.length; i++) {
      const want = processPage(bodies[i]!, OPTS);
      const g = got[i]!;
      if (typeof want === 'string') {
        assert.equal(g, want);
        continue;
      }
      assert.ok(typeof g !== 'string');
      assert.deepEqual({ ...g, events: { ...g.events, bytes: Buffer.from(g.events.bytes) } }, { ...want, events: { ...want.events, bytes: Buffer.from(want.events.bytes) } });
    }
    const pending = pool.process(Buffer.from(bodies[0]!), OPTS);
    await pool.close();
    const r = await pending;
    // Either it finished before the close, or it was answered with a reason.
    assert.ok(typeof r !== 'string' || /closed/.test(r), String(r));
    await assert.rejects(pool.process(Buffer.from(bodies[0]!), OPTS), /closed/);
  } finally {
    await pool.close();
  }
});
