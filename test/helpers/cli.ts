import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../src/bin.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  child: ChildProcess;
  result: Promise<CliResult>;
  /** Resolves when stderr or stdout has printed text matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

export interface StartOptions {
  /**
   * Start the CLI in a session and process group of its own (what `setsid` does), so a test can
   * signal the whole group as a terminal or a supervisor does: `process.kill(-child.pid, sig)`.
   */
  ownGroup?: boolean;
}

export function startCli(args: string[], env: Record<string, string | undefined> = {}, options: StartOptions = {}): CliRun {
  const child = spawn(process.execPath, ['--no-warnings', BIN, ...args], {
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.ownGroup === true,
  });
  let stdout = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => { stdout += d; waiters.forEach((w) => w()); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d; waiters.forEach((w) => w()); });
  const result = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    child,
    result,
    waitFor(re, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; stderr: ${stderr.slice(-2000)}`)), timeoutMs);
        const check = (): void => {
          if (re.test(stdout) || re.test(stderr)) {
            clearTimeout(timer);
            resolve();
          }
        };
        waiters.push(check);
        check();
        void result.then(() => { check(); });
      });
    },
  };
}

export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return startCli(args, env).result;
}

/** The final summary `run` or `replay` prints on stdout with JSON logs (the default in a pipe): one JSON line. */
export interface Summary {
  msg: 'run summary' | 'replay summary';
  records: number;
  events: number;
  objects: number;
  quarantined: number;
  duplicates: number;
  eventsUnder: string;
  checkpoint: string;
  stopped: boolean;
  abandoned: boolean;
  note?: string;
  inputsFinished?: number;
  inputsSkipped?: number;
}

/** Parses the summary from a CLI's stdout, which must be exactly that one JSON line. */
export function summaryOf(stdout: string): Summary {
  const lines = stdout.split('\n').filter((l) => l !== '');
  if (lines.length !== 1) throw new Error(`expected the summary as one line on stdout, got ${lines.length}:\n${stdout}`);
  const s = JSON.parse(lines[0]!) as Summary;
  if (s.msg !== 'run summary' && s.msg !== 'replay summary') throw new Error(`not a summary: ${lines[0]}`);
  return s;
}
