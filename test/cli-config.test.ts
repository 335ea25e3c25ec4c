import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseReplayConfig, parseRunConfig } from '../src/cli.js';
import { ConfigError } from '../src/errors.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, setHeapGrowth } from '../src/heap.js';

const ENV = { ATLASSIAN_API_KEY: 'cli-config-test-key' };
const S3 = ['--org-id', 'org', '--bucket', 'b'];

function output(argv: string[], env: NodeJS.ProcessEnv = ENV): unknown {
  return parseRunConfig(argv, env).pipeline.output;
}

function rejects(argv: string[], re: RegExp, env: NodeJS.ProcessEnv = ENV): void {
  assert.throws(() => parseRunConfig(argv, env), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, re);
    return true;
  });
}

test('--sse AES256 and --sse aws:kms with a key id reach the S3 output options', () => {
  assert.deepEqual(output([...S3, '--sse', 'AES256']), { kind: 's3', bucket: 'b', forcePathStyle: false, sse: 'AES256' });
  assert.deepEqual(output([...S3, '--sse', 'aws:kms']), { kind: 's3', bucket: 'b', forcePathStyle: false, sse: 'aws:kms' });
  assert.deepEqual(output([...S3, '--sse', 'aws:kms', '--sse-kms-key-id', 'alias/audit']), {
    kind: 's3',
    bucket: 'b',
    forcePathStyle: false,
    sse: 'aws:kms',
    sseKmsKeyId: 'alias/audit',
  });
  // Without the flags nothing is set: the bucket's default encryption applies.
  assert.deepEqual(output(S3), { kind: 's3', bucket: 'b', forcePathStyle: false });
});

test('--sse and --sse-kms-key-id come from ATLASSIAN_AUDIT_SSE and ATLASSIAN_AUDIT_SSE_KMS_KEY_ID; flags win', () => {
  const env = { ...ENV, ATLASSIAN_AUDIT_SSE: 'aws:kms', ATLASSIAN_AUDIT_SSE_KMS_KEY_ID: 'key-from-env' };
  assert.deepEqual(output(S3, env), { kind: 's3', bucket: 'b', forcePathStyle: false, sse: 'aws:kms', sseKmsKeyId: 'key-from-env' });
  assert.deepEqual(output([...S3, '--sse-kms-key-id', 'key-from-flag'], env), {
    kind: 's3',
    bucket: 'b',
    forcePathStyle: false,
    sse: 'aws:kms',
    sseKmsKeyId: 'key-from-flag',
  });
});

test('SSE misconfiguration is a ConfigError that says what to fix', () => {
  rejects([...S3, '--sse', 'aes256'], /--sse must be AES256 \(SSE-S3\) or aws:kms \(SSE-KMS\) \(got "aes256"\)/);
  rejects([...S3, '--sse', 'aws:kms:dsse'], /--sse must be AES256 .* or aws:kms/);
  rejects([...S3, '--sse-kms-key-id', 'k'], /--sse-kms-key-id needs --sse aws:kms/);
  rejects([...S3, '--sse', 'AES256', '--sse-kms-key-id', 'k'], /--sse-kms-key-id needs --sse aws:kms, not AES256/);
  rejects([...S3, '--sse', 'aws:kms', '--sse-kms-key-id', ' '], /--sse-kms-key-id must not be empty/);
  // Local-directory output has no server-side encryption: the flags must not be ignored silently.
  rejects(['--org-id', 'org', '--sse', 'AES256'], /apply to S3 only: give --bucket/);
  rejects(['--org-id', 'org', '--out-dir', '/tmp/x', '--sse', 'aws:kms', '--sse-kms-key-id', 'k'], /apply to S3 only/);
  rejects(['--org-id', 'org'], /apply to S3 only/, { ...ENV, ATLASSIAN_AUDIT_SSE: 'AES256' });
});

test('--dropoff-after takes 15m to 30d (off by default), --metrics-prefix a valid name prefix, --progress auto or off', () => {
  const base = ['--org-id', 'org'];
  assert.equal(parseRunConfig(base, ENV).dropoffAfterMs, undefined);
  assert.equal(parseRunConfig([...base, '--dropoff-after', '15m'], ENV).dropoffAfterMs, 15 * 60_000);
  assert.equal(parseRunConfig([...base, '--dropoff-after', '30d'], ENV).dropoffAfterMs, 30 * 86_400_000);
  assert.equal(parseRunConfig(base, { ...ENV, ATLASSIAN_AUDIT_DROPOFF_AFTER: '2h' }).dropoffAfterMs, 2 * 3_600_000);
  for (const bad of ['14m', '31d', '0', 'soon', '-1h']) rejects([...base, `--dropoff-after=${bad}`], /--dropoff-after must be a duration from 15m to 30d/);
  assert.equal(parseRunConfig(base, ENV).metricsPrefix, 'atlassian_audit_');
  assert.equal(parseRunConfig([...base, '--metrics-prefix', 'acme:aap_'], ENV).metricsPrefix, 'acme:aap_');
  assert.equal(parseRunConfig([...base, '--metrics-prefix', ''], ENV).metricsPrefix, '');
  for (const bad of ['1abc_', 'a-b_', 'a b']) rejects([...base, '--metrics-prefix', bad], /--metrics-prefix must be letters, digits, _ and :/);
  assert.equal(parseRunConfig(base, ENV).progress, 'auto');
  assert.equal(parseRunConfig([...base, '--progress', 'off'], ENV).progress, 'off');
  rejects([...base, '--progress', 'always'], /--progress must be auto or off/);
});

test('--page-workers takes 0 to 8 (ATLASSIAN_AUDIT_PAGE_WORKERS too) and reaches the pipeline; absent, the pipeline default applies', () => {
  assert.equal(parseRunConfig([...S3, '--page-workers', '0'], ENV).pipeline.pageWorkers, 0);
  assert.equal(parseRunConfig(S3, { ...ENV, ATLASSIAN_AUDIT_PAGE_WORKERS: '3' }).pipeline.pageWorkers, 3);
  assert.equal(parseRunConfig(S3, ENV).pipeline.pageWorkers, undefined);
  rejects([...S3, '--page-workers', '9'], /--page-workers must be a whole number from 0 to 8/);
  rejects([...S3, '--page-workers', 'two'], /--page-workers must be a whole number from 0 to 8/);
});

test('--heap-growth takes 0 to 300 (default 100, ATLASSIAN_AUDIT_HEAP_GROWTH too) for run and replay; setHeapGrowth refuses the rest', () => {
  assert.equal(parseRunConfig(S3, ENV).heapGrowthPercent, DEFAULT_HEAP_GROWTH_PERCENT);
  assert.equal(DEFAULT_HEAP_GROWTH_PERCENT, 100);
  assert.equal(parseRunConfig([...S3, '--heap-growth', '0'], ENV).heapGrowthPercent, 0);
  assert.equal(parseRunConfig(S3, { ...ENV, ATLASSIAN_AUDIT_HEAP_GROWTH: '300' }).heapGrowthPercent, 300);
  rejects([...S3, '--heap-growth', '301'], /--heap-growth must be a whole number from 0 to 300/);
  rejects([...S3, '--heap-growth', '1.5'], /--heap-growth must be a whole number from 0 to 300/);
  assert.equal(parseReplayConfig(['a'], {}).heapGrowthPercent, 100);
  assert.equal(parseReplayConfig(['a', '--heap-growth', '50'], {}).heapGrowthPercent, 50);
  assert.throws(() => parseReplayConfig(['a', '--heap-growth=-1'], {}), /--heap-growth must be a whole number from 0 to 300/);
  for (const bad of [-1, 301, 2.5, Number.NaN]) assert.throws(() => setHeapGrowth(bad), RangeError);
});

test('replay: the sink flags as run has them, --state and --metrics-port from flags only, inputs as arguments', () => {
  const collectorEnv = { ATLASSIAN_AUDIT_STATE: '/var/lib/collector/state.json', ATLASSIAN_AUDIT_METRICS_PORT: '9464', ATLASSIAN_AUDIT_BUCKET: 'from-env' };
  const c = parseReplayConfig(['a.jsonl', 's3://b/p/', '-', '--prefix', 'x/', '--batch-size', '100'], collectorEnv);
  assert.deepEqual(c.replay.inputs, ['a.jsonl', 's3://b/p/', '-']);
  assert.equal(c.replay.statePath, 'atlassian-audit-replay-state.json', "not the collector's state");
  assert.equal(c.metricsPort, 0, "not the collector's port");
  assert.deepEqual(c.replay.output, { kind: 's3', bucket: 'from-env', forcePathStyle: false }, 'other variables still apply');
  assert.equal(c.replay.batchSize, 100);
  assert.equal(parseReplayConfig(['a', '--state', 's.json', '--metrics-port', '9470'], {}).replay.statePath, 's.json');
  assert.equal(parseReplayConfig(['a', '--metrics-port', '9470'], {}).metricsPort, 9470);
  assert.throws(() => parseReplayConfig([], {}), /at least one input/);
  assert.throws(() => parseReplayConfig(['a', '--batch-size', '0'], {}), /--batch-size must be a whole number from 1/);
  assert.throws(() => parseReplayConfig(['a', '--once'], {}), /Unknown option '--once'/);
});

test('booleans from the environment: 1/0, true/false, yes/no, on/off in any case; anything else is a ConfigError naming the variable', () => {
  const once = (value: string | undefined): boolean => parseRunConfig(['--org-id', 'org'], { ...ENV, ATLASSIAN_AUDIT_ONCE: value }).pipeline.follow !== true;
  // Regression: "yes", "on" and "2" were silently false, so the run polled forever.
  for (const v of ['1', 'true', 'TRUE', 'yes', 'Yes', 'on', 'ON', ' on ']) assert.equal(once(v), true, v);
  for (const v of ['0', 'false', 'False', 'no', 'NO', 'off', 'Off', '', undefined]) assert.equal(once(v), false, String(v));
  for (const v of ['2', 'y', 'enabled', 'truee']) {
    rejects(['--org-id', 'org'], new RegExp(`ATLASSIAN_AUDIT_ONCE must be one of 1, true, yes, on .*${JSON.stringify(v)}`), { ...ENV, ATLASSIAN_AUDIT_ONCE: v });
  }
  const pathStyle = (value: string): unknown => output(S3, { ...ENV, ATLASSIAN_AUDIT_S3_FORCE_PATH_STYLE: value });
  assert.equal((pathStyle('yes') as { forcePathStyle: boolean }).forcePathStyle, true);
  assert.equal((pathStyle('off') as { forcePathStyle: boolean }).forcePathStyle, false);
  rejects(S3, /ATLASSIAN_AUDIT_S3_FORCE_PATH_STYLE must be/, { ...ENV, ATLASSIAN_AUDIT_S3_FORCE_PATH_STYLE: 'maybe' });
  // A flag given on the command line wins over a variable that says otherwise.
  assert.equal(parseRunConfig(['--org-id', 'org', '--once'], { ...ENV, ATLASSIAN_AUDIT_ONCE: 'no' }).pipeline.follow, false);
});
