/**
 * Scenario `micro`: each pipeline stage's plain function on the same realistic events, against
 * a deliberately straightforward baseline measured in the same run.
 *
 * How to read it: "ours ÷ baseline" is the number that survives a noisy machine (above 1: ours
 * is faster). Below 1 is not automatically a problem: most of our stages do more than their
 * baseline (validate checks the whole schema, dedupe bounds its memory), and the table says
 * what the extra work buys. The two floor rows (JSON.parse of pages, JSON.stringify per event)
 * are what the machine does with the same events without any of our code: a stage cannot be
 * much faster than the JSON work around it.
 *
 * One call of a case is one pass over all events, in the source's 500-record batches; a run is
 * one call; the stages work in place, so each call gets fresh batches in untimed setup.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { dedupeBatch, DedupeWindow, DEFAULT_DEDUPE_WINDOW } from '../src/transforms/dedupe.js';
import { processPage } from '../src/sources/page-process.js';
import { normalizeBatch, normalizeTime } from '../src/transforms/normalize-time.js';
import { validateBatch, validateRecord } from '../src/transforms/validate.js';
import { zstdCompress } from '../src/zstd.js';
import type { AuditEvent, Batch } from '../src/types.js';
import { baselineDedupeBatch, baselineNormalizeBatch, baselineSerialize, baselineValidateBatch } from './baseline.js';
import { auditStream } from './lib/audit-stream.js';
import { machine, type Machine } from './lib/machine.js';
import { rate, ratioText, sig3, spread } from './lib/format.js';
import { measureAll, ratio, type Case, type Measurement } from './lib/measure.js';
import type { ScenarioResult } from './lib/results.js';

export interface MicroOptions {
  /** Records in the stream each case goes through. */
  events: number;
  /** Timed runs per case. */
  repeat: number;
  /** Progress lines (stderr in run.ts). */
  progress?: (line: string) => void;
  /** The run's machine record (run.ts takes it once for every scenario). Default: taken now. */
  machine?: Machine;
}

/** Keeps the scenario near 30–60 s on a 2-core VM; gzip -6 is most of it. */
export const MICRO_DEFAULT_EVENTS = 100_000;
const ZSTD_LEVEL = 3;
const GZIP_LEVEL = 6;
/** The sink's compressor arguments (object-sink.ts), given to both zstd cases. */
const ZSTD_ARGS = ['-zc', `-${ZSTD_LEVEL}`, '--single-thread'];

/** The sink's `serialize` (object-sink.ts, not exported) without its too-deep fallback, which never runs here. */
function sinkSerialize(records: readonly unknown[]): string {
  let out = '';
  for (let i = 0; i < records.length; i++) out += `${JSON.stringify(records[i])}\n`;
  return out;
}

/** Writes `texts` into `input` with backpressure, as the sink does; resolves the bytes `output` produced. */
async function pump(texts: readonly string[], input: Writable, output: Readable): Promise<number> {
  let bytes = 0;
  output.on('data', (c: Buffer) => {
    bytes += c.length;
  });
  const done = finished(output);
  for (const t of texts) if (!input.write(t)) await once(input, 'drain');
  input.end();
  await done;
  return bytes;
}


const mb = (m: Measurement | undefined): string => (m?.mbPerSec === undefined ? '—' : sig3(m.mbPerSec.median));
const cpu = (m: Measurement | undefined): string => (m === undefined ? '—' : sig3(m.cpuPerEventUs));

interface Row {
  stage: string;
  ours: string;
  baseline: string;
  o: Measurement;
  b?: Measurement;
}

export async function micro(options: MicroOptions): Promise<ScenarioResult> {
  const started = process.hrtime.bigint();
  const m = options.machine ?? machine();
  const progress = options.progress ?? (() => {});
  const measureOpts = { repeat: options.repeat, warmup: 1, iterations: 1 };
  // One progress line per run of a case is too chatty; one per round says enough.
  const onRun = (group: string) => (name: string, round: number) => {
    if (name === 'ours' || name === 'parse') progress(`micro ${group}: round ${round + 1}/${options.repeat}`);
  };

  progress(`micro: generating ${options.events} events with the simulator`);
  const stream = auditStream(options.events);
  const templates = stream.batches;
  const fresh = (): Batch[] => templates.map((t) => ({ records: t.records, events: [], quarantined: [], position: t.position, hour: t.hour }));

  // Valid events per batch as validate leaves them, and their original times (normalize rewrites them in place).
  const validated = fresh().map((b) => validateBatch(b));
  const events = validated.reduce((n, b) => n + b.events.length, 0);
  const quarantinedOurs = validated.reduce((n, b) => n + b.quarantined.length, 0);
  const quarantinedBaseline = fresh()
    .map((b) => baselineValidateBatch(b))
    .reduce((n, b) => n + b.quarantined.length, 0);
  const originalTimes = validated.map((b) => b.events.map((e) => e.attributes.time));
  const restoreTimes = (): void => {
    validated.forEach((b, i) => b.events.forEach((e, j) => (e.attributes.time = originalTimes[i]![j]!)));
  };
  // Batches reused by the later stages; setup refills them from `validated`.
  const work: Batch[] = validated.map((b) => ({ ...b, events: [], quarantined: [] }));
  const refill = (): void => {
    work.forEach((w, i) => {
      w.events = validated[i]!.events.slice();
      w.quarantined = validated[i]!.quarantined.slice();
      delete w.duplicates;
      delete w.dedupeMark;
    });
  };

  const rows: Row[] = [];
  const data: Record<string, Record<string, Measurement>> = {};

  // -- validate
  let vBatches: Batch[] = [];
  const validate = await measureAll(
    {
      ours: { setup: () => (vBatches = fresh()), body: () => vBatches.map((b) => validateBatch(b)).length, events: stream.records },
      baseline: { setup: () => (vBatches = fresh()), body: () => vBatches.map((b) => baselineValidateBatch(b)).length, events: stream.records },
    },
    measureOpts,
    onRun('validate'),
  );
  data.validate = validate;
  rows.push({ stage: 'validate', ours: '`validateBatch`', baseline: 'required fields + `Date.parse`', o: validate.ours, b: validate.baseline });

  // -- normalize. Outputs differ where Date.parse rounds sub-millisecond digits (ours truncates); counted below.
  const normalize = await measureAll(
    {
      ours: { setup: () => (restoreTimes(), refill()), body: () => work.map((b) => normalizeBatch(b)).length, events },
      baseline: { setup: () => (restoreTimes(), refill()), body: () => work.map((b) => baselineNormalizeBatch(b)).length, events },
    },
    measureOpts,
    onRun('normalize'),
  );
  data.normalize = normalize;
  rows.push({ stage: 'normalize', ours: '`normalizeBatch`', baseline: '`new Date(t).toISOString()`', o: normalize.ours, b: normalize.baseline });
  restoreTimes();
  refill();
  work.forEach((b) => baselineNormalizeBatch(b));
  const baselineTimes = work.map((b) => b.events.map((e) => e.attributes.time));
  restoreTimes();
  refill();
  work.forEach((b) => normalizeBatch(b));
  let normalizeDiffers = 0;
  work.forEach((b, i) => b.events.forEach((e, j) => (normalizeDiffers += e.attributes.time === baselineTimes[i]![j] ? 0 : 1)));
  const timeSpellings = new Map<string, number>();
  for (const t of originalTimes.flat()) {
    const style = /\.\d{3}Z$/.test(t) ? 'canonical' : /\.\d{6}Z$/.test(t) ? 'microseconds' : /[+-]\d\d:\d\d$/.test(t) ? 'offset' : 'no fraction';
    timeSpellings.set(style, (timeSpellings.get(style) ?? 0) + 1);
  }
  // From here on the events keep their normalised times, as the sink receives them.

  // -- dedupe. Ours commits after every batch: the eviction work per id is the same as committing per object.
  let window = new DedupeWindow();
  let seen = new Set<string>();
  const dedupe = await measureAll(
    {
      ours: {
        setup: () => (refill(), (window = new DedupeWindow(DEFAULT_DEDUPE_WINDOW))),
        body: () => {
          for (const b of work) {
            dedupeBatch(b, window);
            window.commit(window.mark);
          }
          return window.size;
        },
        events,
      },
      baseline: {
        setup: () => (refill(), (seen = new Set())),
        body: () => {
          for (const b of work) baselineDedupeBatch(b, seen);
          return seen.size;
        },
        events,
      },
    },
    measureOpts,
    onRun('dedupe'),
  );
  data.dedupe = dedupe;
  rows.push({ stage: 'dedupe', ours: `\`dedupeBatch\`, ${DEFAULT_DEDUPE_WINDOW / 1000}k-id window`, baseline: 'plain `Set`, no eviction', o: dedupe.ours, b: dedupe.baseline });
  refill();
  window = new DedupeWindow();
  for (const b of work) dedupeBatch(b, window);
  const dupOurs = work.reduce((n, b) => n + (b.duplicates ?? 0), 0);
  const eventDupOurs = validated.reduce((n, b) => n + b.events.length, 0) - work.reduce((n, b) => n + b.events.length, 0);
  refill();
  seen = new Set();
  for (const b of work) baselineDedupeBatch(b, seen);
  const dupBaseline = work.reduce((n, b) => n + (b.duplicates ?? 0), 0);
  refill();

  // -- serialise: the sink also measures the text (Buffer.byteLength), which flattens the concatenated string.
  const lines = work.map((b) => sinkSerialize(b.events));
  const jsonlBytes = lines.reduce((n, t) => n + Buffer.byteLength(t), 0);
  const serialiseSame = work.every((b, i) => baselineSerialize(b.events) === lines[i]);
  const serialisedBytes = (serialize: (events: readonly unknown[]) => string): number => {
    let n = 0;
    for (const b of work) n += Buffer.byteLength(serialize(b.events));
    return n;
  };
  const serialise = await measureAll(
    {
      ours: { body: () => serialisedBytes(sinkSerialize), events, bytes: jsonlBytes },
      baseline: { body: () => serialisedBytes(baselineSerialize), events, bytes: jsonlBytes },
    },
    measureOpts,
    onRun('serialise'),
  );
  data.serialise = serialise;
  rows.push({ stage: 'serialise', ours: "sink's `serialize` (`+=`)", baseline: '`map(stringify).join`', o: serialise.ours, b: serialise.baseline });

  // -- page: all a page worker does to one page (page-process.ts), against the same work done the
  // straightforward way with the same check functions: parse, validate, normalise, stringify.
  const pageBodies = stream.pages.map((p) => Buffer.from(p));
  const pageOptions = { pageSize: Number.MAX_SAFE_INTEGER };
  const pageLines = (): number => {
    let n = 0;
    for (const body of pageBodies) {
      const r = processPage(body, pageOptions);
      if (typeof r === 'string') throw new Error(`micro: a page was refused: ${r}`);
      n += r.events.bytes.length;
    }
    return n;
  };
  const plainLines = (): number => {
    let n = 0;
    for (const text of stream.pages) {
      let out = '';
      for (const record of (JSON.parse(text) as { data: unknown[] }).data) {
        if (validateRecord(record) !== undefined) continue;
        const e = record as AuditEvent;
        const t = normalizeTime(e.attributes.time);
        if (t === undefined) continue;
        e.attributes.time = t;
        out += `${JSON.stringify(e)}\n`;
      }
      n += Buffer.byteLength(out);
    }
    return n;
  };
  const pageBytesOut = pageLines();
  const pageSameBytes = pageBytesOut === plainLines();
  const pageCase = await measureAll(
    {
      ours: { body: pageLines, events: stream.records, bytes: stream.pageBytes },
      baseline: { body: plainLines, events: stream.records, bytes: stream.pageBytes },
    },
    measureOpts,
    onRun('page'),
  );
  data.page = pageCase;
  rows.push({ stage: 'page (all of it)', ours: '`processPage` (a page worker)', baseline: 'parse, validate, normalise, stringify', o: pageCase.ours, b: pageCase.baseline });

  // -- floors: the JSON work around the stages, no code of ours.
  const flat = work.flatMap((b) => b.events);
  const floors = await measureAll(
    {
      parse: {
        body: () => {
          let n = 0;
          for (const p of stream.pages) n += (JSON.parse(p) as { data: unknown[] }).data.length;
          return n;
        },
        events: stream.records,
        bytes: stream.pageBytes,
      },
      stringify: {
        body: () => {
          let n = 0;
          for (let i = 0; i < flat.length; i++) n += JSON.stringify(flat[i]).length;
          return n;
        },
        events,
        bytes: jsonlBytes - events, // the lines without their '\n'
      },
    },
    measureOpts,
    onRun('floor'),
  );
  data.floor = floors;

  // -- compress: one compressor per call, fed batch by batch, like one object of the sink.
  progress('micro: compress (zstd and gzip, the slow part)');
  let zstdOut = 0;
  let spawnOut = 0;
  let gzipOut = 0;
  const comp: Record<'ours' | 'spawn' | 'gzip', Case> = {
    ours: {
      body: async () => {
        const z = await zstdCompress(ZSTD_LEVEL, ['--single-thread']);
        return (zstdOut = await pump(lines, z, z));
      },
      events,
      bytes: jsonlBytes,
    },
    spawn: {
      body: async () => {
        const child = spawn('zstd', ZSTD_ARGS, { stdio: ['pipe', 'pipe', 'inherit'] });
        const exited = once(child, 'close');
        spawnOut = await pump(lines, child.stdin, child.stdout);
        const [code] = (await exited) as [number | null];
        if (code !== 0) throw new Error(`zstd exited with ${code}`);
        return spawnOut;
      },
      events,
      bytes: jsonlBytes,
    },
    gzip: {
      body: async () => {
        const gz = createGzip({ level: GZIP_LEVEL });
        return (gzipOut = await pump(lines, gz, gz));
      },
      events,
      bytes: jsonlBytes,
    },
  };
  const compressed = await measureAll(comp, measureOpts, onRun('compress'));
  data.compress = compressed;
  rows.push({ stage: 'compress', ours: `zstdCompress -${ZSTD_LEVEL}`, baseline: `own \`zstd -${ZSTD_LEVEL}\` spawn`, o: compressed.ours, b: compressed.spawn });
  rows.push({ stage: 'compress (codec)', ours: `zstdCompress -${ZSTD_LEVEL}`, baseline: `node:zlib gzip -${GZIP_LEVEL} (reference)`, o: compressed.ours, b: compressed.gzip });
  rows.push({ stage: 'floor: parse', ours: '`JSON.parse` per page', baseline: '—', o: floors.parse });
  rows.push({ stage: 'floor: stringify', ours: '`JSON.stringify` per event', baseline: '—', o: floors.stringify });

  const pct = (n: number, of: number): string => `${((100 * n) / of).toFixed(2)} %`;
  const MB = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
  const spellings = [...timeSpellings].map(([k, v]) => `${k} ${pct(v, events)}`).join(', ');
  const cpuShare = (x: Measurement): string => x.cpuPerWall.toFixed(2);

  const result: ScenarioResult = {
    title: 'per-stage micro-benchmarks against naive baselines',
    about: [
      `Each stage's plain function (no streams) over the same ${stream.records.toLocaleString('en-US')} simulated records (fixed seed), ` +
        'cut into the source\'s 500-record batches. One run is one pass over all of them; ours and its baseline run interleaved. ' +
        '**ours ÷ baseline** is the median of the run-by-run ratios of events/s (above 1: ours is faster), min–max in parentheses.',
      'CPU µs/event counts this process (all threads) plus reaped child processes (the zstd CLI), per event. ' +
        'MB/s is JSON bytes: page bytes for parse, JSON-lines bytes for serialise and compress (input side).',
    ],
    params: { events: stream.records, batch: 500, runs: options.repeat, warmup: measureOpts.warmup, seed: 'bench' },
    table: {
      columns: ['stage', 'ours', 'baseline', 'ours events/s', 'baseline events/s', 'ours ÷ baseline', 'MB/s ours · base', 'CPU µs/event ours · base'],
      right: [false, false, false, true, true, true, true, true],
      rows: rows.map((r) => [
        r.stage,
        r.ours,
        r.baseline,
        spread(r.o.eventsPerSec, rate),
        r.b === undefined ? '—' : spread(r.b.eventsPerSec, rate),
        r.b === undefined ? '—' : ratioText(ratio(r.o, r.b)),
        r.o.mbPerSec === undefined ? '—' : r.b === undefined ? mb(r.o) : `${mb(r.o)} · ${mb(r.b)}`,
        r.b === undefined ? cpu(r.o) : `${cpu(r.o)} · ${cpu(r.b)}`,
      ]),
    },
    notes: [
      `Input: ${stream.records.toLocaleString('en-US')} records in ${templates.length} batches, ${MB(stream.pageBytes)} of pages; ` +
        `${events.toLocaleString('en-US')} valid events, ${MB(jsonlBytes)} as JSON lines (${(jsonlBytes / events).toFixed(0)} B/event). ` +
        'validate and the parse floor count every record; the other rows count valid events.',
      'validate: ours is `validateBatch` (src/transforms/validate.ts): every field the schema names (actor, context, container, location, message, links) ' +
        'and both `time` and `processedAt` parsed as strict RFC 3339. The baseline checks an object with string `id` and `type`, object `attributes` and `links`, ' +
        `and that \`Date.parse(attributes.time)\` is a number. Ours quarantines ${quarantinedOurs} records, the baseline ${quarantinedBaseline}: ` +
        'it lets through malformed records whose fault is in a field it does not look at, or a time `Date.parse` accepts (no zone).',
      'normalize: ours is `normalizeBatch` (src/transforms/normalize-time.ts): a time already canonical is kept after a shape check and a full parse, ' +
        'any other is parsed by the hand-written RFC 3339 parser of src/time.ts and rewritten. The baseline rewrites every time with `new Date(t).toISOString()` ' +
        `(V8's native parser; it throws on a leap second \`…:60Z\`, which RFC 3339 allows). Input times: ${spellings}. ` +
        `On this input the two outputs differ for ${normalizeDiffers} of ${events.toLocaleString('en-US')} events.`,
      `dedupe: ours is \`dedupeBatch\` with a \`DedupeWindow\` of ${DEFAULT_DEDUPE_WINDOW.toLocaleString('en-US')} committed ids (src/transforms/dedupe.ts), ` +
        'committed after every batch (eviction costs the same per id whenever the commit comes); it also drops re-delivered quarantined records by id. ' +
        'The baseline is a `Set` of every event id ever seen, never evicted. ' +
        `Both drop ${eventDupOurs === dupBaseline ? `the same ${dupBaseline}` : `different numbers of (ours ${eventDupOurs}, baseline ${dupBaseline})`} re-delivered events` +
        `${dupOurs !== eventDupOurs ? ` (ours also ${dupOurs - eventDupOurs} quarantined records)` : ''}.`,
      "serialise: ours is the sink's `serialize` (src/sinks/object-sink.ts, not exported; the same loop without its fallback for too-deep records): " +
        "`out += JSON.stringify(e) + '\\n'`. The baseline is `events.map((e) => JSON.stringify(e)).join('\\n') + '\\n'`. Both then take `Buffer.byteLength` " +
        `of the text, as the sink does before writing it (which flattens a concatenated string). Outputs: ${serialiseSame ? 'identical' : 'DIFFERENT'}.`,
      'page: ours is `processPage` (src/sources/page-process.ts), what a page worker does to each page: read the body as Latin-1, `JSON.parse`, ' +
        "validate and normalise every record with the stages' functions, and write each valid event's line as its bytes as received (a rewritten time " +
        "spliced in). The baseline does the same work the straightforward way with the same functions: UTF-8 text, `JSON.parse`, `validateRecord`, " +
        `\`normalizeTime\`, \`JSON.stringify\` of each valid event. Output bytes: ${pageSameBytes ? 'the same total' : 'different totals (escapes kept as received)'}.`,
      `compress: ours is \`zstdCompress(${ZSTD_LEVEL}, ['--single-thread'])\` (src/zstd.ts: simple-zstd's ProcessDuplex over a zstd started through \`sh\` with the stop signals ignored) as the sink opens it per object; the baseline spawns ` +
        `\`zstd ${ZSTD_ARGS.join(' ')}\` directly and pipes the same strings through stdin/stdout, so their ratio is our wrapper's own overhead. ` +
        `The "codec" row compares with node:zlib \`createGzip({ level: ${GZIP_LEVEL} })\`, the in-process alternative. ` +
        `One compressor per pass, fed the ${templates.length} batch texts with backpressure like one object of the sink; spawn and exit are inside the timing. ` +
        `zstd -${ZSTD_LEVEL}: ${MB(jsonlBytes)} → ${MB(zstdOut)} (${(jsonlBytes / zstdOut).toFixed(1)}×; own spawn ${MB(spawnOut)}), ` +
        `gzip -${GZIP_LEVEL}: → ${MB(gzipOut)} (${(jsonlBytes / gzipOut).toFixed(1)}×). zstd works in a child process, gzip on the libuv pool, so both may use ` +
        `the second core: CPU ÷ wall was ${cpuShare(compressed.ours)} (zstdCompress), ${cpuShare(compressed.spawn)} (own spawn), ${cpuShare(compressed.gzip)} (gzip).`,
      'floors: `JSON.parse` of each whole page body, as the source parses a page (without the HTTP); `JSON.stringify` of each event alone, ' +
        'i.e. the serialise rows without concatenation and byte counting.',
    ],
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    machine: m,
    data: {
      records: stream.records,
      events,
      batches: templates.length,
      pageBytes: stream.pageBytes,
      jsonlBytes,
      compressedBytes: { zstd: zstdOut, zstdSpawn: spawnOut, gzip: gzipOut },
      quarantined: { ours: quarantinedOurs, baseline: quarantinedBaseline },
      duplicates: { ours: dupOurs, baseline: dupBaseline },
      normalizeDiffers,
      measurements: data,
    },
  };
  return result;
}
