// What slimfast-runc adds to runc: `run` of a trivial container (busybox `true` in a lab container's
// network namespace), the real runc and slimfast-runc (spec edit, createRuntime hook registering
// with a live broker, which unregisters the container when its init exits) interleaved; the same
// start split into `create` (edit + createRuntime hook), `start` and `delete`; and a pass-through subcommand
// (`--version`). With a broker running, slimfast-runc and slimfast-hook hand their work to its
// runtime service; SLIMFAST_NO_RUNTIME_SERVICE=1 measures their Node.js programs instead.
//
// When docker.io is installed, a Docker row: `docker run --rm` through a private dockerd with runc and
// with --runtime slimfast.
//
//   node dist/bench/runc-overhead.js [--runs N] [--no-docker]      (npm run bench:runc; as root)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REAL_RUNC, RuncLab, SLIMFAST_RUNC, makeBundle, makeRootfs, sweepStaleRunc } from '../lab/containers.js';
import { DOCKERD, DockerLab, sweepStaleDocker } from '../lab/docker.js';
import { writeOciArchive } from '../lab/oci-image.js';
import { Topology } from '../lab/topology.js';
import { median } from './measure.js';

function parseRuns(argv: string[]): number {
  const i = argv.indexOf('--runs');
  const n = i >= 0 ? Number(argv[i + 1]) : 15;
  if (!Number.isInteger(n) || n < 1 || n > 500) {
    console.error('usage: node dist/bench/runc-overhead.js [--runs N] [--no-docker]   (1 ≤ N ≤ 500)');
    process.exit(2);
  }
  return n;
}

/**
 * Wall time of one command in ms; throws with its output when it fails. Output goes to a file: a
 * created container keeps runc's stdio open until it is started.
 */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, outFile: string): number {
  const fd = fs.openSync(outFile, 'w');
  try {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { env, stdio: ['ignore', fd, fd], timeout: 60_000 });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0)
      throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${r.status ?? r.signal}): ${fs.readFileSync(outFile, 'utf8')}`);
    return ms;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `docker run --rm IMAGE true` through a private dockerd on host 1 (the lab's bridge, a fixed-cidr in
 * the host's subnet, the runtime written by `slimfast install docker`), with runc (Docker's default)
 * and with --runtime slimfast, interleaved.
 */
async function dockerRow(topo: Topology, runs: number): Promise<void> {
  const h1 = topo.hosts[0];
  const d = DockerLab.create(path.join(topo.dir, 'docker-h1'), {
    netns: `/run/netns/${h1.ns}`,
    env: { SLIMFAST_STATE_DIR: h1.stateDir, SLIMFAST_RUNC: REAL_RUNC },
  });
  topo.onDestroy(() => d.destroy());
  const conf = JSON.parse(fs.readFileSync(d.configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(
    d.configFile,
    `${JSON.stringify({ ...conf, bridge: 'br0', 'fixed-cidr': `${h1.subnet.replace(/\.0\/24$/, '.128')}/25` }, null, 2)}\n`,
  );
  const inst = await topo.cli(['install', 'docker', '--config', d.configFile], { reject: false });
  if (inst.exitCode !== 0) throw new Error(`slimfast install docker failed: ${inst.stderr}`);
  const image = `slimfast/bench:${topo.id}`;
  const rootfs = makeRootfs(path.join(topo.dir, 'docker-rootfs'));
  const [archive] = await Promise.all([
    writeOciArchive(path.join(topo.dir, 'docker-image.tar'), rootfs, { name: `docker.io/${image}`, dockerManifest: true }),
    d.start(),
  ]);
  await d.load(archive.file);
  const times: Record<'runc' | 'slimfast', number[]> = { runc: [], slimfast: [] };
  for (let i = 0; i < runs; i++) {
    const order: ('runc' | 'slimfast')[] = i % 2 ? ['slimfast', 'runc'] : ['runc', 'slimfast'];
    for (const which of order) {
      const t0 = performance.now();
      await d.must(['run', '--rm', ...(which === 'slimfast' ? ['--runtime', 'slimfast'] : []), image, '/bin/true']);
      times[which].push(performance.now() - t0);
    }
    process.stdout.write(`\r  docker: ${i + 1}/${runs} runs`);
  }
  process.stdout.write('\n');
  const a = median(times.runc);
  const b = median(times.slimfast);
  console.log(`\n  median of ${runs} interleaved runs       runc        slimfast       added      ratio`);
  console.log(
    `  ${'docker run --rm (dockerd, runtime)'.padEnd(34)} ${a.toFixed(1).padStart(7)} ms  ${b.toFixed(1).padStart(7)} ms  ${(b - a >= 0 ? '+' : '') + (b - a).toFixed(1).padStart(6)} ms  ${(b / a).toFixed(2)}x\n`,
  );
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench:runc: run as root (it runs runc containers in network namespaces)');
    return 1;
  }
  const runs = parseRuns(process.argv.slice(2));
  const withDocker = !process.argv.includes('--no-docker') && fs.existsSync(DOCKERD);
  await sweepStaleRunc();
  if (withDocker) await sweepStaleDocker();
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
    const out = path.join(topo.dir, 'bench-runc.out');
    const STEPS = ['run', 'create', 'start', 'delete', 'version'] as const;
    type Step = (typeof STEPS)[number];
    const times = { runc: {} as Record<Step, number[]>, slimfast: {} as Record<Step, number[]> };
    for (const w of ['runc', 'slimfast'] as const) for (const st of STEPS) times[w][st] = [];
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first so neither always runs on a warmer cache.
      const order: ('runc' | 'slimfast')[] = i % 2 ? ['slimfast', 'runc'] : ['runc', 'slimfast'];
      for (const which of order) {
        const bin = which === 'runc' ? REAL_RUNC : SLIMFAST_RUNC;
        const t = times[which];
        const base = ['--root', lab.root];
        t.run.push(timed(bin, [...base, 'run', '-b', bundles[which], `${lab.id('true')}${i}${which[0]}`], env, out));
        const id = `${lab.id('steps')}${i}${which[0]}`;
        t.create.push(timed(bin, [...base, 'create', '-b', bundles[which], id], env, out));
        t.start.push(timed(bin, [...base, 'start', id], env, out));
        await topo.waitFor(
          async () => JSON.parse(spawnSync(REAL_RUNC, [...base, 'state', id], { encoding: 'utf8' }).stdout || '{}').status === 'stopped',
          10_000,
          `${id} to stop`,
        );
        t.delete.push(timed(bin, [...base, 'delete', id], env, out));
        t.version.push(timed(bin, ['--version'], env, out));
      }
      process.stdout.write(`\r  ${i + 1}/${runs} runs`);
    }
    process.stdout.write('\n');
    const row = (what: string, st: Step) => {
      const a = median(times.runc[st]);
      const b = median(times.slimfast[st]);
      console.log(
        `  ${what.padEnd(34)} ${a.toFixed(1).padStart(7)} ms  ${b.toFixed(1).padStart(7)} ms  ${(b - a >= 0 ? '+' : '') + (b - a).toFixed(1).padStart(6)} ms  ${(b / a).toFixed(2)}x`,
      );
    };
    const via = process.env.SLIMFAST_NO_RUNTIME_SERVICE ? 'Node.js programs (SLIMFAST_NO_RUNTIME_SERVICE)' : "the broker's runtime service";
    console.log(`\n  median of ${runs} interleaved runs       runc        slimfast-runc  added      ratio    (slimfast-runc through ${via})`);
    row('run (trivial container)', 'run');
    row('  create (edit, createRuntime hook)', 'create');
    row('  start', 'start');
    row('  delete', 'delete');
    row('--version (pass-through)', 'version');
    const registered = JSON.parse((await topo.cli(['container', 'ls', '--json', '--state-dir', h1.stateDir])).stdout) as unknown[];
    console.log(`  (slimfast-runc runs registered with and unregistered from host 1's broker; ${registered.length} left registered)\n`);
    if (registered.length !== 0) return 1;
    if (!withDocker) {
      console.log(`  (no Docker row: ${fs.existsSync(DOCKERD) ? '--no-docker' : `${DOCKERD} is not installed`})\n`);
      return 0;
    }
    await dockerRow(topo, runs);
    const left = JSON.parse((await topo.cli(['container', 'ls', '--json', '--state-dir', h1.stateDir])).stdout) as unknown[];
    return left.length === 0 ? 0 : 1;
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
