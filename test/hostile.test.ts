// Hostile input on a real broker's reserved port, from the neighbouring host's namespace, while
// containers on the two hosts keep talking: garbage, stalled and trickling headers and silent
// connections are closed and counted, and the containers' connections are never held up.
import path from 'node:path';
import test from 'ava';
import { ECHO_SERVER, echoRun, PY } from './lib/apps.js';
import { checkHandedOff, handoffSnapshot } from './lib/handoff.js';
import { repoRoot } from '../common/paths.js';
import { Topology } from '../lab/topology.js';

const FLOOD = path.join(repoRoot(), 'test', 'apps', 'flood.py');
const PORT = 7000;
let topo: Topology;

test.before(async () => {
  topo = await Topology.create({ containers: [1, 1] });
  topo.spawn(topo.container('c2'), [PY, ECHO_SERVER, String(PORT)]);
  await topo.waitPort(topo.container('c2'), PORT);
  await topo.waitListener(topo.container('c2').ip, PORT);
});

test.after.always(async () => {
  await topo?.destroy();
});

interface FloodResult {
  closed_by_peer: number;
  still_open: number;
  connect_errors: number;
  seconds: number;
}

function flood(mode: string, count: number, holdS: number) {
  const [h1, h2] = topo.hosts;
  return topo.hostExec(h1, [PY, FLOOD, h2.ip, String(topo.port), h1.ip, String(count), mode, String(holdS)]).then((r) => {
    if (r.exitCode !== 0) throw new Error(`flood.py ${mode} failed (${r.exitCode}): ${r.stderr}`);
    return JSON.parse(r.stdout) as FloodResult;
  });
}

test.serial('garbage, stalled, trickling and silent connections are closed and counted while containers are served', async (t) => {
  const h2 = topo.hosts[1];
  const k0 = await topo.counters(h2);
  const before = await handoffSnapshot(topo);
  const floods = Promise.all([flood('garbage', 100, 8), flood('partial', 100, 8), flood('slow', 50, 8), flood('silent', 100, 2)]);
  // Meanwhile the containers' own connections (half of them made while the flood is on).
  await new Promise((r) => setTimeout(r, 500));
  const t0 = Date.now();
  const run = await echoRun(topo, topo.container('c1'), topo.container('c2').ip, PORT, 40);
  const echoMs = Date.now() - t0;
  const [garbage, partial, slow, silent] = await floods;
  t.deepEqual(run.errors, [], 'every container connection worked during the flood');
  t.is(run.results.length, 40);
  t.true(run.results.every((x) => x.echo_ok));
  t.log(`40 container connections in ${echoMs} ms during the flood`);
  await checkHandedOff(t, topo, before, 40);

  t.deepEqual(garbage, { ...garbage, closed_by_peer: 100, still_open: 0, connect_errors: 0 }, 'garbage: all closed by the broker');
  t.true(garbage.seconds < 5, `garbage closed within ${garbage.seconds} s`);
  // A header has 5 s from accept, however it trickles.
  t.deepEqual(partial, { ...partial, closed_by_peer: 100, still_open: 0 }, 'stalled headers: all closed at the deadline');
  t.deepEqual(slow, { ...slow, closed_by_peer: 50, still_open: 0 }, 'trickling headers: all closed at the deadline');
  t.true(
    partial.seconds >= 4.5 && partial.seconds < 8 && slow.seconds >= 4.5 && slow.seconds < 8,
    `deadlines: ${partial.seconds} s, ${slow.seconds} s`,
  );
  t.is(silent.connect_errors, 0);

  let k1 = k0;
  await topo.waitFor(
    async () => {
      k1 = await topo.counters(h2);
      return k1.pending_headers === 0 && k1.header_errors - k0.header_errors >= 250;
    },
    10_000,
    'the counts to settle',
  );
  t.is(k1.header_errors - k0.header_errors, 250, 'header errors: 100 garbage + 100 stalled + 50 trickling');
  t.is(k1.pending_headers, 0, 'nothing left waiting');
  t.is(k1.handed_in - k0.handed_in, 40, "only the containers' connections were handed in");
  t.true(topo.hosts[1].daemon?.exitCode === null, 'the broker still runs');
});
