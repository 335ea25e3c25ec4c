/**
 * Memory stays bounded on a large input: a generated 2 GiB file (JSON lines, then a JSON array
 * read with stream-json) is replayed by the CLI into a local directory while the process's RSS is
 * sampled from /proc. The bound asserted is the one README.md states ("Replaying archives"); the
 * peak and the rate are printed for the record (speed is measured, never asserted, in tests).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, summaryOf } from '../helpers/cli.js';
import { tempDir } from '../helpers/fs.js';

/** README.md, "Replaying archives": peak RSS of a replay, whatever the input's size. */
const RSS_BOUND_MIB = 320;
const INPUT_BYTES = 2 * 1024 ** 3;

/** Writes ~`bytes` of 1.3 KB events, one a second, as JSON lines or one JSON array; returns how many. */
async function generate(path: string, bytes: number, format: 'lines' | 'array'): Promise<number> {
  const out = createWriteStream(path);
  const base = Date.parse('2026-01-01T00:00:00Z');
  const content = 'Signed in from a new device. '.repeat(28);
  let written = 0;
  let n = 0;
  while (written < bytes) {
    let chunk = '';
    for (let k = 0; k < 1000; k++, n++) {
      const p = new Date(base + n * 1000).toISOString();
      const event = JSON.stringify({
        id: `5c0f2a44-0000-4000-8000-${String(n).padStart(12, '0')}`,
        type: 'events',
        attributes: { time: new Date(base + n * 1000 - 2000).toISOString(), processedAt: p, action: 'user_login', actor: { id: `u${n % 97}`, name: 'Ada', email: 'ada@example.com', links: { self: 'https://api.atlassian.com/users/u' } }, location: { ip: '192.0.2.1', countryName: 'Nowhere' } },
        links: { self: 'https://api.atlassian.com/admin/v1/orgs/o/events/e' },
        message: { content, format: 'simple' },
      });
      // An array: "[" before the first element, "," before every other one.
      chunk += format === 'lines' ? `${event}\n` : `${n === 0 ? '[' : ','}\n${event}`;
    }
    written += Buffer.byteLength(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  if (format === 'array') out.write('\n]\n');
  out.end();
  await once(out, 'finish');
  return n;
}

/** A live process's resident set (VmRSS), in KiB; 0 once it is gone. */
async function rssKiB(pid: number, field: 'VmRSS'): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

for (const format of ['lines', 'array'] as const) {
  test(`replaying a 2 GiB ${format === 'lines' ? 'JSON-lines file' : 'JSON array'} keeps RSS under the stated bound, and flat`, { timeout: 15 * 60_000 }, async (t) => {
  const dir = await tempDir();
  try {
    const input = join(dir, format === 'lines' ? 'big.jsonl' : 'big.json');
    const events = await generate(input, INPUT_BYTES, format);
    const started = Date.now();
    const child = spawn(process.execPath, [BIN, 'replay', input, '--out-dir', join(dir, 'out'), '--state', join(dir, 'state.json'), '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const samples: number[] = [];
    const closed = once(child, 'close');
    let done = false;
    void closed.then(() => (done = true));
    while (!done) {
      const kib = await rssKiB(child.pid!, 'VmRSS');
      if (kib > 0) samples.push(kib);
      await new Promise((r) => setTimeout(r, 100));
    }
    const [code] = (await closed) as [number];
    const seconds = (Date.now() - started) / 1000;
    assert.equal(code, 0, stderr);
    assert.equal(summaryOf(stdout).events, events, stdout);
    assert.ok(samples.length > 20, `too few RSS samples (${samples.length})`);
    const mib = (kib: number): number => Math.round(kib / 1024);
    const peakMiB = mib(Math.max(...samples));
    // Memory does not grow with the input: the second half of the run peaks no higher than the
    // first half did (plus a margin for the garbage collector's timing).
    const half = Math.floor(samples.length / 2);
    const firstHalf = mib(Math.max(...samples.slice(0, half)));
    const secondHalf = mib(Math.max(...samples.slice(half)));
    t.diagnostic(`replay of ${(INPUT_BYTES / 1024 ** 3).toFixed(0)} GiB of ${format === 'lines' ? 'JSON lines' : 'JSON array'}, ${events} events: peak RSS ${peakMiB} MiB (first half ${firstHalf}, second half ${secondHalf}), ${seconds.toFixed(1)} s, ${Math.round(events / seconds)} events/s`);
    assert.ok(peakMiB < RSS_BOUND_MIB, `peak RSS ${peakMiB} MiB is over the bound of ${RSS_BOUND_MIB} MiB`);
    assert.ok(secondHalf <= firstHalf * 1.25, `RSS grew during the run: ${firstHalf} MiB in the first half, ${secondHalf} MiB in the second`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
}
