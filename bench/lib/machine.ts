/**
 * What the numbers were measured on: Node version, CPU, cores, load, commit and date.
 *
 * Bench numbers from different machines (or from this one on a busy afternoon) are not
 * comparable, which is why every scenario reports ratios against a baseline run in the same
 * process. This record is there so a reader can tell which machine and which code a results file
 * belongs to, not to normalise anything.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';

export interface Machine {
  node: string;
  cpu: string;
  cores: number;
  platform: string;
  /** Total memory, MiB. */
  memoryMiB: number;
  /** 1-minute load average when the run started: a hint of how noisy the machine was. */
  loadAvg1: number;
  /** Short commit of HEAD, or 'unknown' outside a git checkout. */
  commit: string;
  /**
   * True when src/ differs from `commit` (uncommitted changes to the measured code). Changes to
   * bench/ itself do not count: they do not change what is measured.
   */
  srcDirty: boolean;
  /** When the run started, ISO 8601 UTC. */
  date: string;
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

export function machine(now = new Date()): Machine {
  const cpus = os.cpus();
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  const status = commit === 'unknown' ? undefined : git(['status', '--porcelain', '--', 'src']);
  return {
    node: process.version,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    platform: `${process.platform}-${process.arch}`,
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    loadAvg1: Math.round(os.loadavg()[0]! * 100) / 100,
    commit,
    srcDirty: status !== undefined && status.length > 0,
    date: now.toISOString(),
  };
}

/** One line for the top of a report: `Node v20.20.2 · AMD EPYC · 2 cores · … · commit 44c8c68 · 2026-…`. */
export function machineLine(m: Machine): string {
  const commit = m.srcDirty ? `${m.commit} (src/ has uncommitted changes)` : m.commit;
  return [
    `Node ${m.node}`,
    m.cpu,
    `${m.cores} cores`,
    `${(m.memoryMiB / 1024).toFixed(0)} GiB`,
    m.platform,
    `load ${m.loadAvg1.toFixed(2)} at start`,
    `commit ${commit}`,
    m.date.replace(/\.\d{3}Z$/, 'Z'),
  ].join(' · ');
}
