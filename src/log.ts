/**
 * Structured logs: one JSON object per line on stderr (`--log-format json`), or a short readable
 * line (`pretty`, the default on a TTY). Callers pass fields, never secrets: nothing here knows
 * the API key, and error fields carry messages only.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  /** Lowest level written. Default `info`. */
  level?: LogLevel;
  /** `json` (one object per line) or `pretty`. Default: `pretty` on a TTY, else `json`. */
  format?: 'json' | 'pretty';
  /** Where lines go. Default process.stderr. */
  stream?: { write(s: string): unknown; isTTY?: boolean };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const min = RANK[options.level ?? 'info'];
  const format = options.format ?? (stream.isTTY === true ? 'pretty' : 'json');
  const write = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < min) return;
    const time = new Date().toISOString();
    if (format === 'json') {
      stream.write(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
    } else {
      const extra = fields === undefined ? '' : Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('');
      stream.write(`${time.slice(11, 19)} ${level.toUpperCase().padEnd(5)} ${msg}${extra}\n`);
    }
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
