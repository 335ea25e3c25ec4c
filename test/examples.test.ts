/**
 * The examples (examples/*.ts) run as a user would run them, `node dist/examples/X.js`, against
 * the simulator and the real radosgw; what they print and write is checked against the input or
 * the simulator's ground truth.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { normalizeTime, type AuditEvent, type QuarantineRecord } from '../src/index.js';
import { createSimulator, type GroundTruth } from '../src/simulator/index.js';
import { makeEvent } from './helpers/batches.js';
import { apiEnv, explain, runExample } from './helpers/examples-run.js';
import { listFiles, readZstdFile, tempDir } from './helpers/fs.js';
import { s3Skip } from './helpers/require-s3.js';
import { listKeys, listPendingUploads, readZstdJsonLines, s3TestEnv, withBucket } from './helpers/s3.js';

/** The event as the pipeline writes it: `attributes.time` in canonical form, the rest as received. */
function normalised(event: unknown): AuditEvent {
  const e = structuredClone(event) as AuditEvent;
  e.attributes.time = normalizeTime(e.attributes.time)!;
  return e;
}

/** `s` matched literally inside a RegExp. */
function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function jsonLines(text: string): unknown[] {
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), 'output ends with a newline');
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown);
}

/** The canonical form of every valid event of the simulator's ground truth, by id. */
function expectedEvents(truth: GroundTruth): Map<string, AuditEvent> {
  return new Map([...truth.valid].map(([id, e]) => [id, normalised(e)]));
}

test('validate-stdin: valid lines come out on stdout with canonical times, in order; each bad line is one JSON line on stderr', async () => {
  const valid = [
    makeEvent({ time: '2026-11-21T11:15:00+01:00' }),
    makeEvent({ time: '2026-11-21T10:15:00.123456Z' }),
    makeEvent({ time: '2026-11-21t10:15:00z' }),
    makeEvent(),
  ];
  // Enough lines that stdin, stdout and stderr each fill their pipes several times.
  for (let i = 0; i < 3000; i++) valid.push(makeEvent({ time: `2026-11-21T${String(i % 24).padStart(2, '0')}:00:00-05:30` }));
  const bad: Array<{ line: string; record: unknown; reason: RegExp }> = [
    { line: '{"id": broken', record: '{"id": broken', reason: /^not JSON: / },
    { line: JSON.stringify({ id: 'x', type: 'events', attributes: { time: 'yesterday' }, links: {} }), record: { id: 'x', type: 'events', attributes: { time: 'yesterday' }, links: {} }, reason: /^attributes\.time: not RFC 3339$/ },
    { line: JSON.stringify({ id: 'y', attributes: { time: '2026-11-21T10:00:00Z' }, links: {} }), record: { id: 'y', attributes: { time: '2026-11-21T10:00:00Z' }, links: {} }, reason: /^type: missing$/ },
    { line: '[1,2]', record: [1, 2], reason: /^record: expected object, got array$/ },
    { line: '42', record: 42, reason: /^record: expected object, got number$/ },
  ];
  // Bad lines between good ones; one line ends in CRLF, and a blank line is skipped.
  const lines: string[] = [];
  valid.forEach((e, i) => {
    lines.push(i === 1 ? `${JSON.stringify(e)}\r` : JSON.stringify(e));
    if (i < bad.length) lines.push(bad[i]!.line);
    if (i === 2) lines.push('');
  });
  const r = await runExample('validate-stdin', {}, { input: `${lines.join('\n')}\n` });
  assert.equal(r.code, 0, explain(r));
  assert.deepEqual(jsonLines(r.stdout), valid.map(normalised));
  const quarantined = jsonLines(r.stderr) as QuarantineRecord[];
  assert.equal(quarantined.length, bad.length, explain(r));
  quarantined.forEach((q, i) => {
    assert.match(q.reason, bad[i]!.reason);
    assert.deepEqual(q.record, bad[i]!.record);
  });
});

test('validate-stdin: an event nested too deeply to serialise is quarantined as a truncated copy, and the run goes on', async () => {
  const deep = makeEvent({ id: 'deep' }) as Record<string, unknown>;
  const depth = 20_000;
  const nested = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  const deepLine = JSON.stringify(deep).replace(/}$/, `,"payload":${nested}}`);
  const after = makeEvent({ id: 'after' });
  const r = await runExample('validate-stdin', {}, { input: `${deepLine}\n${JSON.stringify(after)}\n` });
  assert.equal(r.code, 0, explain(r));
  assert.deepEqual(jsonLines(r.stdout), [normalised(after)]);
  const q = jsonLines(r.stderr) as QuarantineRecord[];
  assert.equal(q.length, 1, explain(r));
  assert.match(q[0]!.reason, /nested too deeply/);
  assert.equal((q[0]!.record as { id: string }).id, 'deep');
});

test('validate-stdin: empty input is a success with no output', async () => {
  const r = await runExample('validate-stdin', {}, { input: '' });
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
});

test('custom-enrichment: simulator → stages → a user Transform → S3; every valid event once, normalised, with the added field', { skip: s3Skip(), timeout: 180_000 }, async () => {
  const sim = createSimulator({ events: 2000, seed: 31 });
  await sim.start();
  try {
    await withBucket(async (client, bucket) => {
      const before = new Date().toISOString();
      const r = await runExample('custom-enrichment', { ...apiEnv(sim), ...s3TestEnv(), ATLASSIAN_AUDIT_S3_ENDPOINT: process.env['S3_ENDPOINT'], ATLASSIAN_AUDIT_BUCKET: bucket });
      const after = new Date().toISOString();
      assert.equal(r.code, 0, explain(r));
      const truth = sim.truth();
      assert.ok(truth.duplicates > 0 && truth.invalid.length > 0, 'the simulator re-delivers and sends invalid records');
      assert.match(r.stdout, new RegExp(`^wrote ${truth.valid.size} events and ${truth.invalid.length} quarantined records in \\d+ objects \\(\\d+ bytes\\) to s3://${esc(bucket)}/; dropped ${truth.duplicates} duplicates\\n$`));

      const want = expectedEvents(truth);
      const keys = await listKeys(client, bucket, 'atlassian/audit/');
      assert.ok(keys.length > 0);
      const events = (await Promise.all(keys.map((k) => readZstdJsonLines(client, bucket, k)))).flat() as Array<AuditEvent & { collector: { host: string; receivedAt: string } }>;
      assert.equal(events.length, want.size, 'every valid event, once');
      assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'no duplicates');
      for (const e of events) {
        const { collector, ...rest } = e;
        assert.deepEqual(rest, want.get(e.id));
        assert.equal(collector.host, hostname());
        assert.ok(collector.receivedAt >= before && collector.receivedAt <= after, `receivedAt ${collector.receivedAt} within the run`);
      }
      const qKeys = await listKeys(client, bucket, 'atlassian/quarantine/');
      const q = (await Promise.all(qKeys.map((k) => readZstdJsonLines(client, bucket, k)))).flat() as QuarantineRecord[];
      assert.deepEqual(q.map((x) => x.record).sort(byJson), [...truth.invalid].sort(byJson), 'invalid records quarantined as received, without the added field');
      assert.ok(q.every((x) => typeof x.reason === 'string' && x.reason !== ''));
      assert.deepEqual(await listPendingUploads(client, bucket), []);
    });
  } finally {
    await sim.close();
  }
});

function byJson(a: unknown, b: unknown): number {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

interface ManifestEntry {
  key: string;
  kind: 'events' | 'quarantine';
  bytes: number;
  sha256: string;
  completedAt: string;
}

/** Checks every manifest entry against its file and returns the records of the files, by kind. */
async function readManifest(dir: string): Promise<{ entries: ManifestEntry[]; events: AuditEvent[]; quarantined: QuarantineRecord[] }> {
  const entries = jsonLines(await readFile(join(dir, 'manifest.jsonl'), 'utf8')) as ManifestEntry[];
  const events: AuditEvent[] = [];
  const quarantined: QuarantineRecord[] = [];
  for (const e of entries) {
    const bytes = await readFile(join(dir, e.key));
    assert.equal(bytes.length, e.bytes, `${e.key}: size`);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), e.sha256, `${e.key}: sha256`);
    assert.ok(e.key.startsWith(e.kind === 'events' ? 'atlassian/audit/' : 'atlassian/quarantine/'), e.key);
    const records = await readZstdFile(join(dir, e.key));
    if (e.kind === 'events') events.push(...(records as AuditEvent[]));
    else quarantined.push(...(records as QuarantineRecord[]));
  }
  return { entries, events, quarantined };
}

test('library-pipeline: runPipeline into the example\'s own ObjectStore equals the ground truth; a second run adds nothing, a third only what is new', { timeout: 180_000 }, async () => {
  const sim = createSimulator({ events: 2000, seed: 32 });
  await sim.start();
  const work = await tempDir();
  try {
    const out = join(work, 'objects');
    const env = { ...apiEnv(sim), ATLASSIAN_AUDIT_OUT_DIR: out, ATLASSIAN_AUDIT_STATE: join(work, 'state.json') };

    const first = await runExample('library-pipeline', env);
    assert.equal(first.code, 0, explain(first));
    const truth = sim.truth();
    assert.match(first.stdout, new RegExp(`^wrote ${truth.valid.size} events and ${truth.invalid.length} quarantined records in \\d+ objects to ${esc(out)}/atlassian/audit/; dropped ${truth.duplicates} duplicates; manifest ${esc(out)}/manifest.jsonl; checkpoint ${esc(work)}/state.json\\n$`));
    const m1 = await readManifest(out);
    const want = expectedEvents(truth);
    assert.equal(m1.events.length, want.size);
    assert.deepEqual(new Map(m1.events.map((e) => [e.id, e])), want, 'every valid event once, normalised');
    assert.deepEqual(m1.quarantined.map((q) => q.record), truth.invalid, 'invalid records in stream order');
    const files = await listFiles(out);
    assert.deepEqual(files, ['manifest.jsonl', ...m1.entries.map((e) => e.key)].sort(), 'nothing but complete objects and the manifest (no .partial files)');

    const second = await runExample('library-pipeline', env);
    assert.equal(second.code, 0, explain(second));
    assert.match(second.stdout, /^wrote 0 events and 0 quarantined records in 0 objects /);
    assert.deepEqual(await listFiles(out), files, 'the checkpoint: nothing written again');
    assert.equal((await readManifest(out)).entries.length, m1.entries.length);

    sim.append(300);
    const third = await runExample('library-pipeline', env);
    assert.equal(third.code, 0, explain(third));
    const all = await readManifest(out);
    const newTruth = sim.truth();
    assert.deepEqual(all.entries.slice(0, m1.entries.length), m1.entries, 'earlier objects untouched');
    assert.equal(all.events.length, newTruth.valid.size, 'only the new events were added');
    assert.deepEqual(new Map(all.events.map((e) => [e.id, e])), expectedEvents(newTruth));
    assert.deepEqual(all.quarantined.map((q) => q.record), newTruth.invalid);
  } finally {
    await sim.close();
    await rm(work, { recursive: true, force: true });
  }
});
