// What slimfast-runc adds to runc: `run` of a trivial container (busybox `true` in a lab container's
// network namespace), the real runc and slimfast-runc (spec edit, createRuntime + poststop hooks
// registering with a live broker) interleaved, plus a pass-through subcommand (`--version`).
//
//   node dist/bench/runc-overhead.js [--runs N]      (npm run bench:runc; as root)
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REAL_RUNC, RuncLab, SLIMFAST_RUNC, makeBundle, sweepStaleRunc } from '../lab/containers.js';
import { Topology } from '../lab/topology.js';
import { median } from './measure.js';

function parseRuns(argv: string[]): number {
  const i = argv.indexOf('--runs');
  const n = i >= 0 ? Number(argv[i + 1]) : 15;
  if (!Number.isInteger(n) || n < 1 || n > 500) {
    console.error('usage: node dist/bench/runc-overhead.js [--runs N]   (1 ≤ N ≤ 500)');
    process.exit(2);
  }
  return n;
}

/** Wall time of one command in ms; throws with its stderr when it fails. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 60_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return ms;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench:runc: run as root (it runs runc containers in network namespaces)');
    return 1;
  }
  const runs = parseRuns(process.argv.slice(2));
  await sweepStaleRunc();
  const topo = await Topology.create({ containers: [1, 1], register: false });
  const stop = () => void topo.destroy().finally(() => process.exit(130));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const lab = new RuncLab(topo);
    const h1 = topo.hosts[0];
    // slimfast-runc edits config.json in its bundle (as under an engine, which makes one per container):
    // the real runc gets a bundle of its own.
    const bundles = {
      runc: makeBundle(path.join(topo.dir, 'bundle-runc'), { args: ['/bin/true'], netns: topo.container('c1').netnsPath }),
      slimfast: makeBundle(path.join(topo.dir, 'bundle-slimfast'), { args: ['/bin/true'], netns: topo.container('c1').netnsPath }),
    };
    const env = lab.env(h1);
    const times: Record<'runc' | 'slimfast' | 'runcVersion' | 'slimfastVersion', number[]> = { runc: [], slimfast: [], runcVersion: [], slimfastVersion: [] };
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first so neither always runs on a warmer cache.
      const order: ('runc' | 'slimfast')[] = i % 2 ? ['slimfast', 'runc'] : ['runc', 'slimfast'];
      for (const which of order) {
        const bin = which === 'runc' ? REAL_RUNC : SLIMFAST_RUNC;
        times[which].push(timed(bin, ['--root', lab.root, 'run', '-b', bundles[which], `${lab.id('true')}${i}${which[0]}`], env));
        times[`${which}Version`].push(timed(bin, ['--version'], env));
      }
      process.stdout.write(`\r  ${i + 1}/${runs} runs`);
    }
    process.stdout.write('\n');
    const m = (k: keyof typeof times) => median(times[k]);
    const row = (what: string, a: number, b: number) =>
      console.log(`  ${what.padEnd(30)} ${a.toFixed(1).padStart(7)} ms  ${b.toFixed(1).padStart(7)} ms  ${(b - a >= 0 ? '+' : '') + (b - a).toFixed(1).padStart(6)} ms  ${(b / a).toFixed(2)}x`);
    console.log(`\n  median of ${runs} interleaved runs   runc        slimfast-runc  added      ratio`);
    row('run (trivial container)', m('runc'), m('slimfast'));
    row('--version (pass-through)', m('runcVersion'), m('slimfastVersion'));
    const registered = JSON.parse((await topo.cli(['container', 'ls', '--json', '--state-dir', h1.stateDir])).stdout) as unknown[];
    console.log(`  (slimfast-runc runs registered with and unregistered from host 1's broker; ${registered.length} left registered)\n`);
    return registered.length === 0 ? 0 : 1;
  } finally {
    await topo.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench:runc failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
