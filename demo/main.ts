// `npm run demo`: two emulated hosts, a broker on each, a server container on one host and a client
// container on the other; the client's connections run on SlimFast, then the same workload runs over
// the host network and over a kernel VXLAN overlay, side by side. Everything is removed at the end,
// also on Ctrl-C.
import { interleaved, PATHS, type PathSummary, median, startServers } from '../bench/measure.js';
import { Topology } from '../lab/topology.js';

const ROUNDS = Number(process.env.SLIMFAST_DEMO_ROUNDS ?? 3);
const SECONDS = Number(process.env.SLIMFAST_DEMO_SECONDS ?? 2);

function step(msg: string): void {
  process.stdout.write(`\x1b[1m==>\x1b[0m ${msg}\n`);
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('demo: run as root (it creates network namespaces); see README.md');
    return 1;
  }
  let topo: Topology | undefined;
  const cleanup = async () => {
    if (topo) {
      step('cleaning up namespaces, brokers and processes');
      await topo.destroy();
      topo = undefined;
    }
  };
  const onSignal = () => {
    process.stdout.write('\ninterrupted\n');
    cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    step('creating two emulated hosts (network namespaces joined by a veth pair, VXLAN overlay between their bridges)');
    topo = await Topology.create({ containers: [1, 1] });
    for (const h of topo.hosts) step(`host ${h.ns}: underlay ${h.ip}, container subnet ${h.subnet}, broker on ${h.ip}:${topo.port}`);
    const c1 = topo.container('c1');
    const c2 = topo.container('c2');
    step(`containers: c1 ${c1.ip} on host 1 (client), c2 ${c2.ip} on host 2 (server), both registered with their broker`);
    await startServers(topo);
    step('echo servers up in c2 (one on SlimFast, one plain for the VXLAN baseline) and on host 2');

    const vxBefore = await topo.overlayPackets(topo.hosts[0]);
    const cBefore = await topo.counters(topo.hosts[0]);
    step(`measuring connect / 16-byte echo / close, ${ROUNDS} interleaved rounds of ${SECONDS} s per path`);
    const summary = await interleaved(topo, ROUNDS, ['-t', String(SECONDS), '-n', '200000'], (round, which, r) => {
      process.stdout.write(`    round ${round}  ${which.padEnd(8)} ${r.rate.toFixed(0).padStart(7)} conn/s  connect p50 ${r.connect_p50_us.toFixed(0).padStart(4)} µs${r.errors ? `  errors ${r.errors}` : ''}\n`);
    });
    const cAfter = await topo.counters(topo.hosts[0]);
    const vxAfter = await topo.overlayPackets(topo.hosts[0]);
    printTable(summary);
    const vxPackets = vxAfter.tx - vxBefore.tx;
    step(`host 1 broker handed ${cAfter.handed_out - cBefore.handed_out} SlimFast connections to c1; ` +
      `VXLAN device carried ${vxPackets} packets in all (the VXLAN rounds only)`);
    return 0;
  } catch (err) {
    console.error(`demo failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

function printTable(summary: PathSummary[]): void {
  const by = Object.fromEntries(summary.map((s) => [s.path, s])) as Record<(typeof PATHS)[number], PathSummary>;
  const rate = (p: (typeof PATHS)[number]) => median(by[p].rate);
  console.log('\n  path       conn/s   vs host  vs VXLAN  connect p50  echo p50');
  for (const p of PATHS) {
    console.log(
      `  ${p.padEnd(9)} ${rate(p).toFixed(0).padStart(7)}   ${(rate(p) / rate('host')).toFixed(2).padStart(5)}x   ${(rate(p) / rate('vxlan')).toFixed(2).padStart(5)}x` +
        `   ${median(by[p].connectP50).toFixed(0).padStart(6)} µs  ${median(by[p].rttP50).toFixed(0).padStart(5)} µs`,
    );
  }
  console.log('  (medians of the rounds; one client; ratios taken in this run)\n');
}

main().then((code) => process.exit(code));
