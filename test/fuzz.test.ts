// Fuzz tests of the code that reads what arrives on the reserved port: the header reader on a real
// socket pair and the replay cache, and of the seccomp agent's parser of runc's container state
// (native/addon/tests/fuzz/), built with libFuzzer, AddressSanitizer and UBSan, each run for a
// bounded time from the seed corpus. A crash or a broken invariant fails.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';

const SECONDS = Number(process.env.SLIMFAST_FUZZ_SECONDS ?? 15);
const dir = path.join(repoRoot(), 'native', 'addon', 'tests', 'fuzz');
const targets: [string, string][] = [
  ['header_read', 'header_read.cc'],
  ['replay_cache', 'header_auth.cc'],
  ['seccomp_state', 'seccomp_state.cc'],
];

for (const [name, source] of targets) {
  test(`fuzz: ${name.replace('_', ' ')} (${SECONDS} s)`, async (t) => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `sf-fuzz-${name}-`));
    try {
      const bin = path.join(tmp, name);
      execFileSync(
        'clang++',
        [
          '-std=c++17',
          '-g',
          '-O1',
          '-fsanitize=fuzzer,address,undefined',
          '-fno-sanitize-recover=undefined',
          '-I',
          path.join(dir, '..', '..'),
          '-I',
          path.join(repoRoot(), 'native', 'include'),
          '-o',
          bin,
          path.join(dir, `${name}_fuzz.cc`),
          path.join(dir, '..', '..', source),
        ],
        { stdio: 'pipe' },
      );
      const found = path.join(tmp, 'corpus');
      fs.mkdirSync(found);
      const seeds = path.join(dir, 'corpus', name);
      // New inputs go to the first directory (a temp one); the seeds are only read.
      const r = await execa(
        bin,
        [`-max_total_time=${SECONDS}`, '-timeout=10', `-artifact_prefix=${tmp}/`, found, ...(fs.existsSync(seeds) ? [seeds] : [])],
        { reject: false, timeout: (SECONDS + 60) * 1000, env: { UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' } },
      );
      const runs = /Done (\d+) runs/.exec(r.stderr)?.[1];
      t.is(
        r.exitCode,
        0,
        `the fuzzer found a failing input:\n${r.stderr
          .split('\n')
          .filter((l) => !l.startsWith('#'))
          .slice(-30)
          .join('\n')}`,
      );
      t.truthy(runs, 'libFuzzer reported its runs');
      t.true(Number(runs) > 1000, `${runs} runs`);
      t.log(`${runs} runs in ${SECONDS} s`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}
