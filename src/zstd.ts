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
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Duplex } from 'node:stream';
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

/** Runs `command args` with SIGINT and SIGTERM ignored, in a session of its own (see the header). */
function spawnIgnoringStopSignals(command: string, args: string[], options?: SpawnOptions): ChildProcess {
  return spawn('/bin/sh', ['-c', 'trap "" INT TERM; exec "$0" "$@"', command, ...args], { ...options, detached: true });
}

async function zstdProcess(args: string[]): Promise<Duplex> {
  const path = requireZstd();
  const ProcessDuplex = await load();
  return new ProcessDuplex({ command: path, args, nonZeroExitPolicy: true, spawnProcess: spawnIgnoringStopSignals });
}

/** A `zstd -c -LEVEL` process as a Duplex: bytes in, one zstd frame out; an error if zstd fails. */
export function zstdCompress(level: number, zstdOptions: string[] = []): Promise<Duplex> {
  return zstdProcess(['-zc', `-${level}`, ...zstdOptions]);
}

/** A `zstd -dc` process as a Duplex: zstd frames in, their bytes out; an error if the input is corrupt or cut short. */
export function zstdDecompress(): Promise<Duplex> {
  return zstdProcess(['-dc']);
}
