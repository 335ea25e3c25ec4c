import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createSimulator } from '../../src/simulator/index.js';
import { runCli, startCli } from '../helpers/cli.js';
import { until } from '../helpers/proc.js';
import { tempDir } from '../helpers/fs.js';

test('status: the checkpoint, the last run and the lock, as text and as JSON', async () => {
  const sim = createSimulator({ events: 1500, seed: 61, malformedRate: 0.02, duplicateRate: 0.01 });
  await sim.start();
  const dir = await tempDir();
  const state = join(dir, 'state.json');
  const run = ['run', '--org-id', sim.orgId, '--api-url', sim.url, '--from', '2000-01-01', '--out-dir', join(dir, 'out'), '--state', state, '--metrics-port', '0', '--rate-limit', '0', '--log-format', 'json'];
  const env = { ATLASSIAN_API_KEY: sim.apiKey };
  try {
    const missing = await runCli(['status', '--state', join(dir, 'nope.json')]);
    assert.equal(missing.code, 8);
    assert.match(missing.stderr, /no state file at .*nope\.json.*check --state/);

    const before = Date.now();
    assert.equal((await runCli([...run, '--once'], env)).code, 0);
    const after1 = Date.now();
    const truth = sim.truth();
    const json = await runCli(['status', '--state', state, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout) as {
      orgId: string; running: boolean; lastProcessedAt: string; dedupeWindowIds: number; reservedKeys: object;
      totals: { fetched: number; events: number; quarantined: number; duplicates: number; objects: number };
      lastRun: { outcome: string; events: number }; position: { cursor?: string };
      positionMovedAt: string; cursorAgeSeconds: number; checkpointSavedAt: string;
    };
    assert.equal(s.orgId, sim.orgId);
    assert.equal(s.running, false);
    assert.equal(s.totals.events, truth.valid.size);
    assert.equal(s.totals.quarantined, truth.invalid.length);
    assert.equal(s.totals.fetched, s.totals.events + s.totals.quarantined + s.totals.duplicates);
    assert.equal(s.lastRun.outcome, 'ok');
    assert.equal(s.lastRun.events, truth.valid.size);
    assert.ok(s.dedupeWindowIds >= truth.valid.size);
    assert.deepEqual(s.reservedKeys, {});
    assert.equal(typeof s.position.cursor, 'string');
    const newest = [...truth.valid.values()].map((e) => Date.parse((e as { attributes: { processedAt: string } }).attributes.processedAt)).reduce((a, b) => Math.max(a, b));
    assert.equal(Date.parse(s.lastProcessedAt), newest);
    // The cursor's age: when the position last moved, during that run.
    assert.ok(Date.parse(s.positionMovedAt) >= before - 1000 && Date.parse(s.positionMovedAt) <= after1, s.positionMovedAt);
    assert.ok(s.cursorAgeSeconds >= 0 && s.cursorAgeSeconds <= (Date.now() - before) / 1000 + 1, String(s.cursorAgeSeconds));

    const text = await runCli(['status', '--state', state]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`totals: +fetched ${s.totals.fetched}, written ${truth.valid.size}, quarantined ${truth.invalid.length}, duplicates ${s.totals.duplicates}`));
    assert.match(text.stdout, /last run: +ok, /);
    assert.match(text.stdout, /running: +no\n/);
    assert.match(text.stdout, /last processedAt: +\S+ \(\d+ (s|min|h|d) ago\)/);
    assert.match(text.stdout, new RegExp(`position: +cursor ${s.position.cursor!.slice(0, 24).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.match(text.stdout, new RegExp(`position moved: +${s.positionMovedAt} \\(\\d+ s ago\\)`));
    assert.match(text.stdout, /checkpoint saved: +\S+ \(\d+ s ago\)/);
    assert.match(text.stdout, new RegExp(`dedupe window: +${s.dedupeWindowIds} ids\n`));

    // A run that finds nothing new saves the file again (its summary) but leaves the cursor's age.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await runCli([...run, '--once'], env)).code, 0);
    const again = JSON.parse((await runCli(['status', '--state', state, '--json'])).stdout) as typeof s;
    assert.notEqual(again.checkpointSavedAt, s.checkpointSavedAt);
    assert.equal(again.position.cursor, s.position.cursor);
    assert.equal(again.positionMovedAt, s.positionMovedAt);

    // A poller holds the lock: status says so, with its pid; killed, its lock is stale.
    const poller = startCli([...run, '--interval', '1h'], env);
    await poller.waitFor(/state exists: continuing|"msg":"metrics server listening"|no state yet/, 20_000).catch(() => {});
    let live = '';
    await until(async () => {
      live = (await runCli(['status', '--state', state])).stdout;
      return live.includes('running:           yes');
    }, 'status to see the poller');
    assert.match(live, new RegExp(`running: +yes \\(pid ${poller.child.pid}\\)`));
    poller.child.kill('SIGKILL');
    await poller.result;
    const after = await runCli(['status', '--state', state, '--json']);
    const a = JSON.parse(after.stdout) as { running: boolean; lock: { pid: number; stale: boolean } };
    assert.equal(a.running, false);
    assert.deepEqual(a.lock, { pid: poller.child.pid, stale: true });
  } finally {
    await sim.close();
  }
});
