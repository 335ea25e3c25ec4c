/**
 * Fuzzes the source and the whole pipeline with hostile pages, served by a scripted
 * events-stream server (test/helpers/scripted-api.ts): bodies that are not JSON, cut short, HTML,
 * JSON of the wrong shape, `data`/`meta`/`meta.next` of the wrong type, empty, larger than
 * maxPageBytes, with more records than `limit`; good pages that carry 10 MiB strings, nesting
 * JSON.stringify cannot write, bytes that are not UTF-8, a byte order mark, or a text/html label.
 *
 * A hostile page answered once and then well must cost a retry and nothing else: the run
 * completes, every record of every good page is accounted for once (written, quarantined or
 * dropped as a duplicate), and the counts reconcile with what the source received. A page that
 * never gets better ends the run with ApiError after maxRetries, never a crash, and the next run
 * picks up from the checkpoint without loss.
 *
 * Seed: FUZZ_SEED (default fixed), printed as a diagnostic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../src/clock.js';
import { ApiError } from '../../src/errors.js';
import { createMetrics, type PipelineMetrics } from '../../src/metrics.js';
import { runPipeline, type PipelineOptions, type PipelineResult } from '../../src/pipeline.js';
import { createAtlassianEventsSource, type AtlassianEventsOptions } from '../../src/sources/atlassian-events.js';
import type { Batch } from '../../src/types.js';
import { batchRecords, makeEvent } from '../helpers/batches.js';
import { listFiles, tempDir } from '../helpers/fs.js';
import { localRunOptions } from '../helpers/pipeline-options.js';
import { fuzzSeed, Prng, watchUnhandled } from '../helpers/fuzz.js';
import { CaseGen, caseText, expectOutput, shuffle, type Case } from '../helpers/fuzz-cases.js';
import { pageBody, startScriptedApi, type BadAnswer, type ScriptedApi, type ScriptedPage } from '../helpers/scripted-api.js';

const H10 = Date.parse('2026-11-21T10:00:00Z');
const PAGE_SIZE = 50;
const MAX_PAGE_BYTES = 64 * 1024 * 1024; // the source's default; runPipeline does not change it
const HTML = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Log in with Atlassian account</title></head><body><form action="/login"><input name="username"></form></body></html>';

/** Sleeps return at once: backoff and rate-limit pacing cost no time in these tests. */
const fastClock: Clock = { now: () => Date.now(), sleep: async () => {} };

/** The good body with its `meta` replaced by `meta` (raw JSON text), or removed. */
function withMeta(meta: string | undefined): (good: Buffer) => { body: Buffer } {
  return (good) => {
    const end = good.lastIndexOf('],"meta":');
    assert.ok(end > 0);
    const rest = meta === undefined ? '}' : `,"meta":${meta}}`;
    return { body: Buffer.concat([good.subarray(0, end + 1), Buffer.from(rest)]) };
  };
}

let oversize: Buffer | undefined;
/** Page-level hostility: each must be answered with a retry, never accepted, never a crash. */
const HOSTILE: ReadonlyArray<readonly [string, BadAnswer]> = [
  ['text, not JSON', { headers: { 'content-type': 'text/plain' }, body: 'upstream connect error or disconnect/reset before headers' }],
  ['JSON cut in half', (good) => ({ body: good.subarray(0, good.length >> 1) })],
  ['JSON one byte short', (good) => ({ body: good.subarray(0, good.length - 1) })],
  ['JSON with trailing garbage', (good) => ({ body: Buffer.concat([good, Buffer.from('}')]) })],
  ['two JSON documents', (good) => ({ body: Buffer.concat([good, Buffer.from('\n'), good]) })],
  ['HTML page, status 200, text/html', { headers: { 'content-type': 'text/html; charset=utf-8' }, body: HTML }],
  ['HTML page labelled application/json', { body: HTML }],
  ['HTML after a byte order mark and whitespace', { headers: { 'content-type': 'text/html' }, body: `\ufeff \r\n${HTML}` }],
  ['empty body', { body: '' }],
  ['whitespace body', { body: ' \r\n\t ' }],
  ['NUL bytes', { body: Buffer.alloc(64) }],
  ['bytes that are not UTF-8', { body: Buffer.from([0xff, 0xfe, 0x7b, 0x7d]) }],
  ['JSON null', { body: 'null' }],
  ['JSON number', { body: '42' }],
  ['JSON string', { body: '"{\\"data\\":[]}"' }],
  ['JSON boolean', { body: 'true' }],
  ['JSON array holding the page', (good) => ({ body: Buffer.concat([Buffer.from('['), good, Buffer.from(']')]) })],
  ['JSON empty array', { body: '[]' }],
  ['data is an object', { body: '{"data":{"0":{"id":"x"}},"meta":{"next":null}}' }],
  ['data is a string', { body: '{"data":"[]","meta":{"next":null}}' }],
  ['data is null', { body: '{"data":null,"meta":{"next":null}}' }],
  ['data is a number', { body: '{"data":0,"meta":{"next":null}}' }],
  ['data missing', { body: '{"meta":{"next":null}}' }],
  ['an error body with status 200', { body: '{"errors":[{"status":"500","code":"ADMIN-500-1","title":"Internal error"}]}' }],
  ['meta missing', withMeta(undefined)],
  ['meta null', withMeta('null')],
  ['meta a string', withMeta('"next"')],
  ['meta an array', withMeta('[{"next":null}]')],
  ['meta a number', withMeta('1')],
  ['meta.next a number', withMeta('{"next":12345}')],
  ['meta.next an object', withMeta('{"next":{"cursor":"x"}}')],
  ['meta.next an array', withMeta('{"next":["x"]}')],
  ['meta.next true', withMeta('{"next":true}')],
  ['meta.next empty', withMeta('{"next":""}')],
  ['meta.next 5,000 characters', withMeta(`{"next":"${'c'.repeat(5000)}"}`)],
  ['more records than limit', { body: pageBody(Array.from({ length: PAGE_SIZE + 1 }, () => JSON.stringify(makeEvent())), 'next') }],
  ['body larger than maxPageBytes', () => ({ body: (oversize ??= Buffer.alloc(MAX_PAGE_BYTES + 1, 0x20)) })],
  ['502 HTML', { status: 502, headers: { 'content-type': 'text/html' }, body: HTML }],
  ['503 empty', { status: 503, body: '' }],
  ['408', { status: 408, body: '' }],
];

/** The record's raw text with its U+FFFD replaced by a byte that is not UTF-8 (0xFF). */
function withInvalidByte(text: string): Buffer {
  const bytes = Buffer.from(text);
  const at = bytes.indexOf(Buffer.from('\ufffd'));
  assert.ok(at >= 0);
  return Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at + 3)]);
}

interface Scripted {
  pages: ScriptedPage[];
  /** The cases of every good page, in the order the API serves them. */
  feed: Case[];
}

/**
 * ~1,500 fuzzed records (every systematic case plus random ones) over pages of 1–50, with every
 * hostile answer given once to some page, and special good pages: 10 MiB strings, a byte that is
 * not UTF-8, a byte order mark, a text/html label.
 */
function script(p: Prng): Scripted {
  const gen = new CaseGen(p, { timeRange: [H10, H10 + 3_600_000] });
  const cases = gen.systematic({ huge: false });
  while (cases.length < 1500) cases.push(gen.random(cases));
  shuffle(p, cases);
  const groups: Case[][] = [];
  for (let i = 0; i < cases.length;) {
    const size = p.range(1, PAGE_SIZE);
    groups.push(cases.slice(i, i + size));
    i += size;
  }
  const pages: Array<ScriptedPage & { cases: Case[] }> = groups.map((g) => ({ cases: g, records: g.map(caseText) }));
  // The first page fails three times in a row (maxRetries is 3), then answers; the others get
  // the hostile answers, one each (two when there are few pages).
  pages[0]!.bad = [{ status: 503, body: '' }, (good) => ({ body: good.subarray(0, 10) }), { body: HTML }];
  HOSTILE.forEach(([, answer], k) => (pages[1 + (k % (pages.length - 1))]!.bad ??= []).push(answer));

  const special = (cs: Case[], extra: Partial<ScriptedPage> = {}, raw?: (c: Case) => string | Buffer): ScriptedPage & { cases: Case[] } =>
    ({ cases: cs, records: cs.map((c) => raw?.(c) ?? caseText(c)), ...extra });
  // 10 MiB strings in an otherwise good page (valid in message.content, invalid as the id); served
  // cut short first.
  const huge = special([gen.valid(), ...gen.huge(['huge message.content', 'huge id']), gen.valid()], { bad: [(good) => ({ body: good.subarray(0, good.length - 100) })] });
  // Bytes that are not UTF-8 inside a string: decoded as U+FFFD (as every JSON client does), and
  // written as valid UTF-8, rather than refusing the page forever.
  const notUtf8 = gen.valid();
  ((notUtf8.value as { message: Record<string, unknown> }).message ??= {})['content'] = 'byte \ufffd that is not UTF-8';
  const bytes = special([gen.valid(), notUtf8], {}, (c) => (c === notUtf8 ? withInvalidByte(caseText(c)) : caseText(c)));
  // A byte order mark before the JSON (RFC 8259 lets parsers ignore it; fetch's json() does).
  const bom = special([gen.valid(), gen.valid()], { bodyPrefix: Buffer.from([0xef, 0xbb, 0xbf]) });
  // A good page labelled text/html: the status and the body decide, not the label.
  const html = special([gen.valid()], { headers: { 'content-type': 'text/html' } });
  const at = (k: number): number => Math.floor((pages.length * k) / 5);
  pages.splice(at(1), 0, huge);
  pages.splice(at(2), 0, bytes);
  pages.splice(at(3), 0, bom);
  pages.splice(at(4), 0, html);
  return { pages, feed: pages.flatMap((pg) => pg.cases) };
}

function pipelineOptions(api: ScriptedApi, dir: string, over: Partial<PipelineOptions> = {}): PipelineOptions {
  return localRunOptions(api, dir, { pageSize: PAGE_SIZE, maxRetries: 3, ...over });
}

async function received(metrics: PipelineMetrics): Promise<number> {
  return (await metrics.eventsReceived.get()).values[0]?.value ?? 0;
}

function assertReconciles(result: PipelineResult, fed: number): void {
  assert.equal(result.fetched, fed, 'records fetched ≠ records served in good pages');
  assert.equal(result.events + result.quarantined + result.duplicates, result.fetched, 'written + quarantined + duplicates ≠ fetched');
}

test('each hostile page answered once costs one retry and nothing else: no loss, no repeat, counts reconcile', async (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`FUZZ_SEED=${seed}`);
  const unhandled = watchUnhandled();
  const { pages, feed } = script(new Prng(seed, 'pages'));
  const check = expectOutput(feed);
  const api = await startScriptedApi(pages);
  const dir = await tempDir('aap-fuzz-pages-');
  try {
    const metrics = createMetrics({ defaultMetrics: false });
    const result = await runPipeline(pipelineOptions(api, dir), { clock: fastClock, metrics });
    assertReconciles(result, feed.length);
    assert.equal(await received(metrics), feed.length, 'the source counted other records than it received');
    const got = await check(join(dir, 'out'), 'atlassian/audit/', 'atlassian/quarantine/');
    assert.deepEqual([got.written, got.quarantined, got.duplicates], [result.events, result.quarantined, result.duplicates]);
    // Every bad answer was given once and followed by exactly one good one: a hostile page was
    // never accepted, and a good one never refused.
    pages.forEach((page, i) => {
      const want = [...(page.bad ?? []).map((_, k) => `bad${k}`), 'good'];
      assert.deepEqual(api.requestsFor(i).map((r) => r.answer), want, `page ${i}`);
    });
    assert.deepEqual(api.requestsFor(pages.length).map((r) => r.answer), ['good'], 'the end page');
    assert.ok(api.requests.every((r) => r.query['limit'] === String(PAGE_SIZE)));
    assert.deepEqual(unhandled.stop(), [], 'unhandled rejections');
    await rm(dir, { recursive: true, force: true }); // kept when an assertion fails, to look at
    t.diagnostic(`${pages.length} pages, ${api.requests.length} requests, ${feed.length} records: ${result.events} written, ${result.quarantined} quarantined, ${result.duplicates} duplicates`);
  } finally {
    unhandled.stop();
    await api.close();
  }
});

/** Kinds a page may keep answering with forever. */
const FOREVER = ['text, not JSON', 'HTML page, status 200, text/html', 'data is an object', 'meta missing', 'meta.next a number', 'more records than limit', 'empty body', '503 empty'];

test('a page that never gets better ends the run with ApiError after maxRetries; the next run loses nothing', async (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`FUZZ_SEED=${seed}`);
  const p = new Prng(seed, 'forever');
  const unhandled = watchUnhandled();
  try {
    for (const kind of FOREVER) {
      const answer = HOSTILE.find(([k]) => k === kind)![1];
      const gen = new CaseGen(p, { timeRange: [H10, H10 + 3_600_000] });
      const groups = [0, 1, 2].map(() => Array.from({ length: p.range(1, 20) }, () => gen.random([])));
      const pages: ScriptedPage[] = groups.map((g, i) => ({ records: g.map(caseText), ...(i === 1 ? { badForever: answer } : {}) }));
      const feed = groups.flat();
      const check = expectOutput(feed);
      const api = await startScriptedApi(pages);
      const dir = await tempDir('aap-fuzz-forever-');
      try {
        const options = pipelineOptions(api, dir, { maxRetries: 2 });
        await assert.rejects(runPipeline(options, { clock: fastClock }), (err: unknown) => {
          assert.ok(err instanceof ApiError, `${kind}: ${String(err)}`);
          assert.match(err.message, /(kept sending pages that are not events-stream pages|kept failing): 3 attempts, the last/);
          return true;
        });
        assert.equal(api.requestsFor(1).length, 3, `${kind}: one request and two retries`);
        assert.equal(api.requestsFor(2).length, 0, `${kind}: the walk went past the page`);
        // The run's open objects were aborted: nothing is left half-written.
        assert.deepEqual((await listFiles(join(dir, 'out'))).filter((f) => !f.startsWith('atlassian/')), [], kind);
        api.heal();
        const metrics = createMetrics({ defaultMetrics: false });
        const result = await runPipeline(options, { clock: fastClock, metrics });
        assertReconciles(result, feed.length);
        assert.equal(await received(metrics), feed.length);
        const got = await check(join(dir, 'out'), 'atlassian/audit/', 'atlassian/quarantine/');
        assert.deepEqual([got.written, got.quarantined, got.duplicates], [result.events, result.quarantined, result.duplicates], kind);
        await rm(dir, { recursive: true, force: true });
      } finally {
        await api.close();
      }
    }
    assert.deepEqual(unhandled.stop(), [], 'unhandled rejections');
  } finally {
    unhandled.stop();
  }
});

function sourceOptions(api: ScriptedApi, over: Partial<AtlassianEventsOptions> = {}): AtlassianEventsOptions {
  return { apiUrl: api.url, orgId: api.orgId, apiKey: api.apiKey, start: { from: 0, skip: 0 }, maxRetries: 2, backoffBaseMs: 1, backoffCapMs: 5, ...over };
}

async function drain(src: AsyncIterable<Batch>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const b of src) out.push(...batchRecords(b));
  return out;
}

test('maxPageBytes: a body of exactly the limit is read, one byte more is retried, and for ever is ApiError', async () => {
  const records = Array.from({ length: 5 }, () => JSON.stringify(makeEvent()));
  const probe = await startScriptedApi([{ records }]);
  const limit = probe.goodBody(0).length;
  await probe.close();
  const cases: Array<[ScriptedPage['bad'], string[]]> = [
    [[], ['good']],
    [[{ body: Buffer.alloc(limit + 1, 0x20) }], ['bad0', 'good']],
  ];
  for (const [bad, answers] of cases) {
    const api = await startScriptedApi([{ records, bad }]);
    try {
      assert.equal(api.goodBody(0).length, limit, 'cursors are all of one length');
      const got = await drain(createAtlassianEventsSource(sourceOptions(api, { maxPageBytes: limit }), { clock: fastClock }));
      assert.deepEqual(got, records.map((r) => JSON.parse(r) as unknown));
      assert.deepEqual(api.requestsFor(0).map((r) => r.answer), answers);
    } finally {
      await api.close();
    }
  }
  const api = await startScriptedApi([{ records, badForever: { body: Buffer.alloc(limit + 1, 0x20) } }]);
  try {
    await assert.rejects(drain(createAtlassianEventsSource(sourceOptions(api, { maxPageBytes: limit }), { clock: fastClock })), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.match(err.message, /kept sending pages that are not events-stream pages: 3 attempts, the last: response body larger than/);
      return true;
    });
    assert.equal(api.requestsFor(0).length, 3);
  } finally {
    await api.close();
  }
});

test('a body that starts with a UTF-8 byte order mark is a good page, read at the first request', async () => {
  // Regression: readBody kept the BOM, JSON.parse refused it ("Unexpected token"), and the page
  // was retried maxRetries times and the run ended with ApiError, for a body fetch's json() reads.
  const records = Array.from({ length: 3 }, () => JSON.stringify(makeEvent()));
  const api = await startScriptedApi([{ records, bodyPrefix: Buffer.from([0xef, 0xbb, 0xbf]) }]);
  try {
    const got = await drain(createAtlassianEventsSource(sourceOptions(api), { clock: fastClock }));
    assert.deepEqual(got, records.map((r) => JSON.parse(r) as unknown));
    assert.deepEqual(api.requestsFor(0).map((r) => r.answer), ['good']);
  } finally {
    await api.close();
  }
});

test('an invalid record\'s far-future processedAt does not move the cursor fallback past valid events', async () => {
  // Found by fuzzing: #cut took lastProcessedAt from every record, including one validate
  // quarantines, and compared the strings. The checkpoint saved it; after a rejected cursor the
  // source restarted from it minus the overlap, i.e. from year 9999, skipping what lay between.
  // Now a processedAt more than a day ahead of the clock is not believed.
  const valid = makeEvent({ processedAt: '2026-11-21T10:16:00.000Z' });
  const bogus = { type: 'events', attributes: { time: '2026-11-21T10:16:00.000Z', processedAt: '9999-01-01T00:00:00Z' }, links: {} };
  const api = await startScriptedApi([{ records: [JSON.stringify(valid), JSON.stringify(bogus)] }]);
  try {
    const batches: Batch[] = [];
    for await (const b of createAtlassianEventsSource(sourceOptions(api), { clock: fastClock })) batches.push(b as Batch);
    const lastProcessedAt = batches.map((b) => b.lastProcessedAt).filter((x) => x !== undefined).at(-1);
    await drain(createAtlassianEventsSource(sourceOptions(api, { start: { cursor: 'rejected', skip: 0 }, lastProcessedAt }), { clock: fastClock }));
    const from = Number(api.requests.find((r) => r.query['from'] !== undefined && r.query['cursor'] === undefined && r !== api.requests[0])?.query['from']);
    assert.ok(from <= Date.parse('2026-11-21T10:16:00.000Z'), `fell back to from=${new Date(from).toISOString()}`);
  } finally {
    await api.close();
  }
});
