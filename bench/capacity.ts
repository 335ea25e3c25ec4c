/**
 * Scenario `capacity` (the 1 and 2): the whole pipeline, end to end, as fast as it goes.
 *
 * The simulator (its records rendered once into byte slabs, so a page is a copy of byte ranges)
 * and an S3 endpoint that accepts and discards uploads run in a fixture process; each pipeline
 * runs in a fresh process of its own, so its CPU, peak RSS and event-loop delay are its own.
 * In the same run, round by round and in alternating order: ours (`runPipeline` with its defaults,
 * the CLI's heap growth (src/heap.ts) and metrics, no request budget of its own), the straightforward baseline (bench/baseline.ts),
 * ours with `pageWorkers: 0` (the smallest footprint), and the machine's floor (the same pages fetched, `JSON.parse` of each page and `JSON.stringify`
 * of each record timed alone, on one thread).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFixture, runChild, type Fixture } from './lib/children.js';
import { rate, ratioText, sig3, spread } from './lib/format.js';
import { machine, type Machine } from './lib/machine.js';
import { stats, type Stats } from './lib/measure.js';
import type { FixtureStats } from './lib/fixture-child.js';
import type { ChildJob, ChildReport } from './lib/pipeline-child.js';
import type { ScenarioResult } from './lib/results.js';

export const CAPACITY_DEFAULT_EVENTS = 1_000_000;
export const CAPACITY_DEFAULT_RUNS = 3;
/** Fixed input: the same records on every run and every machine. */
export const FIXTURE_SEED = 5;
export const FIXTURE_NOW = Date.parse('2026-03-02T12:00:00.000Z');
/** Credentials for the discarding endpoint (it checks none). */
const DISCARD_ENV = { AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench-secret', AWS_REGION: 'us-east-1' };

export interface CapacityOptions {
  events: number;
  runs: number;
  progress?: (line: string) => void;
  machine?: Machine;
  /** Write a `--cpu-prof` profile of each of our runs here. */
  cpuProfileDir?: string;
}

type Impl = ChildJob['impl'];

export interface E2eRun extends ChildReport {
  impl: Impl;
  round: number;
  /** Page bytes the simulator served during the run. */
  bytesIn: number;
  requests: number;
  status429: number;
  /** CPU seconds of the fixture process (simulator, and the discarding S3 endpoint when used) during the run. */
  fixtureCpu: number;
  /** What the discarding S3 endpoint received, when it was the target. */
  stored?: FixtureStats['s3'];
}

/** Runs one implementation against the fixture, with a fresh checkpoint. */
export async function runOnce(
  fx: Fixture,
  impl: Impl,
  round: number,
  target: { endpoint: string; bucket: string; env: Record<string, string> },
  extra: { rateLimit?: ChildJob['rateLimit']; cpuProfileDir?: string } = {},
): Promise<E2eRun> {
  await fx.resetStats();
  const dir = await mkdtemp(path.join(tmpdir(), 'aap-bench-'));
  try {
    const report = await runChild(
      {
        impl,
        apiUrl: fx.ready.apiUrl,
        orgId: fx.ready.orgId,
        apiKey: fx.ready.apiKey,
        s3Endpoint: target.endpoint,
        bucket: target.bucket,
        statePath: path.join(dir, 'state.json'),
        rateLimit: extra.rateLimit ?? false,
        from: 0,
        env: target.env,
      },
      impl === 'ours' && extra.cpuProfileDir !== undefined ? { cpuProfileDir: extra.cpuProfileDir } : {},
    );
    if (!report.ok) throw new Error(`${impl} failed: ${report.error}`);
    const st = await fx.stats();
    return { ...report, impl, round, bytesIn: st.bytesServed, requests: st.requests, status429: st.byStatus['429'] ?? 0, fixtureCpu: st.cpuSeconds, ...(st.s3 === undefined ? {} : { stored: st.s3 }) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The time a run is measured over: wall time, or for the floor the time inside the JSON calls. */
const seconds = (r: E2eRun): number => (r.impl === 'floor' ? r.jsonSeconds! : r.wallMs / 1000);
export const perSec = (r: E2eRun): number => r.events / seconds(r);
/** CPU seconds per million records received (process + zstd children). */
export const cpuPerM = (r: E2eRun): number => ((r.cpuSelf + r.cpuChildren) * 1e6) / (r.events + r.quarantined + r.duplicates);

/** CPU seconds of the fixture process per million records received. */
export const fixturePerM = (r: E2eRun): number => (r.fixtureCpu * 1e6) / (r.events + r.quarantined + r.duplicates);

/** One table row per implementation: the median and min–max over the runs. */
export function e2eRow(label: string, runs: E2eRun[]): string[] {
  const s = (f: (r: E2eRun) => number): Stats => stats(runs.map(f));
  const mbIn = s((r) => r.bytesIn / 1e6 / seconds(r));
  const ratioC = s((r) => (r.compressedBytes > 0 ? r.rawBytes / r.compressedBytes : NaN));
  const cpu = s(cpuPerM);
  const zstdShare = s((r) => r.cpuChildren / (r.cpuSelf + r.cpuChildren));
  const rss = s((r) => r.maxRss / 2 ** 20);
  const p99 = s((r) => r.loopP99);
  return [
    label,
    spread(s(perSec), rate),
    spread(mbIn, sig3),
    `${sig3(cpu.median)} (${(zstdShare.median * 100).toFixed(0)} % zstd)`,
    spread(rss, (n) => n.toFixed(0)),
    Number.isNaN(ratioC.median) ? '—' : `${ratioC.median.toFixed(1)}×`,
    spread(p99, sig3),
  ];
}

export const E2E_COLUMNS = ['run', 'events/s', 'MB/s in', 'CPU s per 1M records', 'peak RSS MiB', 'zstd ratio', 'loop delay p99 ms'];
export const E2E_RIGHT = [false, true, true, true, true, true, true];

/** Checks a run's counts against the simulator's ground truth. */
export function checkCounts(r: E2eRun, truth: Fixture['ready']['summary']): string | undefined {
  if (r.impl === 'floor') return r.events === truth.totalRecords ? undefined : `floor parsed ${r.events} records, the log holds ${truth.totalRecords}`;
  if (r.impl === 'baseline') return r.events + r.quarantined + r.duplicates === truth.totalRecords ? undefined : `baseline handled ${r.events + r.quarantined + r.duplicates} of ${truth.totalRecords} records`;
  if (r.events !== truth.valid || r.quarantined !== truth.invalid || r.duplicates !== truth.duplicates) {
    return `ours wrote ${r.events} events, ${r.quarantined} quarantined, ${r.duplicates} duplicates; the truth is ${truth.valid}, ${truth.invalid}, ${truth.duplicates}`;
  }
  return undefined;
}

export async function capacity(o: CapacityOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const m = o.machine ?? machine();
  const progress = o.progress ?? (() => {});
  progress(`capacity: generating ${o.events.toLocaleString('en-US')} records in the simulator`);
  const fx = await startFixture({ events: o.events, seed: FIXTURE_SEED, now: FIXTURE_NOW, discardS3: true });
  const truth = fx.ready.summary;
  const runs: E2eRun[] = [];
  try {
    const target = { endpoint: fx.ready.s3Url!, bucket: 'bench', env: DISCARD_ENV };
    for (let round = 0; round < o.runs; round++) {
      const order: Impl[] = round % 2 === 0 ? ['ours', 'baseline', 'ours-inline', 'floor'] : ['baseline', 'ours', 'ours-inline', 'floor'];
      for (const impl of order) {
        progress(`capacity: round ${round + 1}/${o.runs}, ${impl}`);
        const r = await runOnce(fx, impl, round, target, o.cpuProfileDir === undefined ? {} : { cpuProfileDir: o.cpuProfileDir });
        const bad = checkCounts(r, truth);
        if (bad !== undefined) throw new Error(`capacity: ${bad}`);
        runs.push(r);
      }
    }
  } finally {
    await fx.close();
  }
  const of = (impl: Impl): E2eRun[] => runs.filter((r) => r.impl === impl);
  const ratios = (other: Impl, than: Impl = 'ours'): Stats =>
    stats(Array.from({ length: o.runs }, (_, i) => perSec(of(than)[i]!) / perSec(of(other)[i]!)));
  const vsBaseline = ratios('baseline');
  const vsFloor = ratios('floor');
  const ours = of('ours');
  const oursRate = stats(ours.map(perSec));
  const MB = (n: number): string => `${(n / 1e6).toFixed(0)} MB`;
  return {
    title: 'pipeline capacity, and the straightforward baseline in the same run',
    about: [
      `${truth.totalRecords.toLocaleString('en-US')} simulated records (fixed seed; ~1 % malformed, ~0.5 % re-delivered), served by the simulator in 500-record pages ` +
        'from a fixture process, into an S3 endpoint that accepts and discards uploads. Each run is a fresh process: ours is `runPipeline` with its defaults ' +
        '(two page workers, metrics on, the CLI\'s heap growth of 100 %, no request budget of its own), "ours, --page-workers 0" the same with every page processed on the main thread, the baseline is bench/baseline.ts, the floor is the same pages through `JSON.parse` and `JSON.stringify` alone.',
      '**events/s** counts valid events written (records parsed, for the floor), over the wall time from the first request to the last object complete ' +
        '(for the floor: over the time inside the two JSON calls). **CPU** is the pipeline process plus its zstd children, per million records received. ' +
        'Median and (min–max) over the runs; ratios are of runs in the same round.',
    ],
    params: { events: truth.totalRecords, runs: o.runs, seed: FIXTURE_SEED },
    table: {
      columns: E2E_COLUMNS,
      right: E2E_RIGHT,
      rows: [
        e2eRow('ours', ours),
        e2eRow('baseline', of('baseline')),
        e2eRow('ours, --page-workers 0', of('ours-inline')),
        e2eRow('floor: JSON.parse + JSON.stringify', of('floor')),
      ],
    },
    notes: [
      `**ours ÷ baseline: ${ratioText(vsBaseline)}** (target ≥ 2.0); ours ÷ floor: ${ratioText(vsFloor)}; ours ${rate(oursRate.median)} events/s (target ≥ 100k). ` +
        `With \`--page-workers 0\` (every page processed on the main thread, the smallest footprint): ÷ baseline ${ratioText(ratios('baseline', 'ours-inline'))}.`,
      `Input: ${MB(ours[0]!.bytesIn)} of pages per run; ${truth.valid.toLocaleString('en-US')} valid events, ${truth.invalid.toLocaleString('en-US')} malformed, ` +
        `${truth.duplicates.toLocaleString('en-US')} re-deliveries. Every run of ours wrote exactly the valid events, quarantined exactly the malformed records ` +
        'and dropped exactly the re-deliveries (checked against the simulator\'s ground truth); the baseline handled every record (its looser validation lets ' +
        `through ${of('baseline')[0]!.events - truth.valid} malformed records).`,
      `Objects per run: ours ${ours[0]!.objects} (events and quarantine), baseline ${of('baseline')[0]!.objects}. zstd ratio is JSON-lines bytes ÷ compressed bytes.`,
      `CPU budget: ${m.cores} cores give ${m.cores * 10} CPU s per 1M records at 100k events/s, for everything on the machine. Per 1M records: ours used ` +
        `${sig3(stats(ours.map(cpuPerM)).median)} s (pipeline process and zstd), the fixture process serving it ${sig3(stats(ours.map(fixturePerM)).median)} s ` +
        `(simulator and discarding S3 endpoint), and the floor's two JSON calls alone take ${sig3(stats(of('floor').map((r) => (r.jsonSeconds! * 1e6) / r.events)).median)} s on one thread.`,
    ],
    seconds: (performance.now() - started) / 1000,
    machine: m,
    data: { truth, runs, ratios: { vsBaseline, vsFloor } },
  };
}
