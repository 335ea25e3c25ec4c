/**
 * The fixtures of the end-to-end scenarios in a process of their own: the API simulator (its
 * records rendered once, up front, into byte slabs, so a page is a copy of byte ranges) and,
 * when asked, the discarding S3 endpoint. Forked by the scenarios; talks over IPC:
 *
 *   parent → {@link FixtureStart}   child → {@link FixtureReady}
 *   parent → 'stats'                 child → {@link FixtureStats}  (any number of times)
 *   parent → 'resetStats'            child → 'ok'
 *   parent → 'digest'                child → the digest (digest.ts) of the ground truth's valid events,
 *                                    `attributes.time` normalised: what the events objects must hold
 *   parent → 'close'                 child exits
 */
import { createSimulator, type RateLimitOptions } from '../../src/simulator/index.js';
import { normalizeTime } from '../../src/transforms/normalize-time.js';
import { DigestBuilder } from './digest.js';
import { startDiscardS3, type DiscardS3 } from './discard-s3.js';

export interface FixtureStart {
  events: number;
  seed: number;
  /** Simulated "now" (epoch ms), so the input does not depend on when the bench runs. */
  now: number;
  rateLimit?: RateLimitOptions;
  discardS3: boolean;
}

export interface FixtureReady {
  apiUrl: string;
  orgId: string;
  apiKey: string;
  s3Url?: string;
  /** Seconds spent generating the records. */
  generateSeconds: number;
  summary: { valid: number; invalid: number; duplicates: number; totalRecords: number; bytes: number };
}

export interface FixtureStats {
  requests: number;
  byStatus: Record<string, number>;
  eventsServed: number;
  bytesServed: number;
  /** CPU seconds this process (simulator and S3 endpoint) used since the stats were last reset. */
  cpuSeconds: number;
  s3?: { objects: number; bytes: number; parts: number; requests: Record<string, number> };
}

let sim: ReturnType<typeof createSimulator> | undefined;
let cpuSince = process.cpuUsage();
let s3: DiscardS3 | undefined;

process.on('message', (msg: FixtureStart | 'stats' | 'resetStats' | 'digest' | 'close') => {
  void (async () => {
    if (msg === 'close') {
      await sim?.close();
      await s3?.close();
      process.exit(0);
    } else if (msg === 'stats') {
      const st = sim!.stats;
      const cpu = process.cpuUsage(cpuSince);
      const out: FixtureStats = { requests: st.requests, byStatus: st.byStatus, eventsServed: st.eventsServed, bytesServed: st.bytesServed, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
      if (s3 !== undefined) out.s3 = { objects: s3.stats.objects, bytes: s3.stats.bytes, parts: s3.stats.parts, requests: s3.stats.requests };
      process.send!(out);
    } else if (msg === 'digest') {
      const d = new DigestBuilder();
      for (const e of sim!.truth().valid.values()) {
        e.attributes.time = normalizeTime(e.attributes.time)!;
        d.add(e);
      }
      process.send!(d.finish());
    } else if (msg === 'resetStats') {
      sim!.resetStats();
      cpuSince = process.cpuUsage();
      if (s3 !== undefined) Object.assign(s3.stats, { objects: 0, bytes: 0, parts: 0, requests: {} });
      process.send!('ok');
    } else {
      const t = performance.now();
      sim = createSimulator({ events: msg.events, seed: msg.seed, now: msg.now, maxLogEntries: 1000, ...(msg.rateLimit === undefined ? {} : { rateLimit: msg.rateLimit }) });
      const generateSeconds = (performance.now() - t) / 1000;
      await sim.start();
      if (msg.discardS3) s3 = await startDiscardS3();
      const ready: FixtureReady = {
        apiUrl: sim.url,
        orgId: sim.orgId,
        apiKey: sim.apiKey,
        ...(s3 === undefined ? {} : { s3Url: s3.url }),
        generateSeconds,
        summary: sim.summary(),
      };
      process.send!(ready);
    }
  })();
});
process.on('disconnect', () => process.exit(0));
