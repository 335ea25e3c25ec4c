/**
 * The `zstd` CLI, through simple-zstd, loaded only when a stream needs it.
 *
 * simple-zstd looks for `zstd` when it is imported and throws (with a stack trace) if it is not
 * there, so importing it at the top of a module would break every command, `--help` included,
 * on a machine without zstd. It is imported on first use instead, after `findZstd` has said in
 * one line what is missing and how to install it.
 *
 * Every zstd process starts in a process group (a session) of its own. A terminal's Ctrl-C, and
 * systemd, `kill -- -PGID`, GNU timeout or a container's init signalling the whole group, would
 * otherwise reach zstd as well: it would die mid-object while this process is still completing
 * that object for a graceful stop. zstd still ends when this process does, because its input
 * pipe closes.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { ConfigError } from './errors.js';

type SimpleZstd = typeof import('simple-zstd');

let loaded: Promise<SimpleZstd> | undefined;

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

/** Throws ConfigError, in one line naming zstd and how to install it, when `zstd` is not on PATH. */
export function requireZstd(): void {
  if (findZstd() === undefined) throw new ConfigError(`the zstd command is not on the PATH (objects are compressed with it): ${INSTALL_HINT}`);
}

async function load(): Promise<SimpleZstd> {
  requireZstd();
  loaded ??= import('simple-zstd').catch((err: unknown) => {
    loaded = undefined;
    throw new ConfigError(`zstd cannot be used (${(err as Error).message}): ${INSTALL_HINT}`);
  });
  return loaded;
}

/** Spawn options for every zstd process: a process group of its own (see the header). */
const SPAWN = { detached: true } as const;

/** A `zstd -c -LEVEL` process as a Duplex: bytes in, one zstd frame out. */
export async function zstdCompress(level: number, zstdOptions: string[] = []): Promise<Duplex> {
  const zstd = await load();
  return zstd.compress(level, { zstdOptions, spawnOptions: SPAWN });
}

/** A `zstd -dc` process as a Duplex (input that is not zstd passes through unchanged). */
export async function zstdDecompress(): Promise<Duplex> {
  const zstd = await load();
  return zstd.decompress({ spawnOptions: SPAWN });
}
