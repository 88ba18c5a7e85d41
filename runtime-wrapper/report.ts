// Errors go where engines look for them: with --log FILE --log-format json, a runc-style JSON line
// appended to that file (containerd's shim and Docker read the last "error" line); otherwise stderr.
import fs from 'node:fs';
import type { GlobalOptions } from './args.js';

/**
 * Writes all of text to fd synchronously. process.stdout/stderr are never used: for a pipe Node would
 * switch the file description to non-blocking mode, and the engine's pipes are shared with runc and the
 * container.
 */
export function writeFd(fd: number, text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return; // nobody is listening
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

export function runcLogLine(level: 'error' | 'warning' | 'info', msg: string, now = new Date()): string {
  return `${JSON.stringify({ level, msg, time: now.toISOString() })}\n`;
}

/** stderr: text for the program's stderr (fd 2 here; the caller's, when the broker runs the edit). */
export function reportError(
  global: Pick<GlobalOptions, 'log' | 'logFormat'>,
  msg: string,
  stderr: (text: string) => void = (t) => writeFd(2, t),
): void {
  const text = `slimfast-runc: ${msg}`;
  if (global.log && global.logFormat === 'json') {
    try {
      fs.appendFileSync(global.log, runcLogLine('error', text));
      return;
    } catch (err) {
      stderr(`slimfast-runc: cannot write to --log ${global.log}: ${(err as Error).message}\n`);
    }
  }
  stderr(`${text}\n`);
}
