/**
 * Entry point of the bench suite: `npm run bench` (builds, then runs this with --expose-gc).
 *
 * Prints the machine line, then each scenario's table; writes bench/results/<date>-<commit>.json
 * and regenerates bench/README.md from the newest results file. Progress goes to stderr, so
 * stdout is only the report.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { canCollect } from './lib/measure.js';
import { machine, machineLine, type Machine } from './lib/machine.js';
import { textReport, writeReadme, writeResults, type ScenarioResult } from './lib/results.js';
import { backfill, BACKFILL_REQUESTS_PER_MIN } from './backfill.js';
import { capacity, CAPACITY_DEFAULT_EVENTS, CAPACITY_DEFAULT_RUNS } from './capacity.js';
import { micro, MICRO_DEFAULT_EVENTS } from './micro.js';
import { s3Scenario } from './s3.js';

interface RunOptions {
  /** --events: records of the end-to-end scenarios. */
  events: number | undefined;
  /** --micro-events: records of the micro-benches. */
  microEvents: number | undefined;
  /** --repeat, if given. */
  repeat: number | undefined;
  cpuProfileDir: string | undefined;
  progress: (line: string) => void;
  machine: Machine;
}

interface Scenario {
  summary: string;
  run(o: RunOptions): Promise<ScenarioResult>;
}

const DEFAULT_MICRO_REPEAT = 5;

/** Every scenario that exists, in the order `--scenario` defaults to. */
const SCENARIOS: Record<string, Scenario> = {
  capacity: {
    summary:
      'the whole pipeline into a discarding S3 endpoint, ours (default, and --page-workers 0) vs the baseline vs the JSON floor,\n' +
      `                      ${CAPACITY_DEFAULT_RUNS} rounds (default ${CAPACITY_DEFAULT_EVENTS.toLocaleString('en-US')} records, ~4 min)`,
    run: (o) =>
      capacity({
        events: o.events ?? CAPACITY_DEFAULT_EVENTS,
        runs: o.repeat ?? CAPACITY_DEFAULT_RUNS,
        progress: o.progress,
        machine: o.machine,
        ...(o.cpuProfileDir === undefined ? {} : { cpuProfileDir: o.cpuProfileDir }),
      }),
  },
  s3: {
    summary:
      'the capacity run into a real radosgw (S3_ENDPOINT, else one started here), every object\n' +
      `                      read back and compared with the ground truth (default ${CAPACITY_DEFAULT_EVENTS.toLocaleString('en-US')} records, ~1.5 min)`,
    run: (o) => s3Scenario({ events: o.events ?? CAPACITY_DEFAULT_EVENTS, progress: o.progress, machine: o.machine }),
  },
  backfill: {
    summary: `a rate-limited backfill at ${BACKFILL_REQUESTS_PER_MIN} requests/min: wall ÷ minimum and the 429 share (~1 min)`,
    run: (o) => backfill({ progress: o.progress, machine: o.machine }),
  },
  micro: {
    summary: `each stage's function vs a naive baseline, plus JSON floors (default ${MICRO_DEFAULT_EVENTS.toLocaleString('en-US')} events, ${DEFAULT_MICRO_REPEAT} runs, ~1 min)`,
    run: (o) => micro({ events: o.microEvents ?? MICRO_DEFAULT_EVENTS, repeat: o.repeat ?? DEFAULT_MICRO_REPEAT, progress: o.progress, machine: o.machine }),
  },
};

export const HELP = `npm run bench [-- OPTIONS]                     build, then run everything below
node --expose-gc dist/bench/run.js [OPTIONS]   run without building
  e.g. npm run bench -- --scenario capacity --events 10000000
       npm run bench -- --scenario micro --micro-events 20000 --repeat 3 --no-readme

Prints the machine line and one table per scenario, writes the results JSON and regenerates
bench/README.md from the newest results file.

  --scenario LIST   scenarios to run, comma-separated or repeated (default: all). Existing now:
${Object.entries(SCENARIOS)
  .map(([name, s]) => `                      ${name}: ${s.summary}`)
  .join('\n')}
  --events N        records of the end-to-end scenarios (default ${CAPACITY_DEFAULT_EVENTS})
  --micro-events N  records per micro-benchmark case (default ${MICRO_DEFAULT_EVENTS})
  --repeat R        timed runs (rounds) per case; the median and min–max are reported
                    (default ${CAPACITY_DEFAULT_RUNS} for capacity, ${DEFAULT_MICRO_REPEAT} for micro)
  --cpu-prof DIR    write a node --cpu-prof profile of each of our capacity runs into DIR
  --no-readme       do not regenerate bench/README.md (results JSON is still written)
  --readme-only     run nothing: regenerate bench/README.md from the newest results file
  --help            this text

Results: bench/results/<YYYY-MM-DD>-<commit>.json (not committed; a later run on the same day
and commit replaces the scenarios it ran and keeps the others).
`;

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a whole number >= 1, got ${JSON.stringify(v)}`);
  return n;
}

// The AWS SDK's Node-20 upgrade notice (as in src/bin.ts): about upgrades, not this run.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        scenario: { type: 'string', multiple: true },
        events: { type: 'string' },
        'micro-events': { type: 'string' },
        'cpu-prof': { type: 'string' },
        repeat: { type: 'string' },
        'no-readme': { type: 'boolean' },
        'readme-only': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (args.help === true) {
    process.stdout.write(HELP);
    return 0;
  }
  let events: number | undefined;
  let microEvents: number | undefined;
  let repeat: number | undefined;
  try {
    events = positiveInt('--events', args.events);
    microEvents = positiveInt('--micro-events', args['micro-events']);
    repeat = positiveInt('--repeat', args.repeat);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  const names = (args.scenario ?? Object.keys(SCENARIOS)).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.filter((n) => !(n in SCENARIOS));
  if (unknown.length > 0 || names.length === 0) {
    process.stderr.write(`unknown scenario ${unknown.join(', ') || '(none given)'}; existing: ${Object.keys(SCENARIOS).join(', ')}\n`);
    return 2;
  }

  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const resultsDir = path.join(root, 'bench', 'results');
  if (args['readme-only'] === true) {
    const used = await writeReadme(resultsDir, path.join(root, 'bench', 'README.md'), HELP);
    if (used === undefined) {
      process.stderr.write('no results file in bench/results/: run the bench first\n');
      return 1;
    }
    process.stdout.write(`bench/README.md regenerated from ${path.relative(root, used)}\n`);
    return 0;
  }
  const m = machine();
  process.stdout.write(`${machineLine(m)}\n\n`);
  if (!canCollect) process.stderr.write('note: run with node --expose-gc (npm run bench does) for a full GC before each timed call\n');

  const progress = (line: string): void => {
    process.stderr.write(`  … ${line}\n`);
  };
  let file = '';
  for (const name of new Set(names)) {
    const cpuProfileDir = args['cpu-prof'] === undefined ? undefined : path.resolve(args['cpu-prof']);
    const r = await SCENARIOS[name]!.run({ events, microEvents, repeat, progress, machine: m, cpuProfileDir });
    process.stdout.write(`${textReport(name, r)}\n`);
    // After each scenario (merged into the day's file), so a later one that fails does not lose it.
    file = await writeResults(resultsDir, m, { [name]: r });
  }
  process.stdout.write(`results: ${path.relative(root, file)}\n`);
  if (args['no-readme'] !== true) {
    const used = await writeReadme(resultsDir, path.join(root, 'bench', 'README.md'), HELP);
    if (used !== undefined) process.stdout.write(`bench/README.md regenerated from ${path.relative(root, used)}\n`);
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
