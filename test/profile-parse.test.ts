// The --profile pieces that need no lab: strace -c summaries (captured from strace 6.1) read into
// counts, the client's start-up taken out, and the budget's table lines.
import test from 'ava';
import { buildProfile, budgetRows, syscallRows } from '../bench/budget.js';
import type { PathName } from '../bench/measure.js';
import { perConnection, type TracedRun } from '../bench/profile.js';
import type { Sample } from '../bench/report.js';
import { parseStraceSummary } from '../bench/strace.js';

/** `strace -f -c -o FILE connrate 127.0.0.1 PORT -n 2000` against a local echod. */
const CLIENT_2000 = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 57.20    0.132968      132968         1           futex
 14.18    0.032956          16      2000           connect
 11.46    0.026643          13      2002           close
  5.85    0.013602           6      2000           recvfrom
  5.55    0.012899           6      2000           sendto
  3.34    0.007757           3      2000           socket
  2.18    0.005067           2      2000           setsockopt
  0.15    0.000349          38         9           mmap
  0.02    0.000038          38         1           clone3
  0.02    0.000035          35         1           write
  0.01    0.000028           7         4           mprotect
  0.01    0.000028          28         1           madvise
  0.01    0.000021          10         2           rseq
  0.01    0.000014           7         2           set_robust_list
  0.01    0.000013          13         1           arch_prctl
  0.00    0.000011          11         1           set_tid_address
  0.00    0.000009           1         5           rt_sigprocmask
  0.00    0.000008           8         1           munmap
  0.00    0.000006           6         1           sysinfo
  0.00    0.000006           2         3           newfstatat
  0.00    0.000004           1         3           brk
  0.00    0.000002           2         1           prlimit64
  0.00    0.000001           1         1           rt_sigaction
  0.00    0.000001           1         1           getrandom
  0.00    0.000000           0         1           read
  0.00    0.000000           0         2           pread64
  0.00    0.000000           0         1         1 access
  0.00    0.000000           0         1           execve
  0.00    0.000000           0         2           openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.232466          19     12048         1 total
`;

/** The same with -n 1: start-up and one connection. */
const CLIENT_1 = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
  0.00    0.000000           0         1           read
  0.00    0.000000           0         1           write
  0.00    0.000000           0         3           close
  0.00    0.000000           0         9           mmap
  0.00    0.000000           0         4           mprotect
  0.00    0.000000           0         1           munmap
  0.00    0.000000           0         3           brk
  0.00    0.000000           0         1           rt_sigaction
  0.00    0.000000           0         5           rt_sigprocmask
  0.00    0.000000           0         2           pread64
  0.00    0.000000           0         1         1 access
  0.00    0.000000           0         1           madvise
  0.00    0.000000           0         1           socket
  0.00    0.000000           0         1           connect
  0.00    0.000000           0         1           sendto
  0.00    0.000000           0         1           recvfrom
  0.00    0.000000           0         1           setsockopt
  0.00    0.000000           0         1           execve
  0.00    0.000000           0         1           arch_prctl
  0.00    0.000000           0         1           futex
  0.00    0.000000           0         1           set_tid_address
  0.00    0.000000           0         2           openat
  0.00    0.000000           0         3           newfstatat
  0.00    0.000000           0         2           set_robust_list
  0.00    0.000000           0         1           prlimit64
  0.00    0.000000           0         1           getrandom
  0.00    0.000000           0         2           rseq
  0.00    0.000000           0         1           clone3
------ ----------- ----------- --------- --------- ----------------
100.00    0.000000           0        53         1 total
`;

test('reads a default strace -c summary, empty errors cells included', (t) => {
  const s = parseStraceSummary(CLIENT_2000);
  t.is(s.calls, 12048);
  t.is(s.errors, 1);
  t.is(s.syscalls.length, 29);
  t.deepEqual(s.syscalls[0], { name: 'close', calls: 2002, errors: 0 });
  t.deepEqual(
    s.syscalls.find((r) => r.name === 'access'),
    { name: 'access', calls: 1, errors: 1 },
  );
  t.deepEqual(
    s.syscalls.find((r) => r.name === 'connect'),
    { name: 'connect', calls: 2000, errors: 0 },
  );
});

test('reads other column choices (-U) and sums the tables of several personalities', (t) => {
  const u = `    calls    errors syscall
--------- --------- ----------------
       38           mmap
       37        13 openat
--------- --------- ----------------
       75        13 total
System call usage summary for 32 bit mode:
    calls    errors syscall
--------- --------- ----------------
        2         1 openat
--------- --------- ----------------
        2         1 total
`;
  const s = parseStraceSummary(u);
  t.is(s.calls, 77);
  t.is(s.errors, 14);
  t.deepEqual(s.syscalls, [
    { name: 'openat', calls: 39, errors: 14 },
    { name: 'mmap', calls: 38, errors: 0 },
  ]);
});

test('an empty summary (no call while attached) is zero; anything else is an error', (t) => {
  t.deepEqual(parseStraceSummary(''), { calls: 0, errors: 0, syscalls: [] });
  t.throws(() => parseStraceSummary('strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n'), { message: /no strace summary/ });
  t.throws(() => parseStraceSummary(CLIENT_1.replace(/ 53 /, ' 54 ')), { message: /add up to 53 calls, its total says 54/ });
});

test('the client per connection: (C(n) - C(1)) / (n - 1) takes start-up out', (t) => {
  const b = perConnection(parseStraceSummary(CLIENT_2000), 1999, parseStraceSummary(CLIENT_1));
  // glibc's qsort of the 2000 latencies asks sysinfo once: what is left of a one-off
  t.deepEqual(Object.keys(b.calls).sort(), ['close', 'connect', 'recvfrom', 'sendto', 'setsockopt', 'socket', 'sysinfo']);
  for (const [name, x] of Object.entries(b.calls)) t.is(x, name === 'sysinfo' ? 1 / 1999 : 1, name);
  t.is(b.per_conn, 6 + 1 / 1999);
  t.is(b.errors_per_conn, 0);
  t.is(b.counted, 12048);
});

test('budget: CPU parts add up to the total, phases are medians, syscall lines per process', (t) => {
  const cpu = (client: number, server: number, b1: number, softirq: number) => ({
    tasks_s: server + b1 + 0.001,
    clients_s: client,
    softirq_s: softirq,
    total_s: client + server + b1 + 0.001 + softirq,
    steal_s: 0,
    idle_s: 0,
    wall_s: 1,
    processes: { server, broker1: b1, broker2: 0 },
  });
  const samples: Sample[] = (['host', 'vxlan', 'slimfast'] as const).flatMap((path, k) =>
    [1, 2].map((round) => ({
      round,
      order: 0,
      path,
      ops: 10_000,
      errors: 0,
      seconds: 1,
      metrics: { rate: 10_000, connect_p50: 10 + k, rtt_p50: 20, close_p50: round, cpu: 0 },
      cpu: cpu(0.5, 0.4, k === 2 ? 0.15 : 0, 0.6),
    })),
  );
  const sys = (client: Record<string, number>): TracedRun => {
    const b = (calls: Record<string, number>) => ({
      per_conn: Object.values(calls).reduce((a, x) => a + x, 0),
      errors_per_conn: 0,
      calls,
      counted: 1,
    });
    return { client: b(client), server: b({ recvfrom: 3, accept4: 2 }), broker1: b({}), broker2: b({ epoll_wait: 0.001 }) };
  };
  const traced = new Map<PathName, TracedRun | Error>([
    ['host', sys({ socket: 1, connect: 1 })],
    ['vxlan', new Error('strace did not attach')],
    ['slimfast', sys({ socket: 1, connect: 1, recvmsg: 1, getpid: 3 })],
  ]);
  const prof = buildProfile('conn-1', samples, traced, 2000);
  const sf = prof.paths.slimfast!;
  t.is(sf.cpu_connections, 20_000);
  t.is(Math.round(sf.cpu_us!.broker1), 15);
  t.is(Math.round(sf.cpu_us!.other), 0);
  const parts = (['client', 'server', 'broker1', 'broker2', 'other', 'softirq'] as const).reduce((a, k) => a + sf.cpu_us![k], 0);
  t.true(Math.abs(parts - sf.cpu_us!.total) < 1e-6);
  t.deepEqual(sf.phases_us, { connect_p50: 12, rtt_p50: 20, close_p50: 1.5, loop: 100 });
  t.is(prof.paths.vxlan!.error, 'strace did not attach');
  t.is(prof.paths.vxlan!.syscalls, undefined);

  const rows = budgetRows(prof);
  t.deepEqual(rows[0], ['syscalls', 'client (connrate)', '2.00', '–', '6.00', '+4.00', '–']);
  t.deepEqual(
    rows.find((r) => r[1] === 'host 1 broker' && r[0] === 'CPU µs'),
    ['CPU µs', 'host 1 broker', '0', '0', '15.0', '+15.0', '+15.0'],
  );
  const lines = syscallRows(prof);
  t.deepEqual(
    lines.find((r) => r[1] === 'getpid'),
    ['client (connrate)', 'getpid', '0', '–', '3.00', '+3.00', '–'],
  );
  // a broker's idle calls stay under the line threshold: summed as "the others"
  t.deepEqual(
    lines.filter((r) => r[0] === 'host 2 broker').map((r) => r[1]),
    ['(the others)'],
  );
  t.false(
    lines.some((r) => r[0] === 'host 1 broker'),
    'a process without calls gets no lines',
  );
});
