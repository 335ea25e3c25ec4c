/**
 * The docs say what the code does: every message the code logs is in the README's log table with
 * its level, every metric is in the metrics table, every flag the docs name exists, and every
 * environment variable an example reads is the CLI's own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMetrics } from '../src/metrics.js';
import { REPO_ROOT } from './helpers/examples-run.js';
import { runCli } from './helpers/cli.js';

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The rows of the README table that follows `heading`: each row's cells. */
function tableAfter(readme: string, heading: string): string[][] {
  const at = readme.indexOf(heading);
  assert.ok(at >= 0, `README has no ${heading}`);
  const lines = readme.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split(' | ').map((c) => c.replace(/^\| ?| ?\|$/g, '').trim()));
  }
  return rows;
}

test('every message the code logs is in the README\'s log table, with its level', async () => {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const table = tableAfter(readme, '### Logs').map(([msg, level]) => ({ msg: msg!.replace(/^`|`$/g, '').replace(/<[a-z]+>/g, 'X'), level: level! }));
  const logged: Array<{ level: string; pattern: RegExp; text: string; file: string }> = [];
  for (const file of await sourceFiles(join(REPO_ROOT, 'src'))) {
    const text = await readFile(file, 'utf8');
    // logger.info('…', …), this.#logger.warn(`…${x}…`, …), possibly with the message on the next line.
    for (const m of text.matchAll(/logger\.(debug|info|warn|error)\(\s*(['`])((?:(?!\2).)*)\2/g)) {
      const literal = m[3]!;
      const parts = literal.split(/\$\{[^}]*\}/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      logged.push({ level: m[1]!, pattern: new RegExp(`^${parts.join('.+')}$`), text: literal, file });
    }
  }
  assert.ok(logged.length >= 25, `found only ${logged.length} log calls: the pattern no longer finds them`);
  for (const l of logged) {
    const row = table.find((r) => l.pattern.test(r.msg));
    assert.ok(row !== undefined, `${l.file}: "${l.text}" is not in the README's log table`);
    assert.equal(row.level, l.level, `"${l.text}" is logged at ${l.level}, the README says ${row.level}`);
  }
});

test('every metric is in the README\'s metrics table and every row there is a metric', async () => {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const rows = tableAfter(readme, '### Metrics').map((r) => r[0]!.replace(/^`|`$/g, '')).filter((n) => n.startsWith('atlassian_audit_') && !n.includes('…'));
  const metrics = createMetrics({ defaultMetrics: false });
  const names = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).sort();
  assert.deepEqual([...rows].sort(), names);
});

test('every flag the README and ARCHITECTURE.md name is one a command (or the bench) takes', async () => {
  const helps = await Promise.all(['run', 'replay', 'status', 'demo', 'simulate'].map(async (c) => (await runCli([c, '--help'])).stdout));
  const bench = await readFile(join(REPO_ROOT, 'bench', 'README.md'), 'utf8');
  const known = new Set([...helps, bench].flatMap((t) => [...t.matchAll(/(--[a-z0-9][a-z0-9-]*)/g)].map((m) => m[1]!)));
  // Named only to say they are refused, or a family of flags.
  for (const f of ['--api-key', '--token', '--s3-', '--version']) known.add(f);
  for (const doc of ['README.md', 'ARCHITECTURE.md']) {
    const text = await readFile(join(REPO_ROOT, doc), 'utf8');
    for (const m of text.matchAll(/`(--[a-z0-9][a-z0-9-]*)/g)) assert.ok(known.has(m[1]!), `${doc} names ${m[1]}, which no command takes`);
  }
});

test('the examples read the CLI\'s own environment variables (ATLASSIAN_AUDIT_<FLAG>, ATLASSIAN_API_KEY) and no others of ours', async () => {
  const runHelp = (await runCli(['run', '--help'])).stdout;
  const flags = new Set([...runHelp.matchAll(/^ {2}(--[a-z0-9-]+)/gm)].map((m) => m[1]!));
  for (const name of ['custom-enrichment.ts', 'library-pipeline.ts', 'validate-stdin.ts']) {
    const text = await readFile(join(REPO_ROOT, 'examples', name), 'utf8');
    for (const m of text.matchAll(/process\.env\['([A-Z0-9_]+)'\]|required\('([A-Z0-9_]+)'\)/g)) {
      const variable = m[1] ?? m[2]!;
      if (variable === 'ATLASSIAN_API_KEY') continue;
      assert.match(variable, /^ATLASSIAN_AUDIT_/, `${name} reads ${variable}, which the CLI ignores`);
      const flag = `--${variable.slice('ATLASSIAN_AUDIT_'.length).toLowerCase().replaceAll('_', '-')}`;
      assert.ok(flags.has(flag), `${name} reads ${variable}, but run has no ${flag}`);
    }
  }
});
