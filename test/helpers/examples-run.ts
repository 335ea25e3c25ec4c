/**
 * Runs the compiled examples (dist/examples/*.js) and other commands as child processes, for
 * test/examples.test.ts and test/packaging.test.ts.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as dist/test/helpers/examples-run.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  cwd?: string;
  /** The whole environment of the child (nothing is inherited unless passed here). */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed. Default: stdin closed at once. */
  input?: string | Buffer;
  /** Killed (SIGKILL) after this long; the result then has signal SIGKILL. Default 120,000. */
  timeoutMs?: number;
}

/** Runs `command args`, collecting stdout and stderr as text. Never rejects for an exit status. */
export function runProcess(command: string, args: readonly string[], options: RunOptions = {}): Promise<ProcessResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? minimalEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    // A child that exits without reading all of its input is the test's finding, not an EPIPE crash here.
    child.stdin.on('error', () => {});
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), ms: Date.now() - started });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** PATH and HOME only: what any shell, CI's included, has. */
export function minimalEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { PATH: process.env['PATH'], HOME: process.env['HOME'], ...extra };
}

/** Runs `node dist/examples/<name>.js` with `env` over PATH and HOME. */
export function runExample(name: string, env: Record<string, string | undefined> = {}, options: Omit<RunOptions, 'env'> = {}): Promise<ProcessResult> {
  const script = fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url));
  return runProcess(process.execPath, [script], { ...options, env: minimalEnv(env) });
}

/** The environment variables the examples (and the CLI) read to reach an API (the simulator's, in tests). */
export function apiEnv(sim: { url: string; orgId: string; apiKey: string }): Record<string, string> {
  // The simulator enforces no rate limit: no request budget of the example's own.
  return { ATLASSIAN_AUDIT_API_URL: sim.url, ATLASSIAN_AUDIT_ORG_ID: sim.orgId, ATLASSIAN_API_KEY: sim.apiKey, ATLASSIAN_AUDIT_RATE_LIMIT: '0' };
}

/** A failure message with what the child printed. */
export function explain(r: ProcessResult): string {
  return `exit ${r.code ?? r.signal} after ${r.ms} ms\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`;
}
