// Runs every preload behaviour test program (native/preload/tests/t_*.c) under LD_PRELOAD inside a
// container of a two-host topology, against a SlimFast echo server on the other host.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PRELOAD_TESTS } from './lib/apps.js';
import { Topology } from '../lab/topology.js';

const programs = fs.existsSync(PRELOAD_TESTS)
  ? fs.readdirSync(PRELOAD_TESTS).filter((f) => /^t_[a-z0-9_]+$/.test(f)).sort()
  : [];

let topo: Topology;
let env: Record<string, string>;

test.before(async () => {
  topo = await Topology.create({ containers: [1, 1] });
  const c2 = topo.container('c2');
  topo.spawn(c2, [path.join(PRELOAD_TESTS, 'echo_server'), '9000']);
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

test('the preload test programs are built', (t) => {
  t.true(programs.length >= 10, `found ${programs.length} programs in ${PRELOAD_TESTS}; run "make -C native/preload tests"`);
});

for (const prog of programs) {
  test.serial(`preload: ${prog.slice(2).replace(/_/g, ' ')}`, async (t) => {
    const r = await topo.exec(topo.container('c1'), [path.join(PRELOAD_TESTS, prog)], { env, timeout: 30_000 });
    const out = `${r.stdout}\n${r.stderr}`.trim();
    if (r.exitCode === 77) {
      t.log(`skipped: ${out}`);
      t.pass();
      return;
    }
    t.is(r.exitCode, 0, out);
  });
}
