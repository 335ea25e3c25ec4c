/**
 * Structured logs: one JSON object per line on stderr (`--log-format json`), or a short readable
 * line (`pretty`, the default on a TTY). Callers pass fields, never secrets: nothing here knows
 * the API key, and error fields carry messages only.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  /** Logs `msg`, with optional structured `fields`, at level debug. */
  debug(msg: string, fields?: Record<string, unknown>): void;
  /** Logs `msg`, with optional structured `fields`, at level info. */
  info(msg: string, fields?: Record<string, unknown>): void;
  /** Logs `msg`, with optional structured `fields`, at level warn. */
  warn(msg: string, fields?: Record<string, unknown>): void;
  /** Logs `msg`, with optional structured `fields`, at level error. */
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  /** Lowest level written. Default `info`. */
  level?: LogLevel;
  /** `json` (one object per line) or `pretty`. Default: `pretty` on a TTY, else `json`. */
  format?: 'json' | 'pretty';
  /** Where lines go. Default process.stderr. */
  stream?: { write(s: string): unknown; isTTY?: boolean };
  /**
   * Secrets to blank out of every line, whatever field or message carries them: a last line of
   * defence (callers already never log them). Values shorter than 8 characters are ignored.
   */
  redact?: readonly (string | undefined)[];
}

/** Replaces every occurrence of each secret (≥ 8 characters) in `text` with `[redacted]`. */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s !== undefined && s.length >= 8) out = out.split(s).join('[redacted]');
  return out;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const min = RANK[options.level ?? 'info'];
  const format = options.format ?? (stream.isTTY === true ? 'pretty' : 'json');
  const secrets = (options.redact ?? []).filter((s): s is string => s !== undefined && s.length >= 8);
  // A secret inside a JSON string may appear escaped; blank the escaped form too.
  const forms = [...secrets, ...secrets.map((s) => JSON.stringify(s).slice(1, -1))];
  const emit = (line: string): void => {
    stream.write(forms.length === 0 ? line : redactSecrets(line, forms));
  };
  const write = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (RANK[level] < min) return;
    const time = new Date().toISOString();
    if (format === 'json') {
      emit(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
    } else {
      const extra = fields === undefined ? '' : Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('');
      emit(`${time.slice(11, 19)} ${level.toUpperCase().padEnd(5)} ${msg}${extra}\n`);
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
