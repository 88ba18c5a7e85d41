// Sanitizer builds (ASan + UBSan) write a report file per process into log_path's directory: the
// test passes only when there is none, and shows the start of them when there are.
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';

export function noSanitizerReports(t: ExecutionContext, dir: string, prefix: string): void {
  const reports = fs.readdirSync(dir).filter((f) => f.startsWith(prefix));
  const text = reports.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n');
  t.deepEqual(reports, [], text.slice(0, 3000));
}
