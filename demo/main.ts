// `npm run demo`: two emulated hosts with a broker each, and two real runc containers started through
// slimfast-runc — an echo server on host 2, a client on host 1. slimfast-hook registers them with their
// host's broker; the client's connections then run on SlimFast. The same connect / echo / close
// workload also runs over the kernel VXLAN overlay (container to container, without the preload) and
// host to host, interleaved, and a side-by-side table closes the run. Everything is removed at the
// end, also on Ctrl-C.
import path from 'node:path';
import { execa } from 'execa';
import { CONNRATE, type ConnrateResult, ECHOD, PATHS, PORTS as PORT, type PathName, type PathSummary, connrate, interleaved, median, parseConnrate } from '../bench/measure.js';
import type { HealthMsg } from '../broker/api-types.js';
import { installPaths } from '../broker/paths.js';
import { RuncLab, makeBundle, sweepStaleRunc } from '../lab/containers.js';
import { type Host, Topology } from '../lab/topology.js';

const ROUNDS = Number(process.env.SLIMFAST_DEMO_ROUNDS ?? 3);
const SECONDS = Number(process.env.SLIMFAST_DEMO_SECONDS ?? 2);
/** Container processes outlive nothing: a killed demo's leftovers end by themselves. */
const LIFETIME_S = 900;

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function step(msg: string): void {
  process.stdout.write(`${bold('==>')} ${msg}\n`);
}

/** Set on Ctrl-C: the signal handler cleans up and exits; main() only stops. */
let interrupted = false;

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('demo: run as root (it creates network namespaces and runc containers); see README.md');
    return 1;
  }
  let topo: Topology | undefined;
  // One cleanup, whoever asks first (main's finally or the signal handler); both wait for it.
  let cleaning: Promise<void> | undefined;
  const cleanup = () => {
    cleaning ??= (async () => {
      if (!topo) return;
      step('cleaning up: containers, brokers, namespaces');
      await topo.destroy();
    })();
    return cleaning;
  };
  // Kept installed (not `once`): execa's exit handler re-raises a signal that has no listener left,
  // which would kill the process before cleanup ends. A second Ctrl-C is ignored while cleaning up.
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    process.stdout.write('\ninterrupted\n');
    cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await sweepStaleRunc();
    step('creating two emulated hosts: network namespaces joined by a veth pair, a VXLAN overlay between their container bridges');
    topo = await Topology.create({ containers: [1, 1], register: false });
    const lab = new RuncLab(topo);
    const [h1, h2] = topo.hosts;
    for (const h of topo.hosts) step(`host ${h.index} (${h.ns}): underlay ${h.ip}, container subnet ${h.subnet}, broker on ${h.ip}:${topo.port}`);
    for (const h of topo.hosts) {
      const health = (await topo.status(h)).health as HealthMsg;
      step(`host ${h.index} broker: headers ${health.headerAuth === 'cluster key' ? `signed and checked with the cluster key (${health.clusterKeySource}, fingerprint ${health.clusterKeyFingerprint})` : health.headerAuth}`);
    }
    const c1 = topo.container('c1');
    const c2 = topo.container('c2');

    step('building a busybox root filesystem with the benchmark clients');
    const rootfs = { binaries: [ECHOD, CONNRATE], libraryDeps: [installPaths().preload] };
    const limit = ['/bin/timeout', '-s', 'KILL', String(LIFETIME_S)];
    const server = `${limit.join(' ')} /bin/env -u LD_PRELOAD ${ECHOD} ${PORT.vxlan} & exec ${limit.join(' ')} ${ECHOD} ${PORT.slimfast}`;
    const srvBundle = makeBundle(path.join(topo.dir, 'bundle-server'), { ...rootfs, args: ['/bin/sh', '-c', server], netns: c2.netnsPath });
    const cliBundle = makeBundle(path.join(topo.dir, 'bundle-client'), { ...rootfs, args: [...limit, '/bin/sleep', String(LIFETIME_S)], netns: c1.netnsPath });

    const srv = await lab.run(h2, 'server', srvBundle);
    step(`slimfast-runc run ${srv.id} on host 2: echo server at ${c2.ip}:${PORT.slimfast} on SlimFast, a plain one at :${PORT.vxlan}`);
    await topo.waitListener(c2.ip, PORT.slimfast, 15_000);
    const cli = await lab.run(h1, 'client', cliBundle);
    step(`slimfast-runc run ${cli.id} on host 1: the client (${c1.ip})`);
    for (const h of [h1, h2]) {
      const list = (await topo.registered(h)).map((c) => `${c.id} ${c.ip}`).join(', ') || 'none';
      step(`host ${h.index} broker: registered by slimfast-hook: ${list}`);
    }
    const hostServer = execa('ip', ['netns', 'exec', h2.ns, ...limit, ECHOD, String(PORT.host), h2.ip], { reject: false, cleanup: true });
    topo.adopt(hostServer);

    const args = ['-t', String(SECONDS), '-n', '200000'];
    let slimfastOverlayPackets = 0;
    const sample = async (which: PathName): Promise<ConnrateResult> => {
      if (which === 'host') return connrate(topo!, 'host', args);
      // runc exec into the client container; for the VXLAN baseline without the preload.
      const cmd = which === 'slimfast' ? [CONNRATE, c2.ip, String(PORT.slimfast), ...args] : ['/bin/env', '-u', 'LD_PRELOAD', CONNRATE, c2.ip, String(PORT.vxlan), ...args];
      const before = await topo!.overlayPackets(h1);
      const r = await lab.exec('client', cmd, { timeout: 120_000 });
      if (r.exitCode !== 0) throw new Error(`slimfast-runc exec connrate (${which}) failed (${r.exitCode}): ${r.stderr || r.stdout}`);
      if (which === 'slimfast') {
        const after = await topo!.overlayPackets(h1);
        slimfastOverlayPackets += after.tx - before.tx + (after.rx - before.rx);
      }
      return parseConnrate(r.stdout);
    };
    await waitServing(sample);

    const k0 = await topo.counters(h1);
    step(`measuring connect / 16-byte echo / close, one client, ${ROUNDS} interleaved rounds of ${SECONDS} s per path`);
    const summary = await interleaved(sample, ROUNDS, (round, which, r) => {
      process.stdout.write(
        `    round ${round}  ${which.padEnd(8)} ${r.rate.toFixed(0).padStart(7)} conn/s  connect p50 ${r.connect_p50_us.toFixed(0).padStart(4)} µs` +
          `${r.errors ? `  errors ${r.errors} (${r.first_error})` : ''}\n`,
      );
    });
    const k1 = await topo.counters(h1);
    printTable(summary);
    const sfConns = summary.find((s) => s.path === 'slimfast')!;
    step(
      `during the rounds host 1's broker handed ${k1.handed_out - k0.handed_out} host connections to the client container; ` +
        `the VXLAN device carried ${slimfastOverlayPackets} packets during the SlimFast rounds`,
    );
    const errors = summary.reduce((n, s) => n + s.errors, 0);
    if (errors > 0 || sfConns.rate.some((r) => r <= 0)) {
      console.error(`demo: ${errors} connection errors; see the rounds above`);
      return 1;
    }
    return 0;
  } catch (err) {
    if (!interrupted) console.error(`demo failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

/** One short SlimFast sample until it succeeds (bounded): the containers are up and serving. */
async function waitServing(sample: (which: PathName) => Promise<ConnrateResult>): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await sample('slimfast');
      if (r.conns > 0 && r.errors === 0) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error('the client container cannot reach the server container on SlimFast');
    await new Promise((r) => setTimeout(r, 200));
  }
}

function printTable(summary: PathSummary[]): void {
  const by = Object.fromEntries(summary.map((s) => [s.path, s])) as Record<PathName, PathSummary>;
  const rate = (p: PathName) => median(by[p].rate);
  const label: Record<PathName, string> = { host: 'host → host', vxlan: 'VXLAN overlay', slimfast: 'SlimFast' };
  console.log('\n  path            conn/s   vs host  vs VXLAN  connect p50  echo p50');
  for (const p of [...PATHS].reverse()) {
    console.log(
      `  ${label[p].padEnd(14)} ${rate(p).toFixed(0).padStart(7)}   ${(rate(p) / rate('host')).toFixed(2).padStart(5)}x   ${(rate(p) / rate('vxlan')).toFixed(2).padStart(5)}x` +
        `   ${median(by[p].connectP50).toFixed(0).padStart(6)} µs  ${median(by[p].rttP50).toFixed(0).padStart(5)} µs`,
    );
  }
  console.log(`  (medians of ${summary[0]?.rate.length ?? 0} rounds, one client, ratios taken in this run; \`npm run bench\` measures more)\n`);
}

main().then((code) => {
  if (!interrupted) process.exit(code);
});
