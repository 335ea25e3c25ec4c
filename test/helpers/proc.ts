/** Processes and waits for tests: children from /proc, and waiting for a condition. */
import { readdirSync, readFileSync } from 'node:fs';

/** `pid (comm) state ppid pgrp ...` of /proc/PID/stat, or undefined when the process is gone. */
export function procStat(pid: number): { comm: string; state: string; ppid: number; pgrp: number; startTime: string } | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may hold spaces and parentheses: it ends at the last ')'.
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, close), state: fields[0]!, ppid: Number(fields[1]), pgrp: Number(fields[2]), startTime: fields[19]! };
}

/** Live (not zombie) child processes of `parent` named `comm`. */
export function childProcesses(parent: number, comm: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = procStat(Number(entry));
    if (s !== undefined && s.ppid === parent && s.comm === comm && s.state !== 'Z') out.push(Number(entry));
  }
  return out;
}

/**
 * Resolves once `check()` is true; polls every 20 ms. Rejects with `what` after `timeoutMs`: a
 * limit far above what the condition needs, there only so a broken build fails instead of hanging.
 */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
