/** The zstd child processes under stop signals sent to the collector's whole process group. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { until } from './helpers/proc.js';

const helper = fileURLToPath(new URL('./helpers/zstd-under-signals.js', import.meta.url));

// Regression: a signal to the group in the moment a zstd child was being started (after the fork,
// before it was in a session of its own with the signals ignored) killed it, and the object it was
// to compress failed with "write EPIPE" (seen once in a poller stopped with Ctrl-C).
test('zstd children started while the process group is signalled again and again all compress and decompress; none dies of the signal', { timeout: 300_000 }, async () => {
  const rounds = 60;
  const child = spawn(process.execPath, [helper, String(rounds)], { detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => {
    exited = true;
    resolve(code);
  }));
  await until(() => exited || stdout.startsWith('ready\n'), 'the helper to start');
  // Signal until the helper has printed its result (or died).
  let signals = 0;
  while (!exited && !stdout.slice('ready\n'.length).includes('\n')) {
    try {
      process.kill(-child.pid!, signals % 2 === 0 ? 'SIGINT' : 'SIGTERM');
    } catch {
      break; // the helper died: the assertions below say how
    }
    signals++;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.stdin.end();
  const code = await closed;
  assert.equal(code, 0, stderr);
  assert.ok(signals > 10, `only ${signals} signals were sent`);
  assert.deepEqual(JSON.parse(stdout.slice('ready\n'.length)), { identical: rounds * 4 }, `${signals} signals`);
});
