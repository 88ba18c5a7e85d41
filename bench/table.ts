// `node dist/bench/table.js [bench/results/latest.json]`: prints a run's results as the Markdown
// block that bench/README.md keeps (header line, table, notes).
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../common/paths.js';
import { markdownBudgetTable, markdownSyscallTable } from './budget.js';
import { type BenchResults, markdownBrokerCpuTable, markdownCpuTable, markdownTable } from './report.js';

const file = process.argv[2] ?? path.join(repoRoot(), 'bench', 'results', 'latest.json');
const res = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults;
const minutes = (res.duration_s / 60).toFixed(1);
console.log(
  `${res.date.slice(0, 10)}, commit ${res.commit ?? '?'}${res.dirty ? ' with uncommitted changes' : ''}, ${res.mode} run: ` +
    `${res.settings.rounds} interleaved rounds, ${minutes} min; ${res.machine.cpus} vCPUs (${res.machine.cpu_model}), kernel ${res.machine.kernel}; ` +
    `hosts pinned: ${res.settings.pinned}.\n`,
);
console.log(markdownTable(res));
console.log("\nCPU over the whole run (all rounds' CPU time over all rounds' operations):\n");
console.log(markdownCpuTable(res));
console.log("\nBroker CPU per handed-off connection (each host's engine thread, SlimFast samples):\n");
console.log(markdownBrokerCpuTable(res));
if (res.profile) {
  console.log(
    `\nPer-connection budget (${res.profile.workload}; syscalls: strace -f -c over ${res.profile.traced_connections} connections, client start-up taken out; CPU: the samples above, without strace; client µs: connrate's timing):\n`,
  );
  console.log(markdownBudgetTable(res.profile));
  console.log('\nSyscalls per connection, per process (the calls made at least 0.05 times per connection on some path):\n');
  console.log(markdownSyscallTable(res.profile));
}
console.log('');
for (const n of res.notes) console.log(`- ${n}`);
for (const e of res.errors) console.log(`- error: ${e}`);
