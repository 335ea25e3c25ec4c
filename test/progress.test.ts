/**
 * The progress line: its rendering (a fake clock and a fake terminal), its interplay with log
 * lines, and the real CLI under a pseudo-TTY (util-linux `script`), in a pipe, and with
 * `--progress off`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createMetrics, type PipelineMetrics } from '../src/metrics.js';
import { formatEta, ProgressLine } from '../src/progress.js';
import type { Clock } from '../src/clock.js';
import { createSimulator, type Simulator } from '../src/simulator/index.js';
import { BIN, runCli } from './helpers/cli.js';
import { tempDir } from './helpers/fs.js';

const CLEAR = '\r\x1b[2K';
const HOUR = 3_600_000;

// ---- unit tests -----------------------------------------------------------------------------

interface Rig {
  line: ProgressLine;
  metrics: PipelineMetrics;
  writes: string[];
  out: { write(s: string): boolean; isTTY: boolean; columns: number | undefined };
  setNow(ms: number): void;
}

function rig(columns: number | undefined = 200, intervalMs?: number): Rig {
  let now = Date.parse('2026-08-01T12:00:00Z');
  const clock: Clock = { now: () => now, sleep: async () => {} };
  const metrics = createMetrics({ defaultMetrics: false, clock });
  const writes: string[] = [];
  const out = { write: (s: string) => (writes.push(s), true), isTTY: true, columns };
  const line = new ProgressLine(out, { metrics, clock }, intervalMs === undefined ? {} : { intervalMs });
  return { line, metrics, writes, out, setNow: (ms) => { now = ms; } };
}

const T0 = Date.parse('2026-08-01T12:00:00Z');

test('render: percent of the range from its start to now, written with separators, the position', () => {
  const r = rig();
  // No range yet (the source has not started): the percent is unknown and there is no "at".
  assert.equal(r.line.render(), '?% · 0 written · 0 ev/s · ETA ? · rate-limit waits 0 (0 s)');

  const h = r.metrics.health;
  h.rangeStartMs = T0 - 1000 * HOUR;
  h.fetchedUpToMs = T0 - 1000 * HOUR + 423 * HOUR; // 423 of 1000 hours
  h.written = 1_234_567;
  h.rateLimitWaits = 12;
  h.rateLimitWaitMs = 34_400;
  assert.equal(
    r.line.render(),
    `42.3% · 1,234,567 written · 0 ev/s · ETA ? · rate-limit waits 12 (34 s) · at ${new Date(h.fetchedUpToMs).toISOString().slice(0, 16)}Z`,
  );
  // Clamped to [0, 100].
  h.fetchedUpToMs = T0 + HOUR;
  assert.match(r.line.render(), /^100\.0% · /);
  h.fetchedUpToMs = h.rangeStartMs - HOUR;
  assert.match(r.line.render(), /^0\.0% · /);
  // Now not after the range start: no percent.
  h.rangeStartMs = T0 + HOUR;
  assert.match(r.line.render(), /^\?% · /);
});

test('render: ev/s is records received per second over the ~10 s sample window', () => {
  const r = rig();
  const h = r.metrics.health;
  const evs = (): string => /· ([\d,]+) ev\/s ·/.exec(r.line.render())![1]!;
  r.setNow(T0);
  assert.equal(evs(), '0'); // one sample: no rate yet
  r.setNow(T0 + 1000);
  h.received = 500;
  assert.equal(evs(), '500');
  r.setNow(T0 + 2000);
  h.received = 1500;
  assert.equal(evs(), '750'); // 1,500 over 2 s
  r.setNow(T0 + 12_000);
  h.received = 4500;
  // Samples older than 10 s are dropped: the oldest kept is the one at T0 + 2 s.
  assert.equal(evs(), '300'); // (4,500 − 1,500) over 10 s
  r.setNow(T0 + 13_000);
  h.received = 5600;
  // The sample at T0 + 2 s is now 11 s old: the oldest kept is the one at T0 + 12 s.
  assert.equal(evs(), '1,100'); // (5,600 − 4,500) over 1 s, with a thousands separator
});

test('render: ETA only once the position outruns the clock', () => {
  const r = rig();
  const h = r.metrics.health;
  const eta = (): string => /· ETA ([^·]+) ·/.exec(r.line.render())![1]!;
  h.rangeStartMs = T0 - 100 * HOUR;
  const first = T0 - 50 * HOUR;
  h.fetchedUpToMs = first;
  r.setNow(T0);
  assert.equal(eta(), '?'); // the first sample of the position: no speed yet
  // Slower than the clock (0.5 ms of stream per ms): the gap to now grows, no ETA.
  r.setNow(T0 + 60_000);
  h.fetchedUpToMs = first + 30_000;
  assert.equal(eta(), '?');
  // As fast as the clock: the gap stays, no ETA.
  r.setNow(T0 + 100_000);
  h.fetchedUpToMs = first + 100_000;
  assert.equal(eta(), '?');
  // 11 ms of stream per ms: the gap (50 h − 1,000 s) closes at 10 ms per ms.
  h.fetchedUpToMs = first + 1_100_000;
  const gap = T0 + 100_000 - h.fetchedUpToMs;
  assert.equal(gap, 50 * HOUR - 1_000_000);
  assert.equal(eta(), formatEta(gap / 10));
  assert.equal(eta(), '4 h 58 min');
});

test('render: a narrow terminal leaves off the tail and never reaches the last column', () => {
  const setUp = (columns: number | undefined): Rig => {
    const r = rig();
    r.out.columns = columns; // read at each render
    const h = r.metrics.health;
    h.rangeStartMs = T0 - 1000 * HOUR;
    h.fetchedUpToMs = T0 - 577 * HOUR;
    h.written = 1_234_567;
    h.received = 0;
    h.rateLimitWaits = 12;
    h.rateLimitWaitMs = 34_000;
    return r;
  };
  const full = setUp(500).line.render();
  const parts = full.split(' · ');
  assert.equal(parts.length, 6);
  assert.ok(full.length > 80, full);
  for (const columns of [0, undefined, 20, 40, 60, 80, 100]) {
    const line = setUp(columns).line.render();
    const width = columns === undefined || columns === 0 ? 80 : columns; // unknown → 80
    assert.ok(line.length <= width - 1, `${columns} columns: ${JSON.stringify(line)} (${line.length})`);
    // Whole parts from the start, the most important first, as many as fit.
    const kept = line.split(' · ');
    assert.deepEqual(kept, parts.slice(0, kept.length));
    if (kept.length < parts.length) assert.ok(`${line} · ${parts[kept.length]}`.length > width - 1);
  }
  assert.equal(setUp(40).line.render(), '42.3% · 1,234,567 written · 0 ev/s');
  assert.equal(setUp(20).line.render(), '42.3%');
  // Narrower than the first part itself: cut, still short of the last column.
  assert.equal(setUp(4).line.render(), '42.');
});

test('start draws at once; wrap(): a log line clears the progress line and redraws it after', () => {
  const r = rig(120, 1e9);
  const log = r.line.wrap(r.out);
  assert.equal(log.isTTY, true);
  // Nothing on screen yet: log writes pass through unchanged.
  log.write('before\n');
  assert.deepEqual(r.writes, ['before\n']);
  r.writes.length = 0;

  const h = r.metrics.health;
  h.rangeStartMs = T0 - 10 * HOUR;
  h.fetchedUpToMs = T0 - 5 * HOUR;
  h.written = 2400;
  r.line.start();
  const shown = r.line.render();
  assert.match(shown, /^50\.0% · 2,400 written · /);
  assert.deepEqual(r.writes, [`${CLEAR}${shown}`]);
  r.writes.length = 0;

  log.write('12:00:00 INFO  object complete records=500\n');
  assert.deepEqual(r.writes, [`${CLEAR}12:00:00 INFO  object complete records=500\n`, shown]);
  assert.equal(r.writes.join(''), `${CLEAR}12:00:00 INFO  object complete records=500\n${shown}`);
  r.line.stop();
});

test('after the source catches up the next draw is the last: a final line, then logs pass through', async () => {
  const r = rig(120, 15);
  const h = r.metrics.health;
  h.rangeStartMs = T0 - 10 * HOUR;
  h.fetchedUpToMs = T0 - 5 * HOUR;
  const log = r.line.wrap(r.out);
  r.line.start();
  await new Promise((res) => setTimeout(res, 60)); // a few periodic draws
  assert.ok(r.writes.length >= 2, `expected periodic redraws, got ${JSON.stringify(r.writes)}`);
  assert.ok(r.writes.every((w) => w.startsWith(CLEAR) && !w.endsWith('\n')));

  h.fetchedUpToMs = T0;
  h.written = 3000;
  h.caughtUpMs = T0;
  const before = r.writes.length;
  await new Promise((res) => setTimeout(res, 60));
  const after = r.writes.slice(before);
  assert.equal(after.length, 1, `expected exactly one final draw, got ${JSON.stringify(after)}`);
  assert.match(after[0]!, /^\r\x1b\[2K100\.0% · 3,000 written · .*\n$/);
  assert.equal(after[0]!.indexOf('\n'), after[0]!.length - 1);

  // Stopped for good: no more draws, logs unchanged, stop() and start() do nothing.
  r.writes.length = 0;
  await new Promise((res) => setTimeout(res, 40));
  assert.deepEqual(r.writes, []);
  log.write('12:00:01 INFO  poll complete pages=7\n');
  assert.deepEqual(r.writes, ['12:00:01 INFO  poll complete pages=7\n']);
  r.line.stop();
  r.line.start();
  await new Promise((res) => setTimeout(res, 40));
  assert.deepEqual(r.writes, ['12:00:01 INFO  poll complete pages=7\n']);
});

test('stop() draws the final state on a line of its own, once', () => {
  const r = rig(120, 1e9);
  const h = r.metrics.health;
  h.rangeStartMs = T0 - 10 * HOUR;
  h.fetchedUpToMs = T0 - HOUR;
  r.line.start();
  h.written = 7;
  r.line.stop();
  r.line.stop();
  assert.equal(r.writes.length, 2);
  assert.match(r.writes[1]!, /^\r\x1b\[2K90\.0% · 7 written · .*\n$/);
  const log = r.line.wrap(r.out);
  log.write('x\n');
  assert.equal(r.writes[2], 'x\n');
});

test('formatEta', () => {
  const cases: Array<[number, string]> = [
    [0, '0 s'],
    [499, '0 s'],
    [42_000, '42 s'],
    [59_499, '59 s'],
    [59_500, '1 min 00 s'],
    [185_000, '3 min 05 s'],
    [3_599_499, '59 min 59 s'],
    [3_599_500, '1 h 00 min'],
    [3_720_000, '1 h 02 min'],
    [23 * HOUR + 59 * 60_000, '23 h 59 min'],
    [86_400_000, '1 d 00 h'],
    [2 * 86_400_000 + 3 * HOUR + 59 * 60_000, '2 d 03 h'],
    [-1, '?'],
    [NaN, '?'],
    [Infinity, '?'],
  ];
  for (const [ms, want] of cases) assert.equal(formatEta(ms), want, `formatEta(${ms})`);
});

// ---- the CLI ----------------------------------------------------------------------------------

/** Single-quotes a word for /bin/sh. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Fails (never skips) when util-linux's `script` is not there: Debian always has it (bsdutils). */
function requireScript(): void {
  const r = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0 || !/util-linux/.test(`${r.stdout}${r.stderr}`)) {
    assert.fail(
      `the pseudo-TTY tests need util-linux's \`script\` (Debian/Ubuntu package bsdutils or util-linux) on PATH: ` +
        (r.error !== undefined ? r.error.message : `\`script --version\` said ${JSON.stringify(`${r.stdout}${r.stderr}`.trim())}`),
    );
  }
}

interface PtyResult {
  code: number | null;
  /** Everything the terminal received (stdout and stderr of the CLI), as bytes → UTF-8. */
  out: string;
}

/** Runs the CLI on a pseudo-terminal 120 columns wide, through `script -qfec`. */
function runCliPty(args: string[], env: Record<string, string>, timeoutMs = 25_000): Promise<PtyResult> {
  requireScript();
  const command = `stty cols 120 rows 40 2>/dev/null; exec ${[process.execPath, '--no-warnings', BIN, ...args].map(shq).join(' ')}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`CLI under script did not finish in ${timeoutMs} ms; output: ${JSON.stringify(Buffer.concat(chunks).toString('utf8').slice(-3000))}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out: Buffer.concat(chunks).toString('utf8') });
    });
  });
}

/**
 * What a terminal shows after `out`: rows of text, handling CR, LF and "erase line" (the only
 * controls the CLI writes).
 */
function screen(out: string): string[] {
  const rows = [''];
  let col = 0;
  for (let i = 0; i < out.length; i++) {
    if (out.startsWith('\x1b[2K', i)) {
      rows[rows.length - 1] = '';
      i += 3;
      continue;
    }
    const ch = out[i]!;
    if (ch === '\x1b') throw new Error(`unexpected escape sequence at ${i}: ${JSON.stringify(out.slice(i, i + 10))}`);
    if (ch === '\r') col = 0;
    else if (ch === '\n') {
      rows.push('');
      col = 0;
    } else {
      const row = rows[rows.length - 1]!.padEnd(col);
      rows[rows.length - 1] = row.slice(0, col) + ch + row.slice(col + 1);
      col++;
    }
  }
  return rows;
}

const PROGRESS_TEXT = /(?:\?|\d+\.\d)% · [\d,]+ written · /;
const RENDER = /^(\d{1,3}\.\d)% · ([\d,]+) written · ([\d,]+) ev\/s · ETA ([^·]+) · rate-limit waits (\d+) \((\d+) s\)(?: · at (\d{4}-\d\d-\d\dT\d\d:\d\dZ))?$/;

interface Render {
  text: string;
  percent: number;
  written: number;
  waits: number;
}

const SPAN_MS = 6 * HOUR;

/**
 * A simulator with 3,000 events over the last 6 h, and the run arguments against it. The range
 * starts 48 h ago, so the percent moves visibly page by page and the newest event (at most a few
 * seconds old) makes the last line 100.0% (0.05 % of 48 h is 86 s).
 */
async function withRun(fn: (sim: Simulator, args: string[], env: Record<string, string>) => Promise<void>): Promise<void> {
  const sim = createSimulator({ events: 3000, seed: 5, spanMs: SPAN_MS });
  await sim.start();
  const dir = await tempDir('aap-progress-');
  const from = new Date(Math.floor((Date.now() - 8 * SPAN_MS) / 1000) * 1000).toISOString();
  const args = [
    'run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', from, '--rate-limit', '4/1s',
    '--metrics-port', '0', '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'),
  ];
  try {
    await fn(sim, args, { ATLASSIAN_API_KEY: sim.apiKey });
  } finally {
    await sim.close();
  }
}

test('CLI on a terminal: the progress line is redrawn in place, logs never mix with it, the last says 100.0%', async () => {
  await withRun(async (sim, args, env) => {
    const r = await runCliPty(args, env);
    const truth = sim.truth();
    assert.equal(r.code, 0, r.out);

    // Every draw: CLEAR, then the line (redraws after a log line repeat the shown text without CLEAR).
    const draws = [...r.out.matchAll(/\r\x1b\[2K((?:\?|\d+\.\d)% · [^\r\n]*)/g)].map((m) => m[1]!);
    const firstKnown = draws.findIndex((d) => !d.startsWith('?%'));
    assert.ok(firstKnown >= 0, `no progress line with a percent in ${JSON.stringify(r.out)}`);
    // Nothing is drawn before the run knows its range, so no draw says "?%".
    assert.equal(firstKnown, 0, JSON.stringify(draws));
    const renders: Render[] = draws.slice(firstKnown).map((text) => {
      const m = RENDER.exec(text);
      assert.ok(m !== null, `not a progress line: ${JSON.stringify(text)}`);
      assert.ok(text.length <= 119, `wider than the terminal: ${text}`);
      return { text, percent: Number(m[1]), written: Number(m[2]!.replace(/,/g, '')), waits: Number(m[5]) };
    });
    // The run takes ≥ 1.75 s (8 requests 252 ms apart) and draws every second: a periodic draw
    // happens before the source catches up, and the final draw is another.
    assert.ok(new Set(renders.map((x) => x.text)).size >= 2, `expected two distinct draws, got ${JSON.stringify(draws)}`);
    for (let i = 1; i < renders.length; i++) {
      assert.ok(renders[i]!.written >= renders[i - 1]!.written, 'written never goes back');
      assert.ok(renders[i]!.waits >= renders[i - 1]!.waits, 'rate-limit waits never go back');
    }
    for (const x of renders) assert.ok(x.percent >= 0 && x.percent <= 100);
    const last = renders.at(-1)!;
    assert.equal(last.percent, 100);
    assert.ok(last.waits > 0, `--rate-limit 4/1s must have held requests: ${last.text}`);
    // With --once the last line is drawn when the run ends, after the last objects are complete:
    // it counts every event.
    assert.equal(last.written, truth.valid.size, `${last.text} vs ${truth.valid.size} valid events`);
    assert.ok(r.out.includes(`${CLEAR}${last.text}\r\n`), 'the last line stays on a line of its own');
    assert.match(r.out, new RegExp(`events written: +${truth.valid.size}\\r\\n`));

    // On screen: exactly one progress line is left (the final one), above the summary, and no
    // row mixes a log line with a progress line.
    const rows = screen(r.out);
    const progressRows = rows.filter((row) => PROGRESS_TEXT.test(row));
    assert.deepEqual(progressRows, [last.text], rows.join('\n'));
    assert.ok(rows.indexOf(last.text) < rows.findIndex((row) => row.startsWith('records fetched:')), rows.join('\n'));
    const logRows = rows.filter((row) => / (INFO|WARN|ERROR) /.test(row));
    assert.ok(logRows.some((row) => /^\d\d:\d\d:\d\d INFO  poll complete /.test(row)), rows.join('\n'));
    for (const row of logRows) assert.match(row, /^\d\d:\d\d:\d\d (INFO |WARN |ERROR) \S/, `a mixed row: ${JSON.stringify(row)}`);
  });
});

test('CLI in a pipe: no progress line, and the JSON "poll complete" line adds up', async () => {
  await withRun(async (sim, args, env) => {
    const r = await runCli(args, env);
    const truth = sim.truth();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stderr.includes('\x1b[2K'), 'no erase-line sequence in a pipe');
    assert.ok(!r.stderr.includes('\x1b'), 'no escape sequence at all in a pipe');
    assert.doesNotMatch(r.stderr, PROGRESS_TEXT);
    assert.doesNotMatch(r.stderr, /ev\/s|rate-limit waits/);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not a JSON log line: ${l}`);
    const polls = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => o['msg'] === 'poll complete');
    assert.equal(polls.length, 1, r.stderr);
    const p = polls[0]!;
    for (const k of ['pages', 'records', 'events', 'quarantined', 'duplicates', 'objects', 'bytes', 'durationMs']) {
      assert.equal(typeof p[k], 'number', `poll complete lacks a number ${k}: ${JSON.stringify(p)}`);
    }
    assert.ok('nextPollAt' in p);
    assert.equal(p['nextPollAt'], null); // --once: no next poll
    const n = (k: string): number => p[k] as number;
    assert.equal(n('events') + n('quarantined') + n('duplicates'), n('records'));
    assert.equal(n('events'), truth.valid.size);
    assert.equal(n('quarantined'), truth.invalid.length);
    assert.equal(n('records'), truth.totalRecords);
    assert.ok(n('pages') >= Math.ceil(truth.totalRecords / 500), JSON.stringify(p));
    assert.ok(n('objects') > 0 && n('bytes') > 0 && n('durationMs') > 0, JSON.stringify(p));
  });
});

test('CLI on a terminal with --progress off: no progress line', async () => {
  await withRun(async (sim, args, env) => {
    const r = await runCliPty([...args, '--progress', 'off'], env);
    assert.equal(r.code, 0, r.out);
    assert.ok(!r.out.includes('\x1b[2K'), JSON.stringify(r.out.slice(0, 2000)));
    assert.doesNotMatch(r.out, PROGRESS_TEXT);
    assert.doesNotMatch(r.out, /ev\/s|rate-limit waits/);
    // Still a terminal: the readable log format, and the summary.
    assert.match(r.out, /\d\d:\d\d:\d\d INFO  poll complete pages=\d+ /);
    assert.match(r.out, new RegExp(`events written: +${sim.truth().valid.size}\\r\\n`));
  });
});

test('stop() without any line drawn and no range known draws nothing (a run that failed at once)', () => {
  const r = rig(120, 1e9);
  r.line.start(); // the range is not known yet: nothing is drawn
  assert.deepEqual(r.writes, []);
  r.line.stop();
  assert.deepEqual(r.writes, []);
});
