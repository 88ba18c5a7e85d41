// End to end with real Podman on two emulated hosts, both ways SlimFast plugs into it:
//   hooks:   Podman's hooks directory alone (`slimfast install podman`), the plain runc as the runtime;
//   runtime: `podman run --runtime slimfast-runc`, no SlimFast hooks directory.
// The containers join network namespaces the lab made (--network ns:PATH), slimfast-hook registers them
// with their host's broker (the lab does not), and their TCP goes over SlimFast, not the VXLAN overlay.
// The image is a root filesystem made here and `podman import`ed: no registry.
// Needs root, podman, runc (/usr/sbin/runc) and busybox-static.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { installPaths, repoRoot } from '../common/paths.js';
import { CONTAINER_PRELOAD, CONTAINER_SOCKET } from '../runtime-wrapper/constants.js';
import { HOOK_FILES } from '../installers/podman.js';
import { REAL_RUNC, makeRootfs } from '../lab/containers.js';
import { PodmanLab, type PodmanRunOptions, sweepStalePodman } from '../lab/podman.js';
import { type Container, type Host, Topology } from '../lab/topology.js';
import { checkHandedOff, connrateOk, handoffSnapshot } from './lib/handoff.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const PORT = 7100;
const CONNS = 200;
const EXEC_CONNS = 50;
const SLIMFAST_ENV = [`LD_PRELOAD=${CONTAINER_PRELOAD}`, `SLIMFAST_SOCKET=${CONTAINER_SOCKET}`];

let lab: PodmanLab | undefined;
let image = '';
const topos: Topology[] = [];

test.before(async () => {
  for (const f of [ECHOD, CONNRATE, installPaths().preload, installPaths().runc]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
  }
  await sweepStalePodman();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sft${process.pid}xpodman`));
  lab = new PodmanLab(dir);
  // Every binary the containers run is bounded in time, in case a killed run leaves them behind.
  const rootfs = makeRootfs(path.join(dir, 'rootfs'), { binaries: [ECHOD, CONNRATE], libraryDeps: [installPaths().preload] });
  image = `localhost/${path.basename(dir).toLowerCase()}:latest`;
  await lab.importRootfs(rootfs, image);
});

// Containers first, while the brokers still run (their poststop hooks unregister them), then the hosts.
test.after.always(async () => {
  await lab?.destroy();
  for (const t of topos) await t.destroy();
});

type Mode = 'hooks' | 'runtime';

/** How container c on host h goes on SlimFast in this mode. */
async function runOptions(t: ExecutionContext, topo: Topology, mode: Mode, h: Host, c: Container): Promise<PodmanRunOptions> {
  if (mode === 'hooks') {
    const hooksDir = path.join(topo.dir, `hooks-h${h.index}`);
    const r = await topo.cli(['install', 'podman', '--hooks-dir', hooksDir, '--state-dir', h.stateDir]);
    t.deepEqual(fs.readdirSync(hooksDir).sort(), HOOK_FILES.map(([f]) => f).sort(), r.stdout);
    return { netns: c.netnsPath, hooksDir, runtime: REAL_RUNC };
  }
  const runc = (JSON.parse((await topo.cli(['paths', '--json'])).stdout) as { runc: string }).runc;
  // Podman passes none of its own environment to the runtime, only containers.conf's conmon_env_vars
  // (to create and exec, the commands slimfast-runc edits for).
  return { netns: c.netnsPath, runtime: runc, conf: lab!.conf(`${topo.id}-h${h.index}`, [`SLIMFAST_STATE_DIR=${h.stateDir}`]) };
}

async function scenario(t: ExecutionContext, mode: Mode): Promise<void> {
  // Fail (and clean up in after.always) well before ava's own timeout, which skips the after hooks.
  t.timeout(60_000);
  const t0 = Date.now();
  const step = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const topo = await Topology.create({ containers: [1, 1], register: false });
  topos.push(topo);
  const podman = lab!;
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  t.deepEqual(await topo.registered(h1), [], 'the lab registered nothing itself');
  t.deepEqual(await topo.registered(h2), []);
  step('topology up');

  // Server on host 2.
  const srv = `${topo.id}-srv`;
  const srvId = await podman.run(srv, image, ['/bin/timeout', '-s', 'KILL', '300', ECHOD, String(PORT)], await runOptions(t, topo, mode, h2, c2));
  step('server container running');
  await topo.waitListener(c2.ip, PORT, 15_000);
  t.deepEqual(
    (await topo.registered(h2)).map((c) => [c.id, c.ip]),
    [[srvId, c2.ip]],
    "the server container is registered under its Podman id with its namespace's IP",
  );

  // Client on host 1: its init process makes CONNS connections, then sleeps.
  const before = await handoffSnapshot(topo);
  const cli = `${topo.id}-cli`;
  const client = `${CONNRATE} ${c2.ip} ${PORT} -n ${CONNS} -t 10`;
  const cliId = await podman.run(
    cli,
    image,
    ['/bin/sh', '-c', `${client}; echo "connrate-exit=$?"; exec /bin/timeout -s KILL 300 /bin/sleep 300`],
    await runOptions(t, topo, mode, h1, c1),
  );
  step('client container running');
  let logs = { stdout: '', stderr: '' };
  await topo.waitFor(
    async () => {
      logs = await podman.logs(cli);
      return logs.stdout.includes('connrate-exit=');
    },
    30_000,
    'connrate in the client container to finish',
  );
  step('client done');
  const out = logs.stdout;
  t.regex(out, /connrate-exit=0/, `${out}\n${logs.stderr}`);
  const run = connrateOk(t, out);
  t.true(run.conns > 0);
  await checkHandedOff(t, topo, before, run.conns);
  t.deepEqual(
    (await topo.registered(h1)).map((c) => [c.id, c.ip]),
    [[cliId, c1.ip]],
    "the client container is registered under its Podman id with its namespace's IP",
  );

  // exec. The container's own process has SlimFast's environment either way.
  const initEnv = await podman.exec(cli, ['/bin/cat', '/proc/1/environ']);
  t.is(initEnv.exitCode, 0, initEnv.stderr);
  for (const e of SLIMFAST_ENV) t.true(initEnv.stdout.split('\0').includes(e), `${e} in the container's init environment`);
  // A plain `podman exec`, no --env. With --runtime, slimfast-runc adds the environment to the exec process
  // file. With the hooks directory alone Podman builds the process from the configuration it made before
  // the precreate hook ran, so it may lack the environment: ld.so loads the library from the mounted
  // /etc/ld.so.preload and the library finds /.slimfast/run/sf.sock itself. Which one it was does not
  // matter: the counters below show the process is on SlimFast.
  const preloadFile = await podman.exec(cli, ['/bin/cat', '/etc/ld.so.preload']);
  if (mode === 'hooks') {
    t.is(preloadFile.exitCode, 0, preloadFile.stderr);
    t.is(preloadFile.stdout, CONTAINER_PRELOAD, 'the precreate hook mounted /etc/ld.so.preload');
    const env = await podman.exec(cli, ['/bin/busybox', 'env']);
    t.log(`podman exec process environment: ${SLIMFAST_ENV.filter((e) => env.stdout.split('\n').includes(e)).join(' ') || 'no SlimFast variables'}`);
  } else {
    t.not(preloadFile.exitCode, 0, 'slimfast-runc leaves /etc/ld.so.preload alone (the image has none)');
    const env = await podman.exec(cli, ['/bin/busybox', 'env']);
    t.is(env.exitCode, 0, env.stderr);
    for (const e of SLIMFAST_ENV) t.true(env.stdout.split('\n').includes(e), `${e} in the podman exec process's environment:\n${env.stdout}`);
  }
  const k0 = await topo.counters(h1);
  const o0 = { o1: await topo.overlayPackets(h1), o2: await topo.overlayPackets(h2) };
  const x = await podman.exec(cli, [CONNRATE, c2.ip, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], { timeout: 30_000 });
  t.is(x.exitCode, 0, x.stderr);
  const rx = connrateOk(t, x.stdout);
  t.true(rx.conns > 0);
  t.is((await topo.counters(h1)).handed_out - k0.handed_out, rx.conns, "the exec'd process's connections were handed out as well");
  t.deepEqual({ o1: await topo.overlayPackets(h1), o2: await topo.overlayPackets(h2) }, o0, 'and did not cross the VXLAN devices');
  step('exec checked');

  // rm -f: the poststop hook unregisters (run by Podman from hooks.d, or by runc from the configuration).
  for (const [name, h] of [
    [cli, h1],
    [srv, h2],
  ] as const) {
    const r = await podman.rm(name);
    t.is(r.exitCode, 0, r.stderr);
    t.deepEqual(await topo.registered(h), [], `${name} is unregistered after podman rm -f`);
    t.deepEqual(fs.readdirSync(path.join(h.stateDir, 'containers')), [], `${name}'s socket directory is gone`);
    step(`${name} removed`);
  }
  const left = await podman.podman(['ps', '-a', '-q', '--filter', `name=${topo.id}`]);
  t.is(left.stdout.trim(), '', 'no container of this run left in Podman');
  await topo.destroy();
}

test.serial("podman with SlimFast's hooks directory alone (plain runc): registered, TCP over SlimFast, exec, rm", (t) => scenario(t, 'hooks'));

test.serial('podman run --runtime slimfast-runc: registered, TCP over SlimFast, exec, rm', (t) => scenario(t, 'runtime'));
