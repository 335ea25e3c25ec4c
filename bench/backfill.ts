/**
 * Scenario `backfill` (the 4): a rate-limited backfill. The simulator enforces a request
 * budget per fixed window and announces it with `X-RateLimit-Limit/-Remaining/-Reset` (reset at
 * minute precision, as observed), answering 429 past it; the limit is scaled down from a real
 * org's so the run takes about a minute. Ours runs with the same budget (`--rate-limit`), into
 * the discarding S3 endpoint.
 *
 * Reported: the wall time ÷ the theoretical minimum (successful requests ÷ allowed rate: the
 * pages, the last, empty one included), and the share of requests answered 429.
 */
import { checkCounts, FIXTURE_NOW, FIXTURE_SEED, runOnce } from './capacity.js';
import { startFixture } from './lib/children.js';
import { machine, type Machine } from './lib/machine.js';
import type { ScenarioResult } from './lib/results.js';

export const BACKFILL_REQUESTS_PER_MIN = 300;
/** Fresh records: with re-deliveries, about 300 pages of 500, i.e. about a minute at 300 requests/min. */
export const BACKFILL_EVENTS = 149_000;

export interface BackfillOptions {
  progress?: (line: string) => void;
  machine?: Machine;
}

export async function backfill(o: BackfillOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const m = o.machine ?? machine();
  const progress = o.progress ?? (() => {});
  const budget = { requests: BACKFILL_REQUESTS_PER_MIN, windowMs: 60_000 };
  const fx = await startFixture({ events: BACKFILL_EVENTS, seed: FIXTURE_SEED, now: FIXTURE_NOW, rateLimit: budget, discardS3: true });
  const truth = fx.ready.summary;
  let run;
  try {
    progress(`backfill: ${truth.totalRecords.toLocaleString('en-US')} records at ${budget.requests} requests/min (about a minute)`);
    run = await runOnce(fx, 'ours', 0, { endpoint: fx.ready.s3Url!, bucket: 'bench', env: { AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench-secret' } }, { rateLimit: budget });
  } finally {
    await fx.close();
  }
  const bad = checkCounts(run, truth);
  if (bad !== undefined) throw new Error(`backfill: ${bad}`);
  const ok = run.requests - run.status429;
  const minimumS = ok / (budget.requests / (budget.windowMs / 1000));
  const wallS = run.wallMs / 1000;
  const share429 = run.status429 / run.requests;
  return {
    title: 'rate-limited backfill: the budget fully used, without 429s',
    about: [
      `${truth.totalRecords.toLocaleString('en-US')} simulated records in 500-record pages; the simulator allows ${budget.requests} requests per ${budget.windowMs / 1000} s window ` +
        '(fixed windows from the first request, `X-RateLimit-Reset` at minute precision) and answers 429 past it. Ours runs with `--rate-limit ' +
        `${budget.requests}/1m\`: the budget spread evenly (1 % spacing margin), the headers watched.`,
      '**wall ÷ minimum** is the run\'s wall time over (successful requests ÷ allowed rate); 1.00 would be every request at the earliest moment the budget allows.',
    ],
    params: { records: truth.totalRecords, requestsPerMin: budget.requests, pageSize: 500 },
    table: {
      columns: ['requests', '200', '429', '429 share', 'minimum s', 'wall s', 'wall ÷ minimum', 'target'],
      right: [true, true, true, true, true, true, true, false],
      rows: [
        [
          String(run.requests),
          String(ok),
          String(run.status429),
          `${(share429 * 100).toFixed(2)} %`,
          minimumS.toFixed(1),
          wallS.toFixed(1),
          (wallS / minimumS).toFixed(3),
          '≤ 1.05, 429 share < 1 %',
        ],
      ],
    },
    notes: [
      `Every valid event written once, every malformed record quarantined, every re-delivery dropped (${truth.valid.toLocaleString('en-US')} / ` +
        `${truth.invalid.toLocaleString('en-US')} / ${truth.duplicates.toLocaleString('en-US')}, checked against the ground truth).`,
    ],
    seconds: (performance.now() - started) / 1000,
    machine: m,
    data: { truth, run, minimumS, wallS, share429 },
  };
}
