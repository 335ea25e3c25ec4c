/**
 * Results of a bench run: the JSON file under bench/results/, the plain-text table on stdout,
 * and bench/README.md, regenerated from the newest results file.
 *
 * A results file is named `<YYYY-MM-DD>-<commit>.json` (the run's UTC date and HEAD), holds
 * `{machine, updated, scenarios: {name: ScenarioResult}}`, and gathers every scenario run that
 * day on that commit: a later run replaces the scenarios it ran and keeps the others. Each
 * scenario carries its own machine record, because merged scenarios may come from different runs.
 *
 * Scenarios hand over a ready-made table (strings) plus the raw numbers; this file only lays it
 * out, so a new scenario needs no change here.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { machineLine, type Machine } from './machine.js';

export interface Table {
  columns: string[];
  /** Cells may use Markdown backticks; the plain-text table drops them. */
  rows: string[][];
  /** Per column: right-align (numbers) or not. Default: left. */
  right?: boolean[];
}

export interface ScenarioResult {
  title: string;
  /** What the scenario measures and how to read it: paragraphs (Markdown). */
  about: string[];
  /** The parameters it ran with (events, repeat, ...). */
  params: Record<string, string | number | boolean>;
  table: Table;
  /** Lines after the table: what each implementation is, sanity checks, caveats (Markdown). */
  notes: string[];
  /** Wall time of the whole scenario, seconds (including generating its input). */
  seconds: number;
  machine: Machine;
  /** Raw measurements, for comparing runs later. */
  data: unknown;
}

export interface ResultsFile {
  machine: Machine;
  /** When the file was last written, ISO 8601. */
  updated: string;
  scenarios: Record<string, ScenarioResult>;
}

export function resultsFileName(m: Machine): string {
  return `${m.date.slice(0, 10)}-${m.commit}.json`;
}

async function readResults(file: string): Promise<ResultsFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const json = JSON.parse(text) as ResultsFile;
    return typeof json === 'object' && json !== null && typeof json.scenarios === 'object' ? json : undefined;
  } catch {
    return undefined; // a damaged file is replaced rather than stopping the run
  }
}

/** Writes (or merges into) the results file for `machine`'s date and commit; returns its path. */
export async function writeResults(dir: string, m: Machine, scenarios: Record<string, ScenarioResult>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, resultsFileName(m));
  const old = await readResults(file);
  const merged: ResultsFile = { machine: m, updated: new Date().toISOString(), scenarios: { ...old?.scenarios, ...scenarios } };
  await writeFile(file, `${JSON.stringify(merged, null, 2)}\n`);
  return file;
}

/** The results file written last (by its `updated` stamp; file time as a fallback), if any. */
export async function newestResults(dir: string): Promise<{ file: string; results: ResultsFile } | undefined> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  } catch {
    return undefined;
  }
  let best: { file: string; results: ResultsFile; key: string } | undefined;
  for (const name of names) {
    const file = path.join(dir, name);
    const results = await readResults(file);
    if (results === undefined) continue;
    const key = typeof results.updated === 'string' ? results.updated : (await stat(file)).mtime.toISOString();
    if (best === undefined || key > best.key) best = { file, results, key };
  }
  return best;
}

const plain = (s: string): string => s.replace(/`/g, '');

/** Display width: East Asian wide characters count two, so the columns still line up. */
function width(s: string): number {
  let w = 0;
  for (const ch of s) w += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ? 2 : 1;
  return w;
}

/** The table as aligned plain text, for a terminal. */
export function textTable(t: Table): string {
  const rows = [t.columns, ...t.rows].map((r) => r.map(plain));
  const widths = t.columns.map((_, i) => Math.max(...rows.map((r) => width(r[i] ?? ''))));
  const line = (r: string[]): string =>
    r
      .map((cell, i) => {
        const pad = ' '.repeat(widths[i]! - width(cell));
        return t.right?.[i] === true ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

function markdownTable(t: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const head = `| ${t.columns.map(esc).join(' | ')} |`;
  const rule = `|${t.columns.map((_, i) => (t.right?.[i] === true ? '---:' : '---')).join('|')}|`;
  return [head, rule, ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

function paramsLine(p: ScenarioResult['params']): string {
  return Object.entries(p)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** Word-wraps `text` at `cols`, continuation lines indented by `indent`. */
function wrap(text: string, cols: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && width(line) + 1 + width(word) > cols) {
      lines.push(line);
      line = indent + word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines.join('\n');
}

/** A scenario for stdout: title, parameters, table, notes (wrapped for a terminal). */
export function textReport(name: string, r: ScenarioResult): string {
  const notes = r.notes.map((n) => wrap(`- ${plain(n)}`, 110, '  ')).join('\n');
  return `${name}: ${r.title} (${paramsLine(r.params)}; ${r.seconds.toFixed(1)} s)\n\n${textTable(r.table)}\n${notes ? `\n${notes}\n` : ''}`;
}

/** bench/README.md from a results file. `howToRun` is the command-line help (from run.ts). */
export function readme(resultsFile: string, results: ResultsFile, howToRun: string): string {
  const run = path.basename(resultsFile, '.json');
  const out: string[] = [
    '# Benchmarks',
    '',
    `<!-- Generated by \`npm run bench\` from the results of ${run}; do not edit by hand. -->`,
    `> Generated by \`npm run bench\` from the run of ${results.machine.date.slice(0, 10)} on commit ${results.machine.commit}; do not edit by hand.`,
    '> Results files stay on the machine that ran the bench (bench/results/ is not committed): run it to get your own.',
    '',
    '## How to run',
    '',
    '```',
    howToRun.trimEnd(),
    '```',
    '',
    'The numbers below come from one shared, noisy machine. Read them as ratios: every stage and',
    'the whole pipeline are measured against a baseline in the same run, interleaved with it, so load from elsewhere',
    'shifts both. Absolute events/s are only comparable between runs on the same machine, and',
    'nothing here is a pass/fail threshold. Each figure is the median over runs, with the',
    'min–max over runs in parentheses. The end-to-end scenarios run each pipeline in a fresh',
    'process, with the simulator (and the discarding S3 endpoint) in another one.',
    '',
    `Machine: ${machineLine(results.machine)}`,
  ];
  for (const [name, r] of Object.entries(results.scenarios)) {
    out.push('', `## \`${name}\`: ${r.title}`, '');
    for (const p of r.about) out.push(p, '');
    const when = r.machine.date === results.machine.date ? '' : ` Measured ${r.machine.date.replace(/\.\d{3}Z$/, 'Z')} (load ${r.machine.loadAvg1.toFixed(2)} at start).`;
    out.push(`Parameters: ${paramsLine(r.params)}; the scenario took ${r.seconds.toFixed(0)} s.${when}`, '');
    out.push(markdownTable(r.table));
    if (r.notes.length > 0) out.push('', ...r.notes.map((n) => `- ${n}`));
  }
  return `${out.join('\n')}\n`;
}

/** Rewrites `readmePath` from the newest file in `dir`; returns the results file used. */
export async function writeReadme(dir: string, readmePath: string, howToRun: string): Promise<string | undefined> {
  const newest = await newestResults(dir);
  if (newest === undefined) return undefined;
  await writeFile(readmePath, readme(newest.file, newest.results, howToRun));
  return newest.file;
}
