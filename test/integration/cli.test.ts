import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { createSimulator, type Simulator } from '../../src/simulator/index.js';
import { loadState } from '../../src/checkpoint.js';
import { runCli, startCli, summaryOf } from '../helpers/cli.js';
import { startGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/net.js';
import { parseExposition, value } from '../helpers/exposition.js';
import { until } from '../helpers/proc.js';
import { listFiles, readZstdFile, tempDir } from '../helpers/fs.js';
import { createTestBucket, emptyAndDeleteBucket, listKeys, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';

const KEY = 'cli-test-secret-key-0123456789';

async function withSim(fn: (sim: Simulator) => Promise<void>, events = 300): Promise<void> {
  const sim = createSimulator({ events, seed: 41, apiKey: KEY });
  await sim.start();
  try {
    await fn(sim);
  } finally {
    await sim.close();
  }
}

function oneLine(text: string): void {
  assert.equal(text.trim().split('\n').length, 1, `expected one line, got:\n${text}`);
}

test('--help lists the commands; each command\'s --help (and `help COMMAND`) gives its own usage and every flag it takes; --version prints the version', async () => {
  const global = await runCli(['--help']);
  assert.equal(global.code, 0);
  for (const command of ['run', 'replay', 'status', 'demo', 'simulate']) assert.match(global.stdout, new RegExp(`^  ${command} +\\S`, 'm'));
  assert.doesNotMatch(global.stdout, /--s3-endpoint/, 'the global help is not every command\'s flags');
  // Regression: `run --help` printed the whole global help, and --version was an unknown command.
  const cases: Array<[string, RegExp, string[], RegExp | undefined]> = [
    ['run', /^Usage: atlassian-audit-pipeline run \[--once\] --org-id ORG/, ['--once', '--org-id', '--api-url', '--from', '--bucket', '--prefix', '--quarantine-prefix', '--s3-endpoint', '--s3-force-path-style', '--out-dir', '--state', '--metrics-port', '--interval', '--rate-limit', '--stop-timeout', '--log-format', '--heap-growth'], /--batch-size/],
    ['replay', /^Usage: atlassian-audit-pipeline replay INPUT\.\.\./, ['--bucket', '--prefix', '--state', '--metrics-port', '--batch-size', '--stop-timeout'], /--org-id|--interval|--rate-limit/],
    ['status', /^Usage: atlassian-audit-pipeline status/, ['--state', '--json'], /--bucket/],
    ['demo', /^Usage: atlassian-audit-pipeline demo/, ['--events', '--out-dir'], /--bucket/],
    ['simulate', /^Usage: atlassian-audit-pipeline simulate/, ['--port', '--events', '--seed'], /--bucket/],
  ];
  for (const [command, usage, flags, absent] of cases) {
    const r = await runCli([command, '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, usage);
    for (const flag of flags) assert.match(r.stdout, new RegExp(`^  ${flag}\\b`, 'm'), `${command} --help lacks ${flag}`);
    if (absent !== undefined) assert.doesNotMatch(r.stdout, absent, `${command} --help shows flags it does not take`);
    assert.equal((await runCli(['help', command])).stdout, r.stdout);
    assert.equal((await runCli([command, '-h'])).stdout, r.stdout);
  }
  const { version } = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const v = await runCli([flag]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout, `atlassian-audit-pipeline ${version}\n`);
  }
  const none = await runCli([]);
  assert.equal(none.code, 2);
  assert.equal(none.stdout, global.stdout);
  const unknown = await runCli(['collect']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "collect": the commands are run, replay, status, demo and simulate/);
});

test('the final summary: one JSON line on stdout with JSON logs (by flag, or by default in a pipe), aligned lines with pretty logs', async () => {
  // Regression: with --log-format json the summary was plain text among JSON.
  await withSim(async (sim) => {
    const dir = await tempDir();
    const args = (state: string): string[] => ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--out-dir', join(dir, 'out'), '--state', join(dir, state), '--metrics-port', '0', '--rate-limit', '0'];
    const truth = sim.truth();
    const json = await runCli([...args('a.json'), '--log-format', 'json'], { ATLASSIAN_API_KEY: KEY });
    assert.equal(json.code, 0, json.stderr);
    const s = summaryOf(json.stdout);
    assert.deepEqual(
      { msg: s.msg, events: s.events, quarantined: s.quarantined, stopped: s.stopped, abandoned: s.abandoned, checkpoint: s.checkpoint, eventsUnder: s.eventsUnder },
      { msg: 'run summary', events: truth.valid.size, quarantined: truth.invalid.length, stopped: false, abandoned: false, checkpoint: join(dir, 'a.json'), eventsUnder: join(dir, 'out', 'atlassian/audit') },
    );
    assert.equal(s.records, s.events + s.quarantined + s.duplicates);
    const byDefault = await runCli(args('b.json'), { ATLASSIAN_API_KEY: KEY });
    assert.equal(summaryOf(byDefault.stdout).events, truth.valid.size);
    const pretty = await runCli([...args('c.json'), '--log-format', 'pretty'], { ATLASSIAN_API_KEY: KEY });
    assert.match(pretty.stdout, new RegExp(`^records fetched: +${s.records} \\(= written \\+ quarantined \\+ duplicates\\)\\nevents written: +${truth.valid.size}\\n`));
  });
});

test('configuration errors: one clear line, exit 2, before any request', async () => {
  const dir = await tempDir();
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['run', '--once'], { ATLASSIAN_API_KEY: KEY }, /--org-id is required/],
    [['run', '--once', '--org-id', 'o'], {}, /ATLASSIAN_API_KEY/],
    [['run', '--once', '--org-id', 'o', '--from', '1700000000'], { ATLASSIAN_API_KEY: KEY }, /epoch seconds/],
    [['run', '--once', '--org-id', 'o', '--interval', '5 minutes'], { ATLASSIAN_API_KEY: KEY }, /--interval/],
    [['run', '--once', '--org-id', 'o', '--bucket', 'b', '--out-dir', dir], { ATLASSIAN_API_KEY: KEY }, /not both/],
    [['run', '--once', '--org-id', 'o', '--prefix', 'a/', '--quarantine-prefix', 'a/q/', '--out-dir', dir, '--state', join(dir, 's.json')], { ATLASSIAN_API_KEY: KEY }, /must not contain one another/],
    [['run', '--once', '--org-id', 'o', '--bogus'], { ATLASSIAN_API_KEY: KEY }, /bogus/],
    [['run', '--org-id', 'o'], { ATLASSIAN_API_KEY: KEY, ATLASSIAN_AUDIT_ONCE: 'enabled' }, /ATLASSIAN_AUDIT_ONCE must be one of/],
  ];
  for (const [args, env, re] of cases) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    oneLine(r.stderr);
  }
});

test('without zstd on the PATH: help and status work; run, replay and demo stop with one line naming zstd and how to install it', async () => {
  // Regression: simple-zstd looked for zstd when it was imported, so every command, --help
  // included, died with its stack trace.
  const dir = await tempDir();
  const env = { PATH: dir, ATLASSIAN_API_KEY: KEY };
  const help = await runCli(['--help'], env);
  assert.equal(help.code, 0, help.stderr);
  assert.equal(help.stderr, '');
  const status = await runCli(['status', '--state', join(dir, 'none.json')], env);
  assert.equal(status.code, 8, status.stderr);
  assert.doesNotMatch(status.stderr, /zstd|\n\s+at /);
  for (const args of [
    ['run', '--once', '--org-id', 'o', '--out-dir', join(dir, 'out'), '--state', join(dir, 's.json'), '--metrics-port', '0'],
    ['replay', join(dir, 'none.jsonl'), '--out-dir', join(dir, 'out'), '--state', join(dir, 'r.json')],
    ['demo', '--out-dir', join(dir, 'demo')],
  ]) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
    oneLine(r.stderr);
    assert.match(r.stderr, /the zstd command is not on the PATH.*apt-get install zstd/, args[0]);
  }
});

test('a first run that failed does not fix where the collection starts: the next run takes its --from; once events are collected, --from is ignored with a warning', async () => {
  // Regression: a run refused with 401 saved a state whose position was its --from (or 180 days
  // ago), and the next run, key fixed, ignored --from: the events before it were never collected.
  await withSim(async (sim) => {
    const dir = await tempDir();
    const state = join(dir, 'state.json');
    const args = (from: string): string[] => ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', from, '--out-dir', join(dir, 'out'),
      '--state', state, '--metrics-port', '0', '--rate-limit', '0', '--log-format', 'json'];
    const lateFrom = new Date(Date.now() - 3_600_000).toISOString();
    const refused = await runCli(args(lateFrom), { ATLASSIAN_API_KEY: 'a-revoked-key-0123456789' });
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal((await loadState(state))!.position.from, Date.parse(lateFrom), 'the failed run left a state');
    const first = await runCli(args('2000-01-01'), { ATLASSIAN_API_KEY: KEY });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /nothing collected yet: starting a new collection/);
    const saved = (await loadState(state))!;
    assert.equal(saved.totals.events, sim.truth().valid.size, 'events before the failed run\'s --from were not collected');
    assert.equal(saved.origin, Date.parse('2000-01-01'));
    sim.append(30);
    const next = await runCli(args(new Date().toISOString()), { ATLASSIAN_API_KEY: KEY });
    assert.equal(next.code, 0, next.stderr);
    assert.match(next.stderr, /"level":"warn","msg":"state exists: continuing from its checkpoint; --from applies only until the first events are collected"/);
    assert.equal((await loadState(state))!.totals.events, sim.truth().valid.size);
  }, 1500);
});

test('401, 403 and 404 exit 3, 4 and 5 with one line saying what to fix, never printing the key', async () => {
  await withSim(async (sim) => {
    const dir = await tempDir();
    const base = ['run', '--once', '--api-url', sim.url, '--out-dir', join(dir, 'out'), '--metrics-port', '0', '--rate-limit', '0'];
    const cases: Array<[string[], string, number, RegExp]> = [
      [['--org-id', sim.orgId, '--state', join(dir, 'a.json')], 'wrong-key-abcdef', 3, /401.*ATLASSIAN_API_KEY/],
      [['--org-id', 'unknown-org', '--state', join(dir, 'b.json')], KEY, 5, /not found.*--org-id/],
    ];
    for (const [args, key, code, re] of cases) {
      const r = await runCli([...base, ...args], { ATLASSIAN_API_KEY: key });
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr, re);
      assert.ok(!(r.stdout + r.stderr).includes(key) && !(r.stdout + r.stderr).includes(KEY), 'the key was printed');
    }
    sim.entitled = false;
    const r = await runCli([...base, '--org-id', sim.orgId, '--state', join(dir, 'c.json')], { ATLASSIAN_API_KEY: KEY });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /403.*admin.*Guard/);
    assert.ok(!(r.stdout + r.stderr).includes(KEY));
  });
});

test('behind a gateway (its links name the upstream host, --api-url carries its path prefix): every event collected; a wrong prefix is one line naming --api-url, exit 6', async () => {
  // Regression: such pages were refused as malformed, retried 8 times, then exit 6; the path in
  // --api-url was dropped; a gateway's 404 read "organization not found".
  await withSim(async (sim) => {
    const gateway = await startGateway(sim.url, { prefix: '/atlassian', upstreamHost: 'atlassian-upstream.internal:8443' });
    const dir = await tempDir();
    const args = (apiUrl: string, state: string): string[] => ['run', '--once', '--org-id', sim.orgId, '--api-url', apiUrl, '--out-dir', join(dir, 'out'),
      '--state', join(dir, state), '--metrics-port', '0', '--rate-limit', '0'];
    try {
      const r = await runCli(args(gateway.url, 'a.json'), { ATLASSIAN_API_KEY: KEY });
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await loadState(join(dir, 'a.json')))!.totals.events, sim.truth().valid.size);
      const wrong = await runCli(args(gateway.url.replace('/atlassian', '/atlas'), 'b.json'), { ATLASSIAN_API_KEY: KEY });
      assert.equal(wrong.code, 6, wrong.stderr);
      assert.match(wrong.stderr.trim().split('\n').at(-1)!, /HTTP 404 without Atlassian's error document: \/atlas\/admin\/v1\/orgs\/.* Check --api-url/);
    } finally {
      await gateway.close();
    }
  }, 1200);
});

test('logs in a pipe: JSON lines by default, readable lines with --log-format pretty, only warnings and errors with --log-level warn', async () => {
  await withSim(async (sim) => {
    const dir = await tempDir();
    const args = (state: string): string[] => ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--out-dir', join(dir, 'out'), '--state', join(dir, state), '--metrics-port', '0', '--rate-limit', '0'];
    const json = await runCli(args('a.json'), { ATLASSIAN_API_KEY: KEY });
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stderr.trim().split('\n');
    assert.ok(lines.length >= 3, json.stderr);
    for (const line of lines) assert.equal(typeof (JSON.parse(line) as { msg: unknown }).msg, 'string', line);
    assert.ok(lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'poll complete'), json.stderr);

    const pretty = await runCli([...args('b.json'), '--log-format', 'pretty'], { ATLASSIAN_API_KEY: KEY });
    assert.equal(pretty.code, 0, pretty.stderr);
    const prettyLines = pretty.stderr.trim().split('\n');
    for (const line of prettyLines) assert.match(line, /^\d\d:\d\d:\d\d (DEBUG|INFO |WARN |ERROR) \S/);
    assert.ok(prettyLines.some((l) => /^\S+ INFO  poll complete pages=\d+ records=\d+ events=\d+/.test(l)), pretty.stderr);

    sim.append(50);
    const quiet = await runCli([...args('a.json'), '--log-level', 'warn'], { ATLASSIAN_API_KEY: KEY });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.ok(summaryOf(quiet.stdout).events > 0, quiet.stdout);
    for (const line of quiet.stderr.split('\n').filter((l) => l !== '')) assert.match((JSON.parse(line) as { level: string }).level, /^(warn|error)$/, line);
  });
});

test('a poller completes a poll\'s objects once it has caught up, so served events are in objects within a poll (--object-max-age 1h does not hold them); SIGTERM stops it with exit 0; a second process on its state is refused', async () => {
  await withSim(async (sim) => {
    const dir = await tempDir();
    const port = await freePort();
    const common = ['--org-id', sim.orgId, '--api-url', sim.url, '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'), '--rate-limit', '0', '--log-format', 'json'];
    const poller = startCli(['run', ...common, '--interval', '1s', '--object-max-age', '1h', '--metrics-port', String(port), '--metrics-host', '127.0.0.1'], { ATLASSIAN_API_KEY: KEY });
    const metric = async (name: string): Promise<number> => value(parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()), name) ?? 0;
    const written = (): Promise<number> => metric('atlassian_audit_events_written_total');
    try {
      await poller.waitFor(/metrics server listening/);
      // Regression: a poll's events waited in an open object for --object-max-age (5 minutes by
      // default, an hour here), and the events-written counter with them.
      await until(async () => (await written()) === sim.truth().valid.size, 'the first poll\'s events in complete objects');
      sim.append(120);
      await until(async () => (await written()) === sim.truth().valid.size, 'the appended events in complete objects, the poller still running');
      assert.ok((await metric('atlassian_audit_event_to_object_seconds_count')) >= 2, 'event_to_object_seconds observed per object');
      const second = await runCli(['run', '--once', ...common, '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY });
      assert.equal(second.code, 8, second.stderr);
      assert.match(second.stderr, /in use by another process/);
    } finally {
      poller.child.kill('SIGTERM');
    }
    const r = await poller.result;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(summaryOf(r.stdout).events, sim.truth().valid.size);
    const completed = r.stderr.split('\n').filter((l) => l.includes('"msg":"object complete"')).map((l) => JSON.parse(l) as { kind: string; reason: string });
    assert.ok(completed.filter((c) => c.kind === 'events').length >= 2);
    assert.ok(completed.every((c) => c.reason === 'poll' || c.reason === 'hour'), JSON.stringify(completed));
    const files = (await listFiles(join(dir, 'out'))).filter((f) => f.startsWith('atlassian/audit/'));
    let lines = 0;
    for (const f of files) lines += (await readZstdFile(join(dir, 'out', f))).length;
    assert.equal(lines, sim.truth().valid.size);
  });
});

test('run --once into radosgw through the CLI', { skip: s3Skip() }, async () => {
  await withSim(async (sim) => {
    const client = testS3Client();
    const bucket = await createTestBucket(client);
    const dir = await tempDir();
    try {
      const r = await runCli(
        ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01T00:00:00Z', '--bucket', bucket, '--prefix', 'p/', '--quarantine-prefix', 'q/',
          '--s3-endpoint', process.env['S3_ENDPOINT']!, '--s3-force-path-style', '--state', join(dir, 's.json'), '--metrics-port', '0', '--rate-limit', '0'],
        { ATLASSIAN_API_KEY: KEY, ...s3TestEnv() },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(summaryOf(r.stdout).events, sim.truth().valid.size);
      assert.ok((await listKeys(client, bucket, 'p/')).length > 0);
      assert.ok(!(r.stdout + r.stderr).includes(KEY));
    } finally {
      await emptyAndDeleteBucket(client, bucket);
      client.destroy();
    }
  }, 2000);
});

test('demo: no credentials, no setup; prints a summary; readable with zstd -dc; a rerun writes nothing twice', async () => {
  const dir = await tempDir();
  const r = await runCli(['demo', '--events', '2000', '--out-dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  const written = Number(/events written:\s+(\d+)/.exec(r.stdout)?.[1]);
  assert.ok(written > 1900 && written <= 2000, r.stdout);
  assert.match(r.stdout, /quarantined:\s+\d+/);
  // The command the demo prints works as printed.
  const readCmd = /Read the events:\s+(.+)\n/.exec(r.stdout)?.[1];
  assert.ok(readCmd !== undefined, r.stdout);
  const shown = spawnSync('bash', ['-c', readCmd], { encoding: 'utf8' });
  assert.equal(shown.status, 0, shown.stderr);
  assert.equal(shown.stdout.trim().split('\n').length, 2);
  assert.ok((JSON.parse(shown.stdout.split('\n')[0]!) as { id?: string }).id !== undefined);
  const files = (await listFiles(join(dir, 'objects'))).filter((f) => f.startsWith('atlassian/audit/'));
  let lines = 0;
  for (const f of files) lines += (await readZstdFile(join(dir, 'objects', f))).length;
  assert.equal(lines, written);
  const again = await runCli(['demo', '--events', '2000', '--out-dir', dir]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /events written:\s+0\n/);
});
