// End to end with real containerd on two emulated hosts: one containerd per host, each running in its
// host's network namespace with that host's SLIMFAST_STATE_DIR (its shims and runc inherit it), and
// `ctr run --runc-binary slimfast-runc` (the runc v2 shim then runs slimfast-runc with --root, --log,
// --log-format json, `create --bundle … --pid-file …`, `exec --process … --detach`, kill, delete).
// The containers join network namespaces the lab made (--with-ns network:PATH), slimfast-hook registers
// them with their host's broker (the lab does not), and their TCP goes over SlimFast, not the VXLAN
// overlay. The image is an OCI archive of a root filesystem made here, `ctr images import`ed: no registry.
// Needs root, containerd (with ctr and containerd-shim-runc-v2), runc (/usr/sbin/runc) and busybox-static.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { installPaths, repoRoot } from '../common/paths.js';
import { ANNOTATION_ID, CONTAINER_PRELOAD, CONTAINER_SOCKET } from '../runtime-wrapper/constants.js';
import { REAL_RUNC, makeRootfs, sweepStaleRunc } from '../lab/containers.js';
import { ContainerdLab, sweepStaleContainerd } from '../lab/containerd.js';
import { writeOciArchive } from '../lab/oci-image.js';
import { type Host, Topology } from '../lab/topology.js';
import { checkHandedOff, connrateOk, handoffSnapshot } from './lib/handoff.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const PORT = 7100;
const CONNS = 200;
const EXEC_CONNS = 50;

let topo: Topology | undefined;

// The containerd labs are destroyed first (registered with topo.onDestroy), while the brokers still run.
test.after.always(async () => {
  await topo?.destroy();
});

function socketDirs(h: Host): string[] {
  const dir = path.join(h.stateDir, 'containers');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

test.serial('ctr run --runc-binary slimfast-runc: registered by the hook, TCP over SlimFast, task exec, removal', async (t) => {
  for (const f of [ECHOD, CONNRATE, installPaths().preload, installPaths().runc]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
  }
  // Fail (and clean up in after.always) well before ava's own timeout, which skips the after hooks.
  t.timeout(90_000);
  const t0 = Date.now();
  const step = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  // Before Topology.create, whose sweep removes killed runs' directories: their daemons, shims and
  // mounts first, then their containers' processes (found by cgroup).
  sweepStaleContainerd();
  await sweepStaleRunc();
  topo = await Topology.create({ containers: [1, 1], register: false });
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  // A third namespace on host 1 for a one-shot `ctr run --rm` (a registration per namespace IP).
  const c3 = await topo.addContainer(h1, 'c3');
  const runc = (JSON.parse((await topo.cli(['paths', '--json'])).stdout) as { runc: string }).runc;
  t.true(fs.existsSync(runc), `slimfast paths --json names runc ${runc}`);
  t.deepEqual(await topo!.registered(h1), [], 'the lab registered nothing itself');
  t.deepEqual(await topo!.registered(h2), []);

  // One containerd per host, in the host's network namespace, with the host's broker in its environment.
  const labs: ContainerdLab[] = [];
  topo.onDestroy(async () => {
    for (const l of labs) await l.destroy();
  });
  for (const h of topo.hosts) {
    labs.push(
      await ContainerdLab.start(path.join(topo.dir, `containerd-h${h.index}`), {
        namespace: topo.id,
        netns: `/run/netns/${h.ns}`,
        env: { SLIMFAST_STATE_DIR: h.stateDir, SLIMFAST_RUNC: REAL_RUNC, SLIMFAST_HOOK_TIMEOUT: '10' },
      }),
    );
  }
  const [ctd1, ctd2] = labs;
  step('topology and containerd up');

  const rootfs = makeRootfs(path.join(topo.dir, 'rootfs'), { binaries: [ECHOD, CONNRATE], libraryDeps: [installPaths().preload] });
  const image = `docker.io/slimfast/lab:${topo.id}`;
  const archive = await writeOciArchive(path.join(topo.dir, 'image.tar'), rootfs, { name: image });
  for (const l of labs) t.deepEqual(await l.importImage(archive.file), [image], 'the OCI archive imported as one named image');
  step('image imported');

  // Server on host 2. Every program the containers run is bounded in time, in case a killed run leaves them behind.
  const srvId = `${topo.id}-srv`;
  const srvLog = path.join(topo.dir, 'srv.log');
  const srv = await ctd2.run(srvId, image, ['/bin/timeout', '-s', 'KILL', '300', ECHOD, String(PORT)], {
    netns: c2.netnsPath,
    runcBinary: runc,
    log: srvLog,
  });
  t.is(srv.exitCode, 0, `${srv.stderr}\n${ctd2.logTail()}`);
  await topo.waitListener(c2.ip, PORT, 15_000);
  step('server listening');
  t.deepEqual(
    (await topo!.registered(h2)).map((c) => [c.id, c.ip]),
    [[srvId, c2.ip]],
    "the hook registered the server container with its namespace's IP",
  );
  const spec = ctd2.bundleSpec(srvId);
  t.is(spec.annotations?.[ANNOTATION_ID], srvId, 'the shim ran slimfast-runc, which edited the bundle');
  // runc gives hooks only the environment the bundle names: slimfast-runc passes on the state dir it
  // inherited from containerd (through the shim).
  const hook = (spec.hooks?.createRuntime ?? []) as { path: string; env?: string[] }[];
  t.true(
    hook.some((h) => h.path === installPaths().hook && h.env?.includes(`SLIMFAST_STATE_DIR=${h2.stateDir}`)),
    JSON.stringify(hook),
  );
  // Pass-through on the shim's runc root: `state` is runc's own output.
  const state = async (bin: string) => execa(bin, ['--root', ctd2.runcRoot, 'state', srvId], { reject: false, timeout: 10_000 });
  const [mine, real] = [await state(runc), await state(REAL_RUNC)];
  t.is(mine.exitCode, 0, String(mine.stderr));
  t.is(mine.stdout, real.stdout);
  t.is((JSON.parse(String(mine.stdout)) as { status: string }).status, 'running');

  // Client on host 1: its init process makes CONNS connections, then sleeps.
  const before = await handoffSnapshot(topo);
  const cliId = `${topo.id}-cli`;
  const cliLog = path.join(topo.dir, 'cli.log');
  const client = `${CONNRATE} ${c2.ip} ${PORT} -n ${CONNS} -t 10`;
  const cli = await ctd1.run(cliId, image, ['/bin/sh', '-c', `${client}; echo "connrate-exit=$?"; exec /bin/timeout -s KILL 300 /bin/sleep 300`], {
    netns: c1.netnsPath,
    runcBinary: runc,
    log: cliLog,
  });
  t.is(cli.exitCode, 0, `${cli.stderr}\n${ctd1.logTail()}`);
  await topo.waitFor(async () => fs.readFileSync(cliLog, 'utf8').includes('connrate-exit='), 30_000, 'connrate in the client container to finish');
  step('client done');
  const out = fs.readFileSync(cliLog, 'utf8');
  t.regex(out, /connrate-exit=0/, out);
  const run = connrateOk(t, out, CONNS);
  await checkHandedOff(t, topo, before, run.conns);
  t.deepEqual(
    (await topo!.registered(h1)).map((c) => [c.id, c.ip]),
    [[cliId, c1.ip]],
    "the hook registered the client container with its namespace's IP",
  );
  t.deepEqual(
    (await topo!.registered(h2)).map((c) => c.id),
    [srvId],
  );

  // ctr task exec: the shim's `runc exec --process FILE`; slimfast-runc gives the process SlimFast's environment.
  const env = await ctd1.exec(cliId, 'env', ['/bin/busybox', 'env']);
  t.is(env.exitCode, 0, env.stderr);
  t.true(env.stdout.split('\n').includes(`LD_PRELOAD=${CONTAINER_PRELOAD}`), env.stdout);
  t.true(env.stdout.split('\n').includes(`SLIMFAST_SOCKET=${CONTAINER_SOCKET}`), env.stdout);
  const k0 = await topo.counters(h1);
  const o0 = await topo.overlayPackets(h1);
  const x = await ctd1.exec(cliId, 'connrate', [CONNRATE, c2.ip, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], { timeout: 30_000 });
  t.is(x.exitCode, 0, x.stderr);
  const rx = connrateOk(t, x.stdout, EXEC_CONNS);
  t.is((await topo.counters(h1)).handed_out - k0.handed_out, rx.conns, "the exec'd process's connections were handed out as well");
  t.deepEqual(await topo.overlayPackets(h1), o0, 'and did not cross the VXLAN device');
  step('exec checked');

  // ctr run --rm in the foreground: ctr passes the output on, then deletes task and container (poststop unregisters).
  const k1 = await topo.counters(h1);
  const onceId = `${topo.id}-once`;
  const once = await ctd1.run(onceId, image, [CONNRATE, c2.ip, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], {
    netns: c3.netnsPath,
    runcBinary: runc,
    rm: true,
    timeout: 30_000,
  });
  t.is(once.exitCode, 0, `${once.stderr}\n${ctd1.logTail()}`);
  const ro = connrateOk(t, once.stdout);
  t.is((await topo.counters(h1)).handed_out - k1.handed_out, ro.conns, "the --rm container's connections were handed out");
  t.deepEqual(
    (await topo!.registered(h1)).map((c) => c.id),
    [cliId],
    'the --rm container is unregistered once ctr returns',
  );
  t.is(socketDirs(h1).length, 1, 'and its socket directory is gone');
  step('run --rm checked');

  // ctr task kill + task rm + container rm: the shim's runc kill and delete run the poststop hook.
  for (const [lab, id, h] of [
    [ctd1, cliId, h1],
    [ctd2, srvId, h2],
  ] as const) {
    await lab.remove(id);
    t.deepEqual(await topo!.registered(h), [], `${id} is unregistered after removal`);
    t.deepEqual(socketDirs(h), [], `${id}'s socket directory is gone`);
    t.deepEqual(await lab.containerIds(), [], 'no container left in the containerd namespace');
    step(`${id} removed`);
  }
  for (const l of labs) {
    const r = await execa(REAL_RUNC, ['--root', l.runcRoot, 'list', '-q'], { reject: false, timeout: 10_000 });
    t.is(String(r.stdout).trim(), '', "no container left in the shim's runc root");
  }

  // Host 2's broker down: creation fails (the default, no allowWithoutBroker) and ctr passes on the
  // hook's advice, which slimfast-runc's runc wrote to the shim's --log file.
  await topo.stopBroker(h2);
  const down = await ctd2.run(`${topo.id}-down`, image, ['/bin/true'], { netns: c2.netnsPath, runcBinary: runc, rm: true, timeout: 30_000 });
  t.not(down.exitCode, 0, down.stdout);
  t.true(down.stderr.includes(`no SlimFast broker at ${h2.stateDir}/slimfast.sock: start one with "slimfast daemon`), down.stderr);
  t.deepEqual(await ctd2.containerIds(), [], 'ctr removed the container it could not start');
  step('broker-down refusal checked');
});
