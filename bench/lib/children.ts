/** Forking the fixture and pipeline children (see fixture-child.ts, pipeline-child.ts) and talking to them. */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FixtureReady, FixtureStart, FixtureStats } from './fixture-child.js';
import type { ChildJob, ChildReport } from './pipeline-child.js';
import type { Digest } from './digest.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The SDK's Node-20 upgrade notice, once per child, says nothing about the run (bin.ts does the same). */
const env = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };

/** A child that dies mid-request closes the IPC channel; that surfaces through `exit`, not as a crash of the bench. */
function quietIpc(child: ChildProcess): ChildProcess {
  child.on('error', () => {});
  return child;
}

function once<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: T): void => {
      child.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      child.off('message', onMessage);
      reject(new Error(`${what} exited (${code ?? signal}) before answering`));
    };
    child.once('message', onMessage);
    child.once('exit', onExit);
  });
}

export interface Fixture {
  ready: FixtureReady;
  stats(): Promise<FixtureStats>;
  resetStats(): Promise<void>;
  /** The digest of the events the objects must hold (see digest.ts). */
  digest(): Promise<Digest>;
  close(): Promise<void>;
}

/** Forks the fixture process and waits until its simulator (and S3 endpoint) listen. */
export async function startFixture(start: FixtureStart): Promise<Fixture> {
  // The simulator's record slabs live outside the V8 heap; the ground truth for the s3 scenario's
  // digest parses every record, which at 1M+ events needs more than the default heap limit.
  const child = quietIpc(fork(path.join(here, 'fixture-child.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env, execArgv: ['--max-old-space-size=16384'] }));
  const answer = once<FixtureReady>(child, 'the fixture process');
  child.send(start);
  const ready = await answer;
  return {
    ready,
    stats: () => {
      const p = once<FixtureStats>(child, 'the fixture process');
      child.send('stats');
      return p;
    },
    digest: () => {
      const p = once<Digest>(child, 'the fixture process');
      child.send('digest');
      return p;
    },
    resetStats: async () => {
      const p = once<string>(child, 'the fixture process');
      child.send('resetStats');
      await p;
    },
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.send('close');
      await exited;
    },
  };
}

/** Runs one pipeline in a fresh process (Node's defaults; `cpuProfileDir`: with `--cpu-prof`) and returns its report. */
export async function runChild(job: ChildJob, options: { cpuProfileDir?: string } = {}): Promise<ChildReport> {
  const execArgv = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir];
  const child = quietIpc(fork(path.join(here, 'pipeline-child.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env }));
  const report = once<ChildReport>(child, 'the pipeline process');
  child.send(job);
  const r = await report;
  await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
  return r;
}
