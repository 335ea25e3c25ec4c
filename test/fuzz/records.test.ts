/**
 * Fuzzes the transforms (validate → normalize-time → dedupe) and the object sink with hostile
 * records: wrong types in every field the schema names, broken and odd-but-valid times, records
 * that are not objects, 10 MiB strings, nesting far beyond what JSON.stringify can handle,
 * duplicate ids with other content, unicode, NUL bytes and prototype-ish keys.
 *
 * Each case carries its own oracle (test/helpers/fuzz-cases.ts). Reading the objects back checks
 * that every valid event is there once (the first occurrence of its id wins), byte for byte as
 * fed but for attributes.time; every invalid record is quarantined, as fed, with a reason
 * `field.path: why`; every line is a JSON object; written + quarantined + duplicates = fed.
 *
 * Seed: FUZZ_SEED (default fixed), printed as a diagnostic.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createLocalDirSink } from '../../src/sinks/local-dir.js';
import { createDedupe, DedupeWindow } from '../../src/transforms/dedupe.js';
import { createNormalizeTime, normalizeTime } from '../../src/transforms/normalize-time.js';
import { createValidate, validateRecord } from '../../src/transforms/validate.js';
import type { Batch } from '../../src/types.js';
import { batchOf, makeEvent } from '../helpers/batches.js';
import { listFiles, tempDir } from '../helpers/fs.js';
import { fuzzSeed, Prng } from '../helpers/fuzz.js';
import { CaseGen, expectOutput, NOT_RFC3339, OUT_OF_RANGE, shuffle, type Case } from '../helpers/fuzz-cases.js';

const HOURS = [Date.parse('2026-11-21T10:00:00Z'), Date.parse('2026-11-21T11:00:00Z'), Date.parse('2026-11-21T12:00:00Z')];

/** Cuts the cases into batches of 1–500 records (pages, or slices of one), over a few hours. */
function batches(p: Prng, cases: readonly Case[]): Batch[] {
  const out: Batch[] = [];
  let hour = 0;
  for (let i = 0; i < cases.length;) {
    const size = p.weighted<number>([[p.range(1, 5), 1], [p.range(1, 100), 3], [p.range(100, 500), 2]]);
    if (p.chance(0.3)) hour = Math.min(hour + 1, HOURS.length - 1);
    out.push(batchOf(cases.slice(i, i + size).map((c) => c.value), HOURS[hour], `c${i}`));
    i += size;
  }
  return out;
}

test('fuzzed records through validate → normalize-time → dedupe → object sink: nothing crashes, is lost, repeated or unreadable', async (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`FUZZ_SEED=${seed}`);
  const p = new Prng(seed, 'records');
  const gen = new CaseGen(p, { hugeBudget: 3 });
  const cases = gen.systematic({ huge: true });
  while (cases.length < 4000) cases.push(gen.random(cases));
  shuffle(p, cases);
  // The oracle follows the feeding order: after the shuffle, whichever copy of an id comes first wins.
  const check = expectOutput(cases);

  const dir = await tempDir('aap-fuzz-records-');
  const sink = createLocalDirSink({ dir, prefix: 'ev/', quarantinePrefix: 'q/' }, {});
  await pipeline(
    Readable.from(batches(p, cases), { objectMode: true }),
    createValidate(),
    createNormalizeTime(),
    createDedupe({ window: new DedupeWindow() }),
    sink,
  );

  const got = await check(dir, 'ev/', 'q/');
  const { totals } = sink;
  assert.equal(totals.fetched, cases.length);
  assert.equal(totals.events, got.written);
  assert.equal(totals.quarantined, got.quarantined);
  assert.equal(totals.duplicates, got.duplicates);
  assert.equal(totals.events + totals.quarantined + totals.duplicates, cases.length, 'written + quarantined + duplicates ≠ fed');
  assert.deepEqual((await listFiles(dir)).filter((f) => f.startsWith('.tmp/')), [], 'unfinished files left');
  await rm(dir, { recursive: true, force: true }); // kept when an assertion fails, to look at
  t.diagnostic(`${cases.length} records: ${got.written} written, ${got.quarantined} quarantined, ${got.duplicates} duplicates, ${got.objects} objects`);
});

test('fuzzed time strings: validate and normalize-time agree, and every normalised time is canonical', (t) => {
  const seed = fuzzSeed();
  t.diagnostic(`FUZZ_SEED=${seed}`);
  const p = new Prng(seed, 'times');
  const gen = new CaseGen(p);
  const alphabet = '0123456789-:.TtZz +_,\u0000\u2028٣';
  const strings: Array<{ text: string; canonical?: string }> = [...NOT_RFC3339, ...OUT_OF_RANGE].map((text) => ({ text }));
  for (let i = 0; i < 20_000; i++) {
    const v = gen.validTime();
    if (p.chance(0.5)) {
      strings.push({ text: v.text, canonical: v.canonical });
      continue;
    }
    // One to three edits of a valid spelling: most are invalid, some are other valid instants.
    let s = v.text;
    for (let k = p.range(1, 3); k > 0; k--) {
      const at = p.int(s.length + 1);
      const c = alphabet[p.int(alphabet.length)]!;
      s = p.chance(0.4) ? s.slice(0, at) + c + s.slice(at + 1) : p.chance(0.5) ? s.slice(0, at) + c + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
    }
    strings.push({ text: s });
  }
  const event = makeEvent();
  const attrs = event['attributes'] as Record<string, unknown>;
  for (const { text, canonical } of strings) {
    attrs['time'] = text;
    const reason = validateRecord(event);
    const normal = normalizeTime(text);
    const label = JSON.stringify(text);
    // validate must quarantine exactly what normalize-time cannot normalise: no valid event may
    // reach normalize-time only to be quarantined there with a misleading reason.
    assert.equal(reason === undefined, normal !== undefined, `${label}: validate says ${reason ?? 'valid'}, normalize-time says ${normal ?? 'cannot'}`);
    if (canonical !== undefined) assert.equal(normal, canonical, label);
    if (normal === undefined) {
      assert.match(reason!, /^attributes\.time: /, label);
      continue;
    }
    // Canonical means what Date#toISOString prints, so that every consumer's parser reads it.
    assert.equal(new Date(Date.parse(normal)).toISOString(), normal, `${label} → ${normal} is not canonical`);
    assert.equal(normalizeTime(normal), normal, `${label}: normalising is not idempotent`);
  }
  t.diagnostic(`${strings.length} time strings`);
});
