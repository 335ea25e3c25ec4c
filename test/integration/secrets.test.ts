import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createSimulator } from '../../src/simulator/index.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs.js';
import { createTestBucket, emptyAndDeleteBucket, listKeys, readZstdJsonLines, s3TestEnv, testS3Client } from '../helpers/s3.js';
import { s3Skip } from '../helpers/require-s3.js';
import { startS3FaultProxy } from '../helpers/s3-fault-proxy.js';
import { freePort } from '../helpers/net.js';

const KEY = 'ATATT3xFfGF0-secret-api-key-7f3a9c2e41d8';

test('after runs that fail in every way, the API key (and the AWS secret) is in no log, metric, error, object or checkpoint', { skip: s3Skip(), timeout: 240_000 }, async () => {
  const sim = createSimulator({ events: 6000, seed: 41, apiKey: KEY, malformedRate: 0.02, faults: { rate429: 0.05, retryAfterSeconds: 0, rate5xx: 0.05, rateReset: 0.03, rateTruncated: 0.03, rateHtml: 0.02, rateBadShape: 0.02 } });
  await sim.start();
  const proxy = await startS3FaultProxy();
  const client = testS3Client();
  const bucket = await createTestBucket(client);
  const dir = await tempDir();
  const keyFile = join(dir, 'key');
  await writeFile(keyFile, `${KEY}\n`);
  const s3env = s3TestEnv();
  const secret = s3env['AWS_SECRET_ACCESS_KEY']!;
  const outputs: string[] = [];
  const logs: string[] = [];
  const base = (state: string): string[] => ['run', '--once', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--bucket', bucket,
    '--s3-endpoint', proxy.url, '--s3-force-path-style', '--state', join(dir, state), '--rate-limit', '0', '--log-level', 'debug', '--log-format', 'json', '--object-max-bytes', '64KiB'];
  const record = (r: CliResult): CliResult => {
    outputs.push(r.stdout, r.stderr);
    logs.push(r.stderr);
    return r;
  };
  try {
    // 1. API faults all along, S3 faults too, metrics scraped while it runs; then the API forgets its cursors.
    // At most 5 faults in a row for one request, so the SDK's 6 attempts always get through even
    // when the first PutObject meets every one of them.
    proxy.failNext('PutObject', 'SlowDown', 2).failNext('*', 'reset', 1).failNext('PutObject', 'InternalError', 2);
    const port = await freePort();
    const run = startCli([...base('a.json'), '--metrics-port', String(port)], { ATLASSIAN_API_KEY: KEY, ...s3env });
    await run.waitFor(/metrics server listening/);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      if (res !== undefined) outputs.push(await res.text());
      await new Promise((r) => setTimeout(r, 200));
    }
    const first = record(await run.result);
    assert.equal(first.code, 0, first.stderr);
    sim.invalidateCursors();
    sim.append(300);
    assert.equal(record(await runCli([...base('a.json'), '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 0);
    // 2. S3 failing for good: exit 7. The key from a file this time.
    sim.append(300);
    proxy.failAlways('PutObject', 'InternalError');
    assert.equal(record(await runCli([...base('a.json'), '--metrics-port', '0', '--api-key-file', keyFile], s3env)).code, 7);
    proxy.clear();
    // 3. The key revoked (401), the org without Guard (403), an unknown org (404).
    sim.apiKey = 'rotated-key-0000000000';
    assert.equal(record(await runCli([...base('b.json'), '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 3);
    sim.apiKey = KEY;
    sim.entitled = false;
    assert.equal(record(await runCli([...base('c.json'), '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 4);
    sim.entitled = true;
    const wrongOrg = base('d.json').map((a) => (a === sim.orgId ? 'no-such-org' : a));
    assert.equal(record(await runCli([...wrongOrg, '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 5);
    // 4. The API failing past the retries: exit 6.
    sim.setFaults({ rate5xx: 1 });
    assert.equal(record(await runCli([...base('e.json'), '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 6);
    sim.setFaults({});
    // 5. A corrupt checkpoint, and the key put on the command line by mistake.
    await writeFile(join(dir, 'f.json'), '{"version":1,"stateId":"0000');
    assert.equal(record(await runCli([...base('f.json'), '--metrics-port', '0'], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 8);
    assert.equal(record(await runCli([...base('g.json'), '--metrics-port', '0', `--api-key=${KEY}`], s3env)).code, 2);
    assert.equal(record(await runCli([...base('g.json'), '--metrics-port', '0', KEY], { ATLASSIAN_API_KEY: KEY, ...s3env })).code, 2);

    // Everything the runs left: output, metrics, checkpoints, lock files, every object.
    for (const f of await readdir(dir)) if (f !== 'key') outputs.push(await readFile(join(dir, f), 'utf8'));
    const keys = await listKeys(client, bucket, '');
    assert.ok(keys.length > 5, `only ${keys.length} objects`);
    for (const k of keys) outputs.push(JSON.stringify(await readZstdJsonLines(client, bucket, k)));
    const all = outputs.join('\n');
    assert.ok(all.includes('atlassian_audit_api_requests_total'), 'metrics were not scraped');
    assert.ok(all.includes('"level":"debug"'), 'debug logs were not captured');
    for (const [name, s] of [['the API key', KEY], ['the AWS secret key', secret]] as const) {
      const at = all.indexOf(s);
      assert.equal(at, -1, `${name} leaked: …${all.slice(Math.max(0, at - 200), at + 50)}`);
    }
    assert.ok(sim.stats.requests > 20 && proxy.log.some((e) => e.fault !== undefined));
    // No event body in the logs, at debug level either: no event's id, and no quarantined record's.
    const logText = logs.join('\n');
    assert.ok(logText.includes('"msg":"object complete"'), 'the logs were not captured');
    const truth = sim.truth();
    const ids = new Set<string>([...truth.valid.keys(), ...truth.invalid.map((r) => (typeof r === 'object' && r !== null ? (r as { id?: unknown }).id : undefined)).filter((id): id is string => typeof id === 'string')]);
    assert.ok(ids.size > 6000, `only ${ids.size} ids`);
    const leaked = [...logText.matchAll(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi)].map((m) => m[0]).filter((u) => ids.has(u));
    assert.deepEqual(leaked, [], 'event ids appear in the logs');
  } finally {
    await sim.close();
    await proxy.close();
    await emptyAndDeleteBucket(client, bucket);
    client.destroy();
  }
});
