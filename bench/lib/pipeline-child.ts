/**
 * One pipeline run in a process of its own (forked by the capacity scenarios), so its CPU, peak
 * RSS and event-loop delay are its own and nothing the parent or the fixtures did.
 *
 * The parent sends one {@link ChildJob} over IPC; the child runs it and answers one
 * {@link ChildReport}, then exits. CPU is read from /proc/self/stat: utime+stime of this process,
 * and cutime+cstime of its waited-for children, i.e. the zstd processes, which have all exited
 * once every object is complete.
 */
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from '../../src/heap.js';
import { createMetrics } from '../../src/metrics.js';
import { runPipeline } from '../../src/pipeline.js';
import { createS3Client } from '../../src/sinks/s3.js';
import { eachPage, runBaseline } from '../baseline.js';

export interface ChildJob {
  /**
   * `ours-inline`: ours with `pageWorkers: 0` (every page processed on the main thread).
   * `floor`: fetch every page, timing only `JSON.parse` of the page and `JSON.stringify` of each record.
   */
  impl: 'ours' | 'ours-inline' | 'baseline' | 'floor';
  apiUrl: string;
  orgId: string;
  apiKey: string;
  s3Endpoint: string;
  bucket: string;
  /** For ours: the checkpoint file (a fresh one per run). */
  statePath: string;
  /** For ours: a request budget per minute, or none (`false`). */
  rateLimit: { requests: number; windowMs: number } | false;
  /** For ours: where to start. */
  from: number;
  /** S3 credentials (the fixtures accept any). */
  env: Record<string, string>;
}

export interface ChildReport {
  ok: boolean;
  error?: string;
  wallMs: number;
  events: number;
  quarantined: number;
  duplicates: number;
  objects: number;
  /** JSON-lines bytes written into the compressors (events and quarantine). */
  rawBytes: number;
  /** Compressed bytes of the complete objects, as the pipeline counted them. */
  compressedBytes: number;
  /** floor only: seconds inside JSON.parse + JSON.stringify. */
  jsonSeconds?: number;
  /** CPU seconds of this process. */
  cpuSelf: number;
  /** CPU seconds of its exited children (the zstd processes). */
  cpuChildren: number;
  /** Peak RSS, bytes. */
  maxRss: number;
  /** Event-loop delay percentiles, ms. */
  loopP50: number;
  loopP99: number;
  loopMax: number;
}

/** utime, stime, cutime, cstime in seconds. */
function procTimes(): [number, number, number, number] {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime is field 14 of the line, i.e. index 11 after pid and comm are removed.
  const tick = 100; // CLK_TCK on Linux
  return [Number(f[11]) / tick, Number(f[12]) / tick, Number(f[13]) / tick, Number(f[14]) / tick];
}

/** The machine's floor: the JSON work alone, on this thread, on the same pages. */
async function floor(job: ChildJob): Promise<{ records: number; seconds: number }> {
  let records = 0;
  let seconds = 0;
  let sink = 0;
  const timedParse = (text: string): unknown => {
    const t = performance.now();
    const page = JSON.parse(text) as unknown;
    seconds += (performance.now() - t) / 1000;
    return page;
  };
  for await (const data of eachPage(job.apiUrl, job.orgId, job.apiKey, 500, timedParse)) {
    const t = performance.now();
    for (const r of data) sink += JSON.stringify(r).length;
    seconds += (performance.now() - t) / 1000;
    records += data.length;
  }
  if (sink < 0) throw new Error('unreachable');
  return { records, seconds };
}

async function run(job: ChildJob): Promise<ChildReport> {
  Object.assign(process.env, job.env);
  const client = createS3Client({ endpoint: job.s3Endpoint, forcePathStyle: true, region: 'us-east-1' });
  const h = monitorEventLoopDelay({ resolution: 10 });
  const t0 = procTimes();
  const start = performance.now();
  h.enable();
  let counts = { events: 0, quarantined: 0, duplicates: 0, objects: 0, rawBytes: 0, compressedBytes: 0 };
  let jsonSeconds: number | undefined;
  let error: string | undefined;
  try {
    if (job.impl === 'floor') {
      const r = await floor(job);
      jsonSeconds = r.seconds;
      counts.events = r.records;
    } else if (job.impl === 'ours' || job.impl === 'ours-inline') {
      // With the CLI's heap growth and with metrics, as the CLI always runs it; the metrics also
      // give the byte counts.
      setHeapGrowth(DEFAULT_HEAP_GROWTH_PERCENT);
      const metrics = createMetrics({ registry: new Registry(), defaultMetrics: false });
      const r = await runPipeline(
        {
          orgId: job.orgId,
          apiKey: job.apiKey,
          apiUrl: job.apiUrl,
          from: job.from,
          statePath: job.statePath,
          output: { kind: 's3', bucket: job.bucket, endpoint: job.s3Endpoint, forcePathStyle: true },
          rateLimit: job.rateLimit,
          ...(job.impl === 'ours-inline' ? { pageWorkers: 0 } : {}),
        },
        { s3Client: client, metrics },
      );
      const sum = async (c: typeof metrics.bytesCompressed): Promise<number> => (await c.get()).values.reduce((n, v) => n + v.value, 0);
      counts = {
        events: r.events,
        quarantined: r.quarantined,
        duplicates: r.duplicates,
        objects: r.objects,
        rawBytes: await sum(metrics.bytesUncompressed),
        compressedBytes: await sum(metrics.bytesCompressed),
      };
    } else {
      const r = await runBaseline({ apiUrl: job.apiUrl, orgId: job.orgId, apiKey: job.apiKey, bucket: job.bucket, client });
      counts = { events: r.events, quarantined: r.invalid, duplicates: r.duplicates, objects: r.objects, rawBytes: r.rawBytes, compressedBytes: r.compressedBytes };
    }
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  const wallMs = performance.now() - start;
  h.disable();
  const t1 = procTimes();
  client.destroy();
  return {
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    wallMs,
    ...counts,
    ...(jsonSeconds === undefined ? {} : { jsonSeconds }),
    cpuSelf: t1[0] + t1[1] - t0[0] - t0[1],
    cpuChildren: t1[2] + t1[3] - t0[2] - t0[3],
    maxRss: process.resourceUsage().maxRSS * 1024,
    loopP50: h.percentile(50) / 1e6,
    loopP99: h.percentile(99) / 1e6,
    loopMax: h.max / 1e6,
  };
}

process.once('message', (job: ChildJob) => {
  void run(job).then((report) => {
    process.send!(report, () => process.exit(0));
  });
});
