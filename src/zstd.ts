/**
 * The `zstd` CLI as a Duplex stream, through simple-zstd's ProcessDuplex, loaded only when a
 * stream needs it.
 *
 * Loading: simple-zstd's entry point looks for `zstd` when it is imported and throws (with a
 * stack trace) if it is not there, so importing it at the top of a module would break every
 * command, `--help` included, on a machine without zstd. Only its ProcessDuplex (the stream over
 * a child process) is used, imported on first use, after `findZstd` found the binary; without
 * one, `requireZstd` says in one line what is missing and how to install it.
 *
 * Signals: a graceful stop completes the objects zstd is compressing, so zstd must not die of the
 * stop signal. A terminal's Ctrl-C, `kill -- -PGID`, GNU timeout and container inits signal the
 * whole process group: zstd starts in a group (a session) of its own. systemd's default
 * `KillMode=control-group` signals every process of the service's cgroup, whatever its group: zstd
 * starts with SIGINT and SIGTERM ignored (`sh` sets them to be ignored, which survives its exec of
 * zstd). zstd still ends with this process: its stdin closes (and SIGKILL, or a destroyed
 * stream's SIGKILL after 1 s, ends it regardless).
 *
 * A signal that comes while the child is being started (after the fork, before its own session
 * and the ignored signals are in place) still kills it: a child is used only once `sh` has
 * reported, on a pipe of its own (fd 3), that the signals are ignored; one that dies before that
 * is started again (up to START_ATTEMPTS times). No byte has been written to it by then, so
 * nothing is lost.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { ConfigError } from './errors.js';

/** What simple-zstd's ProcessDuplex takes (simple-zstd/dist/src/process-duplex.d.ts). */
interface ProcessDuplexOptions {
  command: string;
  args: string[];
  spawnOptions?: SpawnOptions;
  nonZeroExitPolicy?: boolean;
  spawnProcess?: (command: string, args: string[], options?: SpawnOptions) => ChildProcess;
}
type ProcessDuplexClass = new (options: ProcessDuplexOptions) => Duplex;

let loaded: Promise<ProcessDuplexClass> | undefined;

/** How to get zstd, for the one-line error. */
const INSTALL_HINT = 'install it (Debian/Ubuntu: apt-get install zstd; RHEL/Fedora: dnf install zstd; Alpine: apk add zstd; macOS: brew install zstd)';

/** The path of an executable `zstd` on `PATH`, or undefined. */
export function findZstd(path: string | undefined = process.env['PATH']): string | undefined {
  for (const dir of (path ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'zstd');
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The path of `zstd`; ConfigError, in one line naming zstd and how to install it, when it is not on PATH. */
export function requireZstd(): string {
  const path = findZstd();
  if (path === undefined) throw new ConfigError(`the zstd command is not on the PATH (objects are compressed with it): ${INSTALL_HINT}`);
  return path;
}

function load(): Promise<ProcessDuplexClass> {
  // A CommonJS module: its `exports.default` is the class (Node hands ESM the exports object).
  loaded ??= import('simple-zstd/dist/src/process-duplex.js').then((m) => {
    const d = m.default as unknown as ProcessDuplexClass | { default: ProcessDuplexClass };
    return typeof d === 'function' ? d : d.default;
  });
  return loaded;
}

/** How often a zstd child that died while starting (a stop signal in the fork window) is started again. */
const START_ATTEMPTS = 10;

/**
 * Starts `command args` with SIGINT and SIGTERM ignored, in a session of its own (see the
 * header), and resolves once `sh` has ignored them: it writes one byte to fd 3 and execs the
 * command with fd 3 closed. Undefined when the child died (or failed to start) before that.
 */
function startIgnoringStopSignals(command: string, args: string[]): Promise<ChildProcess | undefined> {
  const child = spawn('/bin/sh', ['-c', 'trap "" INT TERM; printf r >&3; exec "$0" "$@" 3>&-', command, ...args], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  return new Promise((resolve) => {
    const ready = child.stdio[3] as Readable;
    const settle = (value: ChildProcess | undefined): void => {
      ready.off('data', onReady);
      child.off('exit', onGone);
      child.off('error', onGone);
      ready.destroy();
      resolve(value);
    };
    const onReady = (): void => settle(child);
    // 'exit', not 'close': nothing reads its stdout yet, so 'close' would wait for ever.
    const onGone = (): void => {
      child.on('error', () => {});
      for (const s of [child.stdin, child.stdout, child.stderr]) s?.destroy();
      settle(undefined);
    };
    ready.once('data', onReady);
    child.once('exit', onGone);
    child.once('error', onGone);
  });
}

async function zstdProcess(args: string[]): Promise<Duplex> {
  const path = requireZstd();
  const ProcessDuplex = await load();
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const child = await startIgnoringStopSignals(path, args);
    if (child !== undefined) return new ProcessDuplex({ command: path, args, nonZeroExitPolicy: true, spawnProcess: () => child });
  }
  throw new Error(`zstd (${path}) could not be started: it exited before it was ready, ${START_ATTEMPTS} times`);
}

/** A `zstd -c -LEVEL` process as a Duplex: bytes in, one zstd frame out; an error if zstd fails. */
export function zstdCompress(level: number, zstdOptions: string[] = []): Promise<Duplex> {
  return zstdProcess(['-zc', `-${level}`, ...zstdOptions]);
}

/** A `zstd -dc` process as a Duplex: zstd frames in, their bytes out; an error if the input is corrupt or cut short. */
export function zstdDecompress(): Promise<Duplex> {
  return zstdProcess(['-dc']);
}
