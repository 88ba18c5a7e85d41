// Leveled logger on pino: one JSON object a line ({"level","time","msg", fields…}) when stderr is
// not a terminal, and the same records as plain text lines when it is.
import { pino, type DestinationStream } from 'pino';

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

/** Structured context of one line, e.g. { container: 'web' }; keys level, time and msg are taken. */
export type LogFields = Record<string, string | number | boolean | undefined>;

export interface LoggerOptions {
  /** JSON lines (default: when stderr is not a terminal). */
  json?: boolean;
  /** Where lines go (default: stderr, written synchronously). */
  dest?: { write(line: string): unknown };
}

const RESERVED = new Set(['level', 'time', 'msg']);

/** One JSON record as a human-readable line: `TIME LEVEL msg key=value …`. */
export function formatPretty(record: Record<string, unknown>): string {
  const { time, level, msg, ...rest } = record;
  const extra = Object.entries(rest)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      const s = typeof v === 'string' ? v : JSON.stringify(v);
      return `${k}=${/[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s}`;
    });
  return `${String(time)} ${String(level).padEnd(5)} ${String(msg ?? '')}${extra.length ? `  ${extra.join(' ')}` : ''}\n`;
}

/** A pino destination that turns each JSON line into formatPretty's text before passing it on. */
function prettyStream(out: { write(line: string): unknown }): DestinationStream {
  return {
    write(line: string) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      out.write(formatPretty(rec));
    },
  };
}

export class Logger {
  private readonly p: pino.Logger;
  constructor(level: string, opts: LoggerOptions | boolean = {}) {
    if (!LEVELS.includes(level as Level)) throw new Error(`unknown log level "${level}"; use one of ${LEVELS.join(', ')}`);
    const o = typeof opts === 'boolean' ? { json: opts } : opts;
    const json = o.json ?? !process.stderr.isTTY;
    let out: { write(line: string): unknown } | undefined = o.dest;
    if (!out) {
      const stderr = pino.destination({ fd: 2, sync: true });
      stderr.on('error', () => {}); // stderr gone (EPIPE): the broker goes on without its log
      out = stderr;
    }
    this.p = pino(
      {
        level,
        base: undefined,
        messageKey: 'msg',
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      (json ? out : prettyStream(out)) as DestinationStream,
    );
  }
  private write(level: Level, msg: string, fields?: LogFields): void {
    if (!fields) {
      this.p[level](msg);
      return;
    }
    const clean: LogFields = {};
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) clean[RESERVED.has(k) ? `${k}_` : k] = v;
    this.p[level](clean, msg);
  }
  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }
}
