import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, type LogLevel } from '../src/log.js';

function capture(isTTY?: boolean): { lines: string[]; stream: { write(s: string): boolean; isTTY?: boolean } } {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => lines.push(s) > 0, ...(isTTY === undefined ? {} : { isTTY }) } };
}

test('--log-level: each level keeps itself and the levels above; silent keeps nothing', () => {
  const order: LogLevel[] = ['debug', 'info', 'warn', 'error'];
  for (const [i, level] of [...order, 'silent' as const].entries()) {
    const c = capture(false);
    const log = createLogger({ level, stream: c.stream });
    for (const l of order) log[l as Exclude<LogLevel, 'silent'>](`a ${l} line`);
    const got = c.lines.map((line) => (JSON.parse(line) as { level: string }).level);
    assert.deepEqual(got, order.slice(i), `level ${level}`);
  }
  const c = capture(false);
  createLogger({ stream: c.stream }).debug('hidden');
  assert.deepEqual(c.lines, [], 'the default level is info');
});

test('log format: JSON lines off a TTY, pretty on a TTY, and pretty when asked for off a TTY', () => {
  const json = capture(false);
  createLogger({ stream: json.stream }).info('poll complete', { pages: 3, nextPollAt: null });
  const j = JSON.parse(json.lines[0]!) as Record<string, unknown>;
  assert.equal(json.lines[0]!.endsWith('\n'), true);
  assert.deepEqual({ level: j['level'], msg: j['msg'], pages: j['pages'], nextPollAt: j['nextPollAt'] }, { level: 'info', msg: 'poll complete', pages: 3, nextPollAt: null });
  assert.ok(Number.isFinite(Date.parse(j['time'] as string)));

  const pretty = /^\d\d:\d\d:\d\d WARN  rate limited by the API; waiting waitMs=1200 cause=429\n$/;
  const tty = capture(true);
  createLogger({ stream: tty.stream }).warn('rate limited by the API; waiting', { waitMs: 1200, cause: '429' });
  assert.match(tty.lines[0]!, pretty);
  const asked = capture(false);
  createLogger({ stream: asked.stream, format: 'pretty' }).warn('rate limited by the API; waiting', { waitMs: 1200, cause: '429' });
  assert.match(asked.lines[0]!, pretty);
  const forcedJson = capture(true);
  createLogger({ stream: forcedJson.stream, format: 'json' }).info('x');
  assert.equal((JSON.parse(forcedJson.lines[0]!) as { msg: string }).msg, 'x');
});

test('a secret given to redact is blanked in the message, in fields, and in its JSON-escaped form', () => {
  const secret = 'ATATT3x"secret\\key-0123';
  for (const format of ['json', 'pretty'] as const) {
    const c = capture(false);
    const log = createLogger({ stream: c.stream, format, redact: [secret, 'short'] });
    log.error(`failed with ${secret}`, { detail: secret, nested: { v: secret }, short: 'short' });
    const out = c.lines.join('');
    assert.equal(out.includes(secret), false, out);
    assert.equal(out.includes(JSON.stringify(secret).slice(1, -1)), false, out);
    assert.ok(out.includes('[redacted]'), out);
    assert.ok(out.includes('short'), 'values under 8 characters are not redacted');
  }
});
