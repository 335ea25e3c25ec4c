/**
 * `replay` end to end, through the CLI: our own objects round-trip byte for byte, a crash between
 * objects and checkpoint is resumed without duplicates, a truncated input fails naming itself and
 * commits nothing, stdin works, and the metrics server runs during a replay.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { newState, saveState } from '../../src/checkpoint.js';
import { createSimulator } from '../../src/simulator/index.js';
import { normalizeTime } from '../../src/transforms/normalize-time.js';
import type { AuditEvent } from '../../src/types.js';
import { BIN, runCli, summaryOf } from '../helpers/cli.js';
import { until } from '../helpers/proc.js';
import { listFiles, readZstdFile, readZstdText, tempDir } from '../helpers/fs.js';
import { freePort } from '../helpers/net.js';
import { s3Skip } from '../helpers/require-s3.js';
import { decompressZstd, listKeys, readObject, s3TestEnv, withBucket } from '../helpers/s3.js';
import { makeEvent } from '../helpers/batches.js';

const run = promisify(execFile);

/** `n` events an hour apart every `perHour`, with non-canonical times, as JSON lines. */
function eventLines(n: number, perHour = 250): string[] {
  const base = Date.parse('2026-03-01T00:00:00Z');
  return Array.from({ length: n }, (_, i) => {
    const p = new Date(base + Math.floor(i / perHour) * 3_600_000 + (i % perHour) * 1000);
    return JSON.stringify(makeEvent({ id: `ev-${String(i).padStart(6, '0')}`, processedAt: p.toISOString(), time: p.toISOString().replace('Z', '+00:00') }));
  });
}

async function eventsIn(dir: string, prefix = 'atlassian/audit/'): Promise<AuditEvent[]> {
  const files = (await listFiles(dir)).filter((f) => f.startsWith(prefix)).sort();
  return (await Promise.all(files.map((f) => readZstdFile(join(dir, f))))).flat() as AuditEvent[];
}

test('our own objects replayed from S3 into another prefix are byte-identical', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    const sim = createSimulator({ events: 3000, seed: 31 });
    const url = await sim.start(0, '127.0.0.1');
    const dir = await tempDir();
    try {
      const env = { ...s3TestEnv(), ATLASSIAN_API_KEY: sim.apiKey };
      const s3Flags = ['--bucket', bucket, '--s3-endpoint', process.env['S3_ENDPOINT']!, '--s3-force-path-style', '--metrics-port', '0'];
      const collected = await runCli(['run', '--once', '--org-id', sim.orgId, '--api-url', url, '--from', '2000-01-01T00:00:00Z', '--rate-limit', '0', '--prefix', 'first/', '--quarantine-prefix', 'first-q/', '--state', join(dir, 'run.json'), ...s3Flags], env);
      assert.equal(collected.code, 0, collected.stderr);
      const replayed = await runCli(['replay', `s3://${bucket}/first/`, '--prefix', 'again/', '--quarantine-prefix', 'again-q/', '--state', join(dir, 'replay.json'), ...s3Flags], env);
      assert.equal(replayed.code, 0, replayed.stderr);
      assert.equal(summaryOf(replayed.stdout).duplicates, 0);
      const text = async (prefix: string): Promise<string> => {
        let out = '';
        for (const k of (await listKeys(client, bucket, prefix)).sort()) out += (await decompressZstd(await readObject(client, bucket, k))).toString();
        return out;
      };
      const first = await text('first/');
      assert.equal(first.split('\n').length - 1, sim.truth().valid.size);
      assert.equal(await text('again/'), first, 'the replayed objects hold the same bytes, in the same order');
      assert.deepEqual(await listKeys(client, bucket, 'again-q/'), [], 'nothing of ours is refused on the way back');
    } finally {
      await sim.close();
    }
  });
});

test('a replay killed between objects and checkpoint resumes: every event exactly once, finished inputs skipped', async () => {
  const dir = await tempDir();
  const lines = eventLines(4000);
  await writeFile(join(dir, 'a.jsonl'), lines.slice(0, 2500).join('\n') + '\n');
  await writeFile(join(dir, 'b.jsonl'), lines.slice(2500).join('\n') + '\n');
  await run('zstd', ['-q', '--rm', join(dir, 'b.jsonl'), '-o', join(dir, 'b.bin')]);
  const out = join(dir, 'out');
  const args = ['replay', join(dir, 'a.jsonl'), join(dir, 'b.bin'), '--out-dir', out, '--state', join(dir, 'state.json'), '--log-level', 'warn'];
  // 250 events an hour: a new object every hour, so the 5th commit lands in the first file.
  const killed = await runCli(args, { AAP_FAULT_KILL_BEFORE_COMMIT: '5' });
  assert.equal(killed.signal, 'SIGKILL');
  const partial = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { replay: Record<string, { records: number; done: boolean }> };
  assert.deepEqual(partial.replay[join(dir, 'a.jsonl')], { records: 1000, done: false }, 'four hours committed before the kill');
  const resumed = await runCli(args);
  assert.equal(resumed.code, 0, resumed.stderr);
  const events = await eventsIn(out);
  assert.deepEqual(events.map((e) => e.id), lines.map((l) => (JSON.parse(l) as AuditEvent).id), 'every event once, in order');
  for (const e of events) assert.equal(e.attributes.time, normalizeTime(e.attributes.time), 'time normalised');
  const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { replay: Record<string, { records: number; done: boolean }> };
  assert.deepEqual(state.replay, { [join(dir, 'a.jsonl')]: { records: 2500, done: true }, [join(dir, 'b.bin')]: { records: 1500, done: true } });
  const again = await runCli(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(summaryOf(again.stdout).events, 0);
  assert.equal(summaryOf(again.stdout).inputsSkipped, 2);
  assert.equal((await eventsIn(out)).length, 4000);
  const status = await runCli(['status', '--state', join(dir, 'state.json')]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^replay inputs: +2 \(2 finished\)$/m);
  assert.match(status.stdout, /b\.bin: 1500 records, finished/);
  assert.doesNotMatch(status.stdout, /^position:/m, 'a replay state has no API position to show');
});

test('a truncated zstd input fails with exit 9 naming it, and commits nothing for it', async () => {
  const dir = await tempDir();
  const plain = join(dir, 'archive.jsonl');
  await writeFile(plain, eventLines(300).join('\n') + '\n');
  await run('zstd', ['-q', plain, '-o', join(dir, 'archive.jsonl.zst')]);
  const whole = await readFile(join(dir, 'archive.jsonl.zst'));
  await writeFile(join(dir, 'cut.zst'), whole.subarray(0, Math.floor(whole.length * 0.6)));
  const out = join(dir, 'out');
  const r = await runCli(['replay', join(dir, 'cut.zst'), '--out-dir', out, '--state', join(dir, 'state.json')]);
  assert.equal(r.code, 9, r.stderr);
  assert.match(r.stderr, /cut\.zst/);
  assert.match(r.stderr, /truncated or corrupt/);
  const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { replay: Record<string, unknown>; totals: { events: number }; lastRun: { outcome: string; error: string } };
  assert.deepEqual(state.replay, {}, 'no progress recorded');
  assert.equal(state.totals.events, 0);
  assert.equal(state.lastRun.outcome, 'error');
  assert.match(state.lastRun.error, /cut\.zst/);
  assert.deepEqual((await listFiles(out)).filter((f) => !f.startsWith('.tmp')), [], 'no object written');
});

test('stdin (-) is replayed, bad lines quarantined with their line numbers', async () => {
  const dir = await tempDir();
  const lines = eventLines(20);
  lines.splice(5, 0, '{"id": "x", "type": "events"');
  lines.splice(9, 0, JSON.stringify({ id: 'y', type: 'events', attributes: { time: 'yesterday' }, links: {} }));
  const child = spawn(process.execPath, [BIN, 'replay', '-', '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'), '--log-level', 'warn'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  child.stdin.end(lines.join('\n') + '\n');
  const [code] = (await once(child, 'close')) as [number];
  assert.equal(code, 0, stderr);
  assert.equal(summaryOf(stdout).events, 20);
  const q = (await listFiles(join(dir, 'out'))).filter((f) => f.startsWith('atlassian/quarantine/'));
  const reasons = (await Promise.all(q.map((f) => readZstdText(join(dir, 'out', f))))).join('').trim().split('\n').map((l) => (JSON.parse(l) as { reason: string }).reason);
  assert.equal(reasons.length, 2);
  assert.match(reasons[0]!, /^not JSON: .* \(at - line 6\)$/);
  assert.equal(reasons[1], 'attributes.time: not RFC 3339 (at - line 10)');
});

test('replay serves /metrics while it runs when --metrics-port is given', async () => {
  const dir = await tempDir();
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, 'replay', '-', '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'), '--metrics-port', String(port), '--metrics-host', '127.0.0.1'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  child.stdout.resume();
  try {
    // stdin is still open: the replay is running and waiting for input.
    let body = '';
    await until(async () => (body = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '')) !== '', 'the metrics server');
    assert.match(body, /^atlassian_audit_events_written_total 0$/m, stderr);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  } finally {
    child.stdin.end(eventLines(3).join('\n') + '\n');
  }
  const [code] = (await once(child, 'close')) as [number];
  assert.equal(code, 0, stderr);
});

test('replay refuses bad flags and a missing input clearly', async () => {
  const dir = await tempDir();
  const none = await runCli(['replay', '--out-dir', dir]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /replay needs at least one input/);
  const flag = await runCli(['replay', 'x.jsonl', '--org-id', 'o']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Unknown option '--org-id'/);
  const missing = await runCli(['replay', join(dir, 'nope.jsonl'), '--out-dir', join(dir, 'out'), '--state', join(dir, 's.json')]);
  assert.equal(missing.code, 9);
  assert.match(missing.stderr, /nope\.jsonl/);
  // The collector's checkpoint is not replay's: refused, and left exactly as it was.
  const collector = join(dir, 'collector.json');
  await saveState(collector, newState('org-1', 0));
  const before = await readFile(collector, 'utf8');
  await writeFile(join(dir, 'one.jsonl'), eventLines(1)[0] + '\n');
  const shared = await runCli(['replay', join(dir, 'one.jsonl'), '--out-dir', join(dir, 'out'), '--state', collector]);
  assert.equal(shared.code, 8, shared.stderr);
  assert.match(shared.stderr, /collector's checkpoint for org org-1; replay keeps a state of its own/);
  assert.equal(await readFile(collector, 'utf8'), before);
});

test('file inputs are one input however their path is written; odd names keep their progress', async () => {
  const dir = await tempDir();
  const lines = eventLines(30);
  await writeFile(join(dir, 'constructor'), lines.slice(0, 10).join('\n') + '\n');
  await writeFile(join(dir, '__proto__'), lines.slice(10, 20).join('\n') + '\n');
  await writeFile(join(dir, 'a.jsonl'), lines.slice(20).join('\n') + '\n');
  const state = join(dir, 'state.json');
  const out = join(dir, 'out');
  const twice = await runCli(['replay', join(dir, 'a.jsonl'), `${dir}/./a.jsonl`, '--out-dir', out, '--state', state]);
  assert.equal(twice.code, 2, twice.stderr);
  assert.match(twice.stderr, /named twice/);
  const args = ['replay', join(dir, 'constructor'), join(dir, '__proto__'), join(dir, 'a.jsonl'), '--out-dir', out, '--state', state, '--log-level', 'warn'];
  const first = await runCli(args);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(summaryOf(first.stdout).events, 30);
  const saved = JSON.parse(await readFile(state, 'utf8')) as { replay: Record<string, unknown> };
  assert.ok(Object.hasOwn(saved.replay, join(dir, '__proto__')) && Object.hasOwn(saved.replay, join(dir, 'constructor')));
  const again = await runCli(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(summaryOf(again.stdout).events, 0);
  assert.equal(summaryOf(again.stdout).inputsSkipped, 3);
});

test('an s3:// input never reads the objects this replay writes (its own output prefixes)', { skip: s3Skip() }, async () => {
  await withBucket(async (client, bucket) => {
    const dir = await tempDir();
    const env = s3TestEnv();
    const s3Flags = ['--bucket', bucket, '--s3-endpoint', process.env['S3_ENDPOINT']!, '--s3-force-path-style', '--state', join(dir, 'state.json'), '--log-level', 'warn'];
    await writeFile(join(dir, 'seed.jsonl'), eventLines(50).join('\n') + '\n');
    const seeded = await runCli(['replay', join(dir, 'seed.jsonl'), '--prefix', 'atlassian/old/', '--quarantine-prefix', 'q-old/', ...s3Flags], env);
    assert.equal(seeded.code, 0, seeded.stderr);
    // The input prefix holds the output prefix: what the replay writes there must not be read back.
    const args = ['replay', `s3://${bucket}/atlassian/`, '--prefix', 'atlassian/new/', '--quarantine-prefix', 'q-new/', ...s3Flags.slice(0, -4), '--state', join(dir, 'state2.json')];
    const first = await runCli(args, env);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(summaryOf(first.stdout).events, 50);
    assert.ok((await listKeys(client, bucket, 'atlassian/new/')).length > 0);
    // With a fresh state the listing now also finds what the first pass wrote under
    // atlassian/new/: it is left out, so only the 50 old events are read again.
    await rm(join(dir, 'state2.json'));
    const second = await runCli(args, env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /left out of the replay/);
    assert.equal(summaryOf(second.stdout).records, 50);
  });
});
