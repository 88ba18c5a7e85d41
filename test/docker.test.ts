// End to end with Debian's Docker 20.10 on two emulated hosts: one dockerd per host (with the containerd
// it starts itself), each in its host's network namespace with that host's SLIMFAST_STATE_DIR, which
// its containerd, shims and slimfast-runc inherit. `slimfast install docker --config` writes the
// runtime into each daemon.json; the containers' addresses are in their host's SlimFast subnet the two
// ways a user gets them: host 1's dockerd uses the lab's bridge (daemon.json "bridge" + "fixed-cidr",
// so its containers sit on the VXLAN overlay like the lab's), host 2's makes its own docker0 from the
// "bip" that `install docker --subnet` sets. Containers run with `docker run --runtime slimfast`:
// slimfast-hook registers them (the lab does not), their TCP goes host to host, not over VXLAN; a
// static client reaches the seccomp path through the config file's "seccomp": true. The
// image is a docker-archive of a root filesystem made here, `docker load`ed: no registry.
// Needs root, docker.io (/usr/sbin/dockerd, /usr/bin/docker), runc (/usr/sbin/runc) and busybox-static.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { parseConnrate } from '../bench/measure.js';
import { installPaths, repoRoot } from '../common/paths.js';
import { CONTAINER_PRELOAD, CONTAINER_SOCKET } from '../runtime-wrapper/constants.js';
import { sweepStaleContainerd } from '../lab/containerd.js';
import { REAL_RUNC, makeRootfs, sweepStaleRunc } from '../lab/containers.js';
import { DockerLab, sweepStaleDocker } from '../lab/docker.js';
import { writeOciArchive } from '../lab/oci-image.js';
import { type Host, Topology } from '../lab/topology.js';
import { checkHandedOff, connrateOk, handoffSnapshot } from './lib/handoff.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const STATIC = path.join(repoRoot(), 'bench', 'clients', 'connrate-static');
const PORT = 7100;
const CONNS = 200;
const EXEC_CONNS = 50;
/** Host 1's containers take addresses from the top half of its subnet; the lab's own start at .2. */
const FIXED_CIDR_1 = '10.200.1.128/25';

let topo: Topology | undefined;

// The docker labs are destroyed first (registered with topo.onDestroy), while the brokers still run.
test.after.always(async () => {
  await topo?.destroy();
});

function socketDirs(h: Host): string[] {
  const dir = path.join(h.stateDir, 'containers');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

const envLines = (out: string) => out.split('\n');

test.serial(
  'docker run --runtime slimfast: installed by slimfast install docker, registered by the hook, TCP over SlimFast, docker exec, --network host, stop, broker down',
  async (t) => {
    for (const f of [ECHOD, CONNRATE, STATIC, installPaths().preload, installPaths().runc]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
    }
    // Fail (and clean up in after.always) well before ava's own timeout, which skips the after hooks.
    // About 60 s alone; more on a loaded 2-CPU machine.
    t.timeout(110_000);
    const t0 = Date.now();
    const step = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    // Before Topology.create, whose sweep removes killed runs' directories: their daemons, shims and
    // mounts first, then their containers' processes (found by cgroup).
    await sweepStaleDocker();
    sweepStaleContainerd();
    await sweepStaleRunc();
    topo = await Topology.create({ containers: [0, 0], register: false });
    const [h1, h2] = topo.hosts;
    const runc = installPaths().runc;
    step('topology up');

    // slimfast-runc's config file (not the machine's /etc/slimfast/config.json): absent until the seccomp step.
    const switchFile = path.join(topo.dir, 'slimfast-config.json');
    const labs: DockerLab[] = [];
    topo.onDestroy(async () => {
      for (const l of labs) await l.destroy();
    });
    for (const h of topo.hosts) {
      labs.push(
        DockerLab.create(path.join(topo.dir, `docker-h${h.index}`), {
          netns: `/run/netns/${h.ns}`,
          env: { SLIMFAST_STATE_DIR: h.stateDir, SLIMFAST_RUNC: REAL_RUNC, SLIMFAST_HOOK_TIMEOUT: '10', SLIMFAST_CONFIG: switchFile },
          // The VXLAN device's MTU, as the lab's containers have.
          args: ['--mtu', '1450'],
        }),
      );
    }
    const [d1, d2] = labs;
    // Host 1: an existing bridge (the lab's br0) and a fixed-cidr inside the host's subnet.
    const conf1 = JSON.parse(fs.readFileSync(d1.configFile, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(d1.configFile, `${JSON.stringify({ ...conf1, bridge: 'br0', 'fixed-cidr': FIXED_CIDR_1 }, null, 2)}\n`);
    const before1 = fs.readFileSync(d1.configFile, 'utf8');
    // Host 2: docker0 made by dockerd from bip (this host's subnet, as `slimfast status` shows it); the
    // lab's bridge gives up the address.
    const subnet2 = (await topo.status(h2)).health.subnet as string;
    t.is(subnet2, h2.subnet, "slimfast status --json names the host's subnet");
    await topo.hostExec(h2, ['ip', 'addr', 'flush', 'dev', 'br0']);
    const [i1, i2] = await Promise.all([
      topo.cli(['install', 'docker', '--config', d1.configFile], { reject: false }),
      topo.cli(['install', 'docker', '--config', d2.configFile, '--subnet', subnet2], { reject: false }),
    ]);
    t.is(i1.exitCode, 0, i1.stderr);
    t.is(i1.stderr, '', 'no subnet note: the bridge is set');
    const after1 = fs.readFileSync(d1.configFile, 'utf8');
    t.deepEqual(JSON.parse(after1), { ...JSON.parse(before1), runtimes: { slimfast: { path: runc } } });
    t.is(i2.exitCode, 0, i2.stderr);
    t.regex(i2.stdout, /restart dockerd/);
    t.is((JSON.parse(fs.readFileSync(d2.configFile, 'utf8')) as { bip: string }).bip, '10.200.2.1/24');
    step('daemon.json written');
    // The image is made while the daemons start.
    const image = `slimfast/lab:${topo.id}`;
    const rootfs = makeRootfs(path.join(topo.dir, 'rootfs'), { binaries: [ECHOD, CONNRATE, STATIC], libraryDeps: [installPaths().preload] });
    const [archive] = await Promise.all([
      writeOciArchive(path.join(topo.dir, 'image.tar'), rootfs, { name: `docker.io/${image}`, dockerManifest: true }),
      ...labs.map((l) => l.start()),
    ]);
    step('two dockerds up');
    // Host 2's docker0 joins the overlay, and the host routes the rest of it there (its containers' /24
    // sends other hosts' addresses to the gateway): what an overlay network such as flannel sets up.
    for (const cmd of [
      ['ip', 'link', 'set', 'vx0', 'master', 'docker0'],
      ['ip', 'route', 'add', '10.200.0.0/16', 'dev', 'docker0'],
      ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
    ]) {
      const r = await topo.hostExec(h2, cmd);
      t.is(r.exitCode, 0, `${cmd.join(' ')}: ${r.stderr}`);
    }
    for (const l of labs) {
      const rt = JSON.parse(await l.must(['info', '--format', '{{json .Runtimes}}'])) as Record<string, { path: string }>;
      t.is(rt.slimfast?.path, runc, 'dockerd took the runtime from daemon.json');
    }

    for (const l of labs) t.deepEqual(await l.load(archive.file), [image], 'the archive loaded as one tagged image');
    step('image loaded');

    // Server on host 2. Every program the containers run is bounded in time, in case a killed run leaves them behind.
    const srv = (
      await d2.must([
        'run',
        '-d',
        '--runtime',
        'slimfast',
        '--name',
        `${topo.id}-srv`,
        image,
        '/bin/timeout',
        '-s',
        'KILL',
        '300',
        ECHOD,
        String(PORT),
      ])
    ).trim();
    const srvIp = (await d2.inspect(srv)).NetworkSettings.IPAddress as string;
    t.true(srvIp.startsWith('10.200.2.'), `the server's address ${srvIp} is in host 2's subnet (bip)`);
    await topo.waitListener(srvIp, PORT, 15_000);
    step('server listening');
    t.deepEqual(
      (await topo!.registered(h2)).map((c) => [c.id, c.ip]),
      [[srv, srvIp]],
      'the hook registered the server container with its address',
    );

    // Client on host 1: its init process makes CONNS connections, then sleeps.
    const before = await handoffSnapshot(topo);
    const client = `${CONNRATE} ${srvIp} ${PORT} -n ${CONNS} -t 10`;
    const cli = (
      await d1.must([
        'run',
        '-d',
        '--runtime',
        'slimfast',
        '--name',
        `${topo.id}-cli`,
        image,
        '/bin/sh',
        '-c',
        `${client}; echo "connrate-exit=$?"; exec /bin/timeout -s KILL 300 /bin/sleep 300`,
      ])
    ).trim();
    const cliIp = (await d1.inspect(cli)).NetworkSettings.IPAddress as string;
    t.regex(cliIp, /^10\.200\.1\.(12[89]|1[3-9]\d|2[0-5]\d)$/, `the client's address is in the fixed-cidr ${FIXED_CIDR_1}`);
    let out = '';
    await topo.waitFor(
      async () => {
        out = (await d1.must(['logs', cli])).toString();
        return out.includes('connrate-exit=');
      },
      30_000,
      'connrate in the client container to finish',
    );
    step('client done');
    t.regex(out, /connrate-exit=0/, out);
    const run = connrateOk(t, out, CONNS);
    await checkHandedOff(t, topo, before, run.conns);
    t.deepEqual(
      (await topo!.registered(h1)).map((c) => [c.id, c.ip]),
      [[cli, cliIp]],
      'the hook registered the client container with its address',
    );

    // docker exec: containerd's `runc exec --process FILE`; slimfast-runc gives the process SlimFast's environment.
    const env = await d1.must(['exec', cli, '/bin/busybox', 'env']);
    t.true(envLines(env).includes(`LD_PRELOAD=${CONTAINER_PRELOAD}`), env);
    t.true(envLines(env).includes(`SLIMFAST_SOCKET=${CONTAINER_SOCKET}`), env);
    const k0 = await topo.counters(h1);
    const o0 = await topo.overlayPackets(h1);
    const x = await d1.docker(['exec', cli, CONNRATE, srvIp, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], { timeout: 30_000 });
    t.is(x.exitCode, 0, x.stderr);
    const rx = connrateOk(t, x.stdout, EXEC_CONNS);
    // Each step's counters after are the next one's before: nothing runs in between.
    const k1 = await topo.counters(h1);
    const o1 = await topo.overlayPackets(h1);
    t.is(k1.handed_out - k0.handed_out, rx.conns, "the exec'd process's connections were handed out as well");
    t.deepEqual(o1, o0, 'and did not cross the VXLAN device');
    step('exec checked');

    // The seccomp path, which Docker 20.10 (no --annotation) reaches only through the config file's
    // switch: a statically linked client, out of the preload's reach, gets host connections from the
    // broker's seccomp agent.
    fs.writeFileSync(switchFile, `${JSON.stringify({ seccomp: true })}\n`);
    const st = await d1
      .docker(['run', '--rm', '--runtime', 'slimfast', image, STATIC, srvIp, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], { timeout: 30_000 })
      .finally(() => fs.rmSync(switchFile, { force: true }));
    t.is(st.exitCode, 0, st.stderr);
    const rs = connrateOk(t, st.stdout, EXEC_CONNS);
    const k2 = await topo.counters(h1);
    const o2 = await topo.overlayPackets(h1);
    t.is(k2.seccomp_handed - k1.seccomp_handed, rs.conns, 'every connect of the static client went through the seccomp agent');
    t.deepEqual(o2, o1, 'and none crossed the VXLAN device');
    step('seccomp path checked');

    // Left alone: --network host with the slimfast runtime, and the default runtime (runc). Neither is
    // registered nor gets the preload; the plain container's connections take the overlay.
    const hostNet = await d1.docker(['run', '--rm', '--runtime', 'slimfast', '--network', 'host', image, '/bin/busybox', 'env'], { timeout: 30_000 });
    t.is(hostNet.exitCode, 0, hostNet.stderr);
    t.false(hostNet.stdout.includes('LD_PRELOAD='), hostNet.stdout);
    const plain = await d1.docker(['run', '--rm', image, '/bin/sh', '-c', `/bin/busybox env; ${CONNRATE} ${srvIp} ${PORT} -n 5 -t 10`], {
      timeout: 30_000,
    });
    t.is(plain.exitCode, 0, plain.stderr);
    t.false(plain.stdout.includes('LD_PRELOAD='), plain.stdout);
    t.is(parseConnrate(plain.stdout).conns, 5);
    t.is((await topo.counters(h1)).handed_out, k2.handed_out, "a runc container's connections are not handed out");
    t.true((await topo.overlayPackets(h1)).tx > o2.tx, 'they cross the VXLAN device');
    t.deepEqual(
      (await topo!.registered(h1)).map((c) => c.id),
      [cli],
      'neither was registered',
    );
    step('host network and runc left alone');

    // Docker's default addresses (172.17.0.0/16) are in no broker's subnet: the hook refuses the container.
    await d1.must(['network', 'create', '--subnet', '172.17.0.0/16', `${topo.id}-dflt`]);
    const outside = await d1.docker(['run', '--rm', '--runtime', 'slimfast', '--network', `${topo.id}-dflt`, image, '/bin/true'], {
      timeout: 30_000,
    });
    t.not(outside.exitCode, 0, outside.stdout);
    t.regex(outside.stderr, /container IP 172\.17\.0\.\d+ is outside this host's subnet 10\.200\.1\.0\/24/, outside.stderr);
    t.deepEqual(
      (await topo!.registered(h1)).map((c) => c.id),
      [cli],
    );
    await d1.must(['network', 'rm', `${topo.id}-dflt`]);
    step('a container outside the subnet refused');

    // docker stop: containerd deletes the task, runc delete runs the poststop hook; then docker rm.
    await Promise.all(
      (
        [
          [d1, cli, h1],
          [d2, srv, h2],
        ] as const
      ).map(async ([lab, id, h]) => {
        await lab.must(['stop', '-t', '1', id], { timeout: 30_000 });
        t.deepEqual(await topo!.registered(h), [], `${id.slice(0, 12)} is unregistered once stopped`);
        t.deepEqual(socketDirs(h), [], 'and its socket directory is gone');
        await lab.must(['rm', id]);
        t.deepEqual(await lab.containerIds(), [], 'no container left');
      }),
    );
    step('containers stopped and removed');

    // Host 2's broker down: `docker run` fails (the default, no allowWithoutBroker) and passes on the
    // hook's advice.
    await topo.stopBroker(h2);
    const down = await d2.docker(['run', '--rm', '--runtime', 'slimfast', image, '/bin/true'], { timeout: 30_000 });
    t.not(down.exitCode, 0, down.stdout);
    t.true(down.stderr.includes(`no SlimFast broker at ${h2.stateDir}/slimfast.sock: start one with "slimfast daemon`), down.stderr);
    step('broker-down refusal checked');
  },
);
