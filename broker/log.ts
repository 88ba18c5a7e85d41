// Minimal leveled logger: JSON lines when stderr is not a terminal, plain text when it is.
const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

export class Logger {
  private readonly min: number;
  constructor(level: string, private readonly json = !process.stderr.isTTY) {
    const idx = LEVELS.indexOf(level as Level);
    if (idx < 0) throw new Error(`unknown log level "${level}"; use one of ${LEVELS.join(', ')}`);
    this.min = idx;
  }
  private write(level: Level, msg: string): void {
    if (LEVELS.indexOf(level) < this.min) return;
    const time = new Date().toISOString();
    process.stderr.write(this.json ? JSON.stringify({ time, level, msg }) + '\n' : `${time} ${level.padEnd(5)} ${msg}\n`);
  }
  debug(msg: string): void {
    this.write('debug', msg);
  }
  info(msg: string): void {
    this.write('info', msg);
  }
  warn(msg: string): void {
    this.write('warn', msg);
  }
  error(msg: string): void {
    this.write('error', msg);
  }
}
