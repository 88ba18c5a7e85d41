// The preload behaviour tests (native/preload/tests/t_*.c): every program runs under LD_PRELOAD
// inside a container of a two-host topology, against a SlimFast echo server on the other host.
// With `sanitized`, the programs and that echo server run under the sanitizer build
// (native/preload/tests/sanitize.sh: libslimfast-san.so behind ASan and UBSan) and any sanitizer
// report fails the test, whatever the exit code.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PRELOAD_TESTS } from './apps.js';
import { Topology } from '../../lab/topology.js';

const PRELOAD_DIR = path.dirname(path.dirname(PRELOAD_TESTS));
const SANITIZE_SH = path.join(PRELOAD_DIR, 'tests', 'sanitize.sh');
const SANITIZED_LIB = path.join(PRELOAD_DIR, 'libslimfast-san.so');
/** Lines a sanitizer report always has (ASan, LeakSanitizer, UBSan). */
const REPORT = /ERROR: (?:Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer/;

export function preloadSuite(opts: { sanitized: boolean }): void {
  const { sanitized } = opts;
  const label = sanitized ? 'preload (sanitized)' : 'preload';
  const wrap = (cmd: string[]) => (sanitized ? ['sh', SANITIZE_SH, ...cmd] : cmd);
  const programs = fs.existsSync(PRELOAD_TESTS)
    ? fs
        .readdirSync(PRELOAD_TESTS)
        .filter((f) => /^t_[a-z0-9_]+$/.test(f))
        .sort()
    : [];

  let topo: Topology;
  let env: Record<string, string>;
  let echoErr = '';

  test.before(async () => {
    if (sanitized && !fs.existsSync(SANITIZED_LIB)) return; // reported by the test below
    topo = await Topology.create({ containers: [1, 1] });
    const c2 = topo.container('c2');
    const echo = topo.spawn(c2, wrap([path.join(PRELOAD_TESTS, 'echo_server'), '9000']));
    echo.stderr?.on('data', (d: Buffer) => (echoErr += d.toString()));
    topo.spawn(c2, [path.join(PRELOAD_TESTS, 'echo_server'), '9001'], { slimfast: false });
    await topo.waitPort(c2, 9000);
    await topo.waitPort(c2, 9001);
    await topo.waitListener(c2.ip, 9000);
    env = {
      SF_TEST_SELF_IP: topo.container('c1').ip,
      SF_TEST_ECHO: `${c2.ip}:9000`,
      SF_TEST_CLOSED: `${c2.ip}:9999`,
      SF_TEST_PLAIN: `${c2.ip}:9001`,
    };
  });

  test.after.always(async () => {
    await topo?.destroy();
  });

  test(`${label}: the test programs are built`, (t) => {
    t.true(programs.length >= 10, `found ${programs.length} programs in ${PRELOAD_TESTS}; run "make -C native/preload tests"`);
    if (sanitized) t.true(fs.existsSync(SANITIZED_LIB), `${SANITIZED_LIB} is missing; run "make -C native/preload sanitize"`);
  });

  for (const prog of programs) {
    test.serial(`${label}: ${prog.slice(2).replace(/_/g, ' ')}`, async (t) => {
      if (!topo) t.fail('no sanitizer build');
      const r = await topo.exec(topo.container('c1'), wrap([path.join(PRELOAD_TESTS, prog)]), { env, timeout: 30_000 });
      const out = `${r.stdout}\n${r.stderr}`.trim();
      if (sanitized) t.false(REPORT.test(out), `sanitizer report:\n${out}`);
      if (r.exitCode === 77) {
        t.log(`skipped: ${out}`);
        t.pass();
        return;
      }
      t.is(r.exitCode, 0, out);
    });
  }

  if (sanitized) {
    test.serial(`${label}: the echo server reported nothing`, (t) => {
      t.false(REPORT.test(echoErr), `sanitizer report from the echo server:\n${echoErr}`);
    });
  }
}
