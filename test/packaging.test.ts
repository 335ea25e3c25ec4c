/**
 * The package as a consumer gets it: `npm pack`, installed into a fresh project, then imported
 * by name (every runtime export present), type-checked against its declarations (a correct
 * consumer passes, a wrong one fails), and its tarball listed (what a consumer needs, nothing
 * of ours besides).
 *
 * `npm pack --ignore-scripts` packs the dist/ this suite runs from (`npm test` builds it first):
 * the `prepare` script would otherwise run tsc over the whole repository again mid-suite.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { explain, minimalEnv, REPO_ROOT, runProcess, type ProcessResult } from './helpers/examples-run.js';
import {
  CONSUMER_BAD_TS,
  CONSUMER_GOOD_TS,
  CONSUMER_PACKAGE_JSON,
  CONSUMER_RUNTIME_MJS,
  CONSUMER_TSCONFIG,
  CONSUMER_TSCONFIG_BAD,
} from './helpers/examples-consumer.js';
import { listFiles, readZstdFile, tempDir } from './helpers/fs.js';

const TSC = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

let work = '';
let tarball = '';
let consumer = '';
let installed: Promise<void> | undefined;

/** npm with the caller's environment (its cache, registry and proxy settings live there). */
function npm(args: string[], cwd: string): Promise<ProcessResult> {
  return runProcess('npm', args, { cwd, env: { ...process.env, npm_config_update_notifier: 'false' }, timeoutMs: 240_000 });
}

before(async () => {
  work = await tempDir('aap-pack-');
  const packDir = join(work, 'pack');
  await mkdir(packDir);
  const pack = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], REPO_ROOT);
  assert.equal(pack.code, 0, explain(pack));
  const [info] = JSON.parse(pack.stdout) as Array<{ filename: string }>;
  tarball = join(packDir, info!.filename);
  consumer = join(work, 'consumer');
  await mkdir(consumer);
  await writeFile(join(consumer, 'package.json'), CONSUMER_PACKAGE_JSON);
});

after(async () => {
  if (work !== '') await rm(work, { recursive: true, force: true });
});

/** Installs the tarball (and @types/node) into the consumer project, once. */
function install(): Promise<void> {
  installed ??= (async () => {
    const r = await npm(['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball, '@types/node@20'], consumer);
    assert.equal(r.code, 0, explain(r));
  })();
  return installed;
}

test('the tarball holds the compiled library, its declarations and the README; no tests, benches, sources or source maps', async () => {
  const r = await runProcess('tar', ['-tzf', tarball], { env: minimalEnv() });
  assert.equal(r.code, 0, explain(r));
  const files = r.stdout.split('\n').filter((l) => l !== '').map((l) => l.replace(/^package\//, ''));
  for (const want of ['package.json', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/bin.js', 'dist/src/sources/page-worker.js', 'dist/src/simulator/index.js']) {
    assert.ok(files.includes(want), `${want} is in the tarball`);
  }
  const unwanted = files.filter(
    (f) =>
      /^(test|bench|src|examples|scripts|\.ci)\//.test(f) ||
      /^dist\/(test|bench|examples)\//.test(f) ||
      (f.endsWith('.ts') && !f.endsWith('.d.ts')) ||
      f.endsWith('.map') ||
      f === 'tsconfig.json' ||
      f === 'package-lock.json',
  );
  assert.deepEqual(unwanted, []);
  assert.ok(files.every((f) => f.startsWith('dist/src/') || ['package.json', 'README.md', 'ARCHITECTURE.md', 'LICENSE'].includes(f)), files.join('\n'));
});

test('installed by name, the package exports every name of src/index.ts, none undefined, and its stages work', { timeout: 300_000 }, async () => {
  await install();
  const ours = Object.keys((await import('../src/index.js')) as Record<string, unknown>).sort();
  assert.ok(ours.length > 30 && ours.includes('createValidate') && ours.includes('runPipeline'), ours.join(' '));
  await writeFile(join(consumer, 'runtime.mjs'), CONSUMER_RUNTIME_MJS);
  const outDir = join(consumer, 'out');
  const r = await runProcess(process.execPath, ['runtime.mjs', outDir], { cwd: consumer, env: minimalEnv() });
  assert.equal(r.code, 0, explain(r));
  const got = JSON.parse(r.stdout) as { names: string[]; undefinedNames: string[]; out: unknown[] };
  assert.deepEqual(got.names, ours);
  assert.deepEqual(got.undefinedNames, []);
  assert.deepEqual(got.out, [
    { id: 'e1', type: 'events', attributes: { time: '2026-11-21T10:15:00.000Z', processedAt: '2026-11-21T10:16:00Z' }, links: {} },
    { quarantined: (() => { try { JSON.parse('{"id": broken'); } catch (e) { return `not JSON: ${(e as Error).message}`; } return ''; })() },
  ]);
  // The sink compresses with zstd from inside the installed package.
  const files = await listFiles(outDir);
  assert.equal(files.length, 1);
  assert.match(files[0]!, /^ev\/2026\/11\/21\/10\/[0-9a-f]+-\d+\.json\.zst$/);
  assert.deepEqual(((await readZstdFile(join(outDir, files[0]!))) as Array<{ id: string }>).map((e) => e.id), ['e1']);

  const bin = await runProcess(join(consumer, 'node_modules', '.bin', 'atlassian-audit-pipeline'), ['--help'], { cwd: consumer, env: minimalEnv() });
  assert.equal(bin.code, 0, explain(bin));
  assert.match(bin.stdout, /^ {2}run +collect/m);
  // The version comes from the installed package's package.json.
  const version = await runProcess(join(consumer, 'node_modules', '.bin', 'atlassian-audit-pipeline'), ['--version'], { cwd: consumer, env: minimalEnv() });
  assert.equal(version.code, 0, explain(version));
  const { version: expected } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout, `atlassian-audit-pipeline ${expected}\n`);
});

test('a consumer using the factories, option types, ObjectStore and error classes type-checks; a wrong one fails at each mistake', { timeout: 300_000 }, async () => {
  await install();
  await writeFile(join(consumer, 'tsconfig.json'), CONSUMER_TSCONFIG);
  await writeFile(join(consumer, 'tsconfig.bad.json'), CONSUMER_TSCONFIG_BAD);
  await writeFile(join(consumer, 'good.ts'), CONSUMER_GOOD_TS);
  await writeFile(join(consumer, 'bad.ts'), CONSUMER_BAD_TS);

  const good = await runProcess(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: consumer, env: minimalEnv() });
  assert.equal(good.code, 0, explain(good));

  const bad = await runProcess(process.execPath, [TSC, '-p', 'tsconfig.bad.json'], { cwd: consumer, env: minimalEnv() });
  assert.notEqual(bad.code, 0, 'the wrong consumer must fail');
  const errorLines = new Set([...bad.stdout.matchAll(/^bad\.ts\((\d+),\d+\): error TS\d+/gm)].map((m) => Number(m[1])));
  const marked = new Set(CONSUMER_BAD_TS.split('\n').flatMap((l, i) => (l.endsWith('// error') ? [i + 1] : [])));
  assert.deepEqual(errorLines, marked, explain(bad));
  assert.doesNotMatch(bad.stdout, /node_modules\//, 'no error inside the package');
});
