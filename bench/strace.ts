// Syscall counting with strace for `--profile`: a command run under `strace -f -c`, or
// `strace -f -c -p` attached to a running process (-f: all its threads, e.g. a broker's engine
// thread besides Node's own), and the summary strace prints when it ends or detaches (SIGINT).
import fs from 'node:fs';
import { execa, type ResultPromise } from 'execa';

export interface SyscallRow {
  name: string;
  calls: number;
  errors: number;
}

export interface StraceSummary {
  calls: number;
  errors: number;
  /** by calls, most first */
  syscalls: SyscallRow[];
}

export class StraceMissing extends Error {}

/** Throws StraceMissing (naming the package) unless strace can be run. */
export async function requireStrace(): Promise<void> {
  const r = await execa('strace', ['-V'], { reject: false, timeout: 10_000 });
  if (r.exitCode !== 0) {
    throw new StraceMissing(
      '--profile counts syscalls with strace, which is not installed: install the Debian package "strace" (listed in ci/packages.txt), e.g. apt-get install strace',
    );
  }
}

/**
 * Parses `strace -c` output (any -U column choice). Column extents come from the dashed rule
 * under the header, since an empty "errors" cell leaves no token to split on. Several tables
 * (one per personality, e.g. 32-bit calls) are summed; the "total" lines are checked against the rows.
 */
export function parseStraceSummary(text: string): StraceSummary {
  const lines = text.split('\n');
  const byName = new Map<string, SyscallRow>();
  let tables = 0;
  let total: { calls: number; errors: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*(% time\s+)?.*\bcalls\b.*\bsyscall\s*$/.test(lines[i]) || !/^[- ]+$/.test(lines[i + 1] ?? '')) continue;
    tables++;
    const head = lines[i];
    const cols: { name: string; from: number; to: number }[] = [];
    for (const m of lines[i + 1].matchAll(/-+/g)) {
      const from = m.index!;
      const to = from + m[0].length;
      cols.push({ name: head.slice(from, to).trim(), from, to });
    }
    const at = (name: string) => cols.findIndex((c) => c.name === name);
    const [ci, ei, ni] = [at('calls'), at('errors'), at('syscall')];
    if (ci < 0 || ni < 0) throw new Error(`strace summary without a calls or syscall column: ${head.trim()}`);
    // a cell is the text under its rule; the last column (the name) runs to the end of the line
    const cell = (line: string, k: number) => line.slice(k === 0 ? 0 : cols[k - 1].to, k === cols.length - 1 ? undefined : cols[k].to).trim();
    for (i += 2; i < lines.length; i++) {
      const line = lines[i];
      if (/^[- ]+$/.test(line)) continue; // the rule above "total"
      if (line.trim() === '') break;
      const name = cell(line, ni);
      const calls = Number(cell(line, ci));
      const errors = ei >= 0 ? Number(cell(line, ei) || 0) : 0;
      if (!name || !Number.isFinite(calls) || !Number.isFinite(errors)) throw new Error(`unreadable strace summary line: ${line}`);
      if (name === 'total') {
        total = { calls: (total?.calls ?? 0) + calls, errors: (total?.errors ?? 0) + errors };
        break;
      }
      const row = byName.get(name) ?? { name, calls: 0, errors: 0 };
      row.calls += calls;
      row.errors += errors;
      byName.set(name, row);
    }
  }
  const syscalls = [...byName.values()].sort((a, b) => b.calls - a.calls || a.name.localeCompare(b.name));
  const calls = syscalls.reduce((n, r) => n + r.calls, 0);
  const errors = syscalls.reduce((n, r) => n + r.errors, 0);
  if (tables === 0) {
    // strace prints only the header when it saw no call at all; anything else is not a summary
    if (text.trim() === '') return { calls: 0, errors: 0, syscalls: [] };
    throw new Error(`no strace summary in: ${text.trim().slice(0, 200)}`);
  }
  if (total && (total.calls !== calls || total.errors !== errors))
    throw new Error(`strace summary rows add up to ${calls} calls, its total says ${total.calls}`);
  return { calls, errors, syscalls };
}

/** The argv prefix that runs a command under strace, counting, its summary in file. */
export function straceCommand(file: string): string[] {
  return ['strace', '-f', '-c', '-o', file];
}

export function readSummary(file: string): StraceSummary {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new Error(`strace wrote no summary to ${file}`);
  }
  return parseStraceSummary(text);
}

export interface Attached {
  pid: number;
  /** Detaches (SIGINT) and returns the summary; SIGKILL and an error after timeoutMs. */
  detach(timeoutMs?: number): Promise<StraceSummary>;
  /** For cleanup on failure: ends strace now (the kernel detaches it from the process). */
  kill(): void;
}

/**
 * Attaches `strace -f -c -p pid` and resolves once strace says it attached (every thread is then
 * traced); bounded by timeoutMs. adopt lets the lab's cleanup end strace too.
 */
export async function attach(pid: number, file: string, adopt: (child: ResultPromise) => void, timeoutMs = 10_000): Promise<Attached> {
  fs.rmSync(file, { force: true });
  const child = execa('strace', ['-f', '-c', '-p', String(pid), '-o', file], { reject: false, stdin: 'ignore', buffer: true, cleanup: true });
  adopt(child);
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(`strace did not attach to ${pid} within ${timeoutMs} ms`), timeoutMs);
    const fail = (msg: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${msg}${stderr ? `: ${stderr.trim().slice(0, 300)}` : ''}`));
    };
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/attached/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.then(
      (r) => fail(`strace exited (${r.exitCode ?? r.signal}) before attaching to ${pid}`),
      () => {},
    );
  });
  return {
    pid,
    kill: () => child.kill('SIGKILL'),
    async detach(limitMs = 10_000) {
      child.kill('SIGINT');
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        child.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), limitMs);
        }),
      ]);
      clearTimeout(timer);
      if (late) {
        child.kill('SIGKILL');
        await child;
        throw new Error(`strace on ${pid} did not detach within ${limitMs} ms`);
      }
      return readSummary(file);
    },
  };
}
