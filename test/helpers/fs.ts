import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

export function tempDir(prefix = 'aap-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Every file below dir, as paths relative to it, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

/** Decompresses a .json.zst file with the zstd CLI into its text; throws if it is not valid UTF-8. */
export async function readZstdText(path: string): Promise<string> {
  const r = spawnSync('zstd', ['-dc'], { input: await readFile(path), maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd -dc ${path}: ${r.stderr.toString()}`);
  // Fatal decoding: Buffer#toString would hide invalid bytes behind U+FFFD.
  return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(r.stdout);
}

/** Decompresses a .json.zst file with the zstd CLI and parses each line. */
export async function readZstdFile(path: string): Promise<unknown[]> {
  const text = await readZstdText(path);
  if (text === '') return [];
  assertEndsWithNewline(text, path);
  return text.slice(0, -1).split('\n').map((l, i) => {
    try {
      return JSON.parse(l) as unknown;
    } catch {
      throw new Error(`${path} line ${i + 1} is not JSON`);
    }
  });
}

function assertEndsWithNewline(text: string, path: string): void {
  if (!text.endsWith('\n')) throw new Error(`${path} does not end with a newline`);
}
