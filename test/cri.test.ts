// End to end through containerd's CRI plugin, driven as the kubelet drives it (lab/cri.ts over
// proto/cri.proto), on two emulated hosts: one private containerd per host, in the host's network
// namespace with that host's SLIMFAST_STATE_DIR, CNI from containernetworking-plugins (bridge on the
// host's lab bridge, so pods ride the lab's VXLAN overlay; host-local hands out .100-.199 of the
// host's container subnet), a pause image built here. The runtime handler is the one of
// deploy/kubernetes/runtimeclass.yaml, and containerd gets it from `slimfast install containerd --config
// FILE` on the daemon's config, which must be deploy/kubernetes/containerd-slimfast.toml's runtime but
// for BinaryName (this checkout's slimfast-runc instead of /opt/slimfast's): the deployment files
// cannot drift from what is tested here.
// Pods on that handler ("slimfast"): the sandbox is registered by the hook, the pod's containers
// share its network namespace and its registration, their TCP (and ExecSync's) is handed off across
// hosts; with the pod annotation io.slimfast.seccomp=true a statically linked client in an app
// container and in its ExecSync goes through the seccomp agent. A pod on the plain runc handler, and
// one annotated io.slimfast.disable=true, are left alone. RemovePodSandbox unregisters.
// Needs root, containerd 1.6 (CRI plugin), runc (/usr/sbin/runc), containernetworking-plugins
// (/usr/lib/cni) and busybox-static.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { parse as parseToml } from 'smol-toml';
import { parseConnrate } from '../bench/measure.js';
import { installPaths, repoRoot } from '../common/paths.js';
import { ANNOTATION_DISABLE, ANNOTATION_ID, ANNOTATION_SECCOMP, CONTAINER_PRELOAD } from '../runtime-wrapper/constants.js';
import { REAL_RUNC, makeRootfs, sweepStaleRunc } from '../lab/containers.js';
import { CNI_BIN_DIR, CRI_NAMESPACE, ContainerdLab, sweepStaleContainerd } from '../lab/containerd.js';
import { type ContainerConfig, CriClient, type PodConfig } from '../lab/cri.js';
import { writeOciArchive } from '../lab/oci-image.js';
import { type Host, Topology } from '../lab/topology.js';
import { checkHandedOff, connrateOk, handoffSnapshot } from './lib/handoff.js';
import { CONTAINERD_SNIPPET_FILE, NODE_INSTALL_DIR, runtimeClassHandler } from './lib/kubernetes.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const STATIC = path.join(repoRoot(), 'bench', 'clients', 'connrate-static');
const PORT = 7100;
const CONNS = 100;
const EXEC_CONNS = 50;
const HANDLER = runtimeClassHandler();

let topo: Topology | undefined;
const clients: CriClient[] = [];

// The containerd labs (registered with topo.onDestroy) remove their pods first, while the brokers still run.
test.after.always(async () => {
  for (const c of clients) c.close();
  await topo?.destroy();
});

function socketDirs(h: Host): string[] {
  const dir = path.join(h.stateDir, 'containers');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

test.serial(
  'CRI pods on runtime handler "slimfast": sandbox registered, both containers and ExecSync on SlimFast, the seccomp path, a runc pod and a disabled one left alone, removal',
  async (t) => {
    for (const f of [
      ECHOD,
      CONNRATE,
      STATIC,
      installPaths().preload,
      installPaths().runc,
      path.join(CNI_BIN_DIR, 'bridge'),
      path.join(CNI_BIN_DIR, 'host-local'),
    ]) {
      if (!fs.existsSync(f))
        throw new Error(`${f} is missing: npm run build:native; apt-get install containernetworking-plugins (see ci/packages.txt)`);
    }
    // Fail (and clean up in after.always) before ava's own timeout (120 s), which skips the after hooks.
    t.timeout(110_000);
    const t0 = Date.now();
    const step = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    sweepStaleContainerd();
    await sweepStaleRunc();
    topo = await Topology.create({ containers: [0, 0], register: false });
    const [h1, h2] = topo.hosts;
    const image = `docker.io/slimfast/lab:${topo.id}`;
    const cgroupParent = (h: Host) => `/${topo!.id}-h${h.index}-pods`;

    // One containerd per host; its config gets the runtime handler from `slimfast install containerd`.
    const labs: ContainerdLab[] = [];
    topo.onDestroy(async () => {
      for (const l of labs) await l.destroy();
    });
    const install = async (file: string) => {
      const r = await topo!.cli(['install', 'containerd', '--config', file]);
      if (r.exitCode !== 0) throw new Error(`slimfast install containerd failed: ${r.stderr}`);
      // The runtime it wrote is the deployment's snippet, installed here instead of in /opt/slimfast.
      const runtime = (f: string) =>
        (parseToml(fs.readFileSync(f, 'utf8')) as any).plugins?.['io.containerd.grpc.v1.cri']?.containerd?.runtimes?.[HANDLER];
      const expected = runtime(CONTAINERD_SNIPPET_FILE);
      expected.options.BinaryName = path.join(repoRoot(), path.relative(NODE_INSTALL_DIR, expected.options.BinaryName));
      t.deepEqual(runtime(file), expected, `the runtime in ${file} is the one of ${CONTAINERD_SNIPPET_FILE}`);
      // The shim's runc state stays in the lab (containerd's default is /run/containerd/runc).
      const text = fs.readFileSync(file, 'utf8');
      const edited = text.replace(
        /(\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.slimfast\.options\]\n(\s*)BinaryName = .*\n)/,
        (_m, block: string, indent: string) => `${block}${indent}Root = ${JSON.stringify(path.join(path.dirname(file), 'runc'))}\n`,
      );
      if (edited === text) throw new Error(`no slimfast runtime options in what slimfast install containerd wrote:\n${text}`);
      fs.writeFileSync(file, edited);
    };
    for (const h of topo.hosts) {
      const prefix = h.subnet.split('.').slice(0, 3).join('.');
      labs.push(
        await ContainerdLab.start(path.join(topo.dir, `containerd-h${h.index}`), {
          namespace: CRI_NAMESPACE,
          netns: `/run/netns/${h.ns}`,
          env: { SLIMFAST_STATE_DIR: h.stateDir, SLIMFAST_RUNC: REAL_RUNC, SLIMFAST_HOOK_TIMEOUT: '10' },
          cri: {
            sandboxImage: image,
            cni: { bridge: 'br0', subnet: '10.200.0.0/16', rangeStart: `${prefix}.100`, rangeEnd: `${prefix}.199`, gateway: h.bridgeIp, mtu: 1450 },
            cgroupParent: cgroupParent(h),
          },
          editConfig: install,
        }),
      );
    }
    const [ctd1, ctd2] = labs;
    const [cri1, cri2] = labs.map((l) => new CriClient(l.address));
    clients.push(cri1, cri2);
    t.is((await cri1.version()).runtimeApiVersion, 'v1', 'the CRI plugin serves runtime.v1');
    step('topology and containerd with CRI up');

    // One image: the pause image (sleep) and the containers' programs.
    const rootfs = makeRootfs(path.join(topo.dir, 'rootfs'), { binaries: [ECHOD, CONNRATE, STATIC], libraryDeps: [installPaths().preload] });
    const archive = await writeOciArchive(path.join(topo.dir, 'image.tar'), rootfs, { name: image, cmd: ['/bin/sleep', '300'] });
    // CRI adds the image's id as a second name.
    for (const l of labs) t.true((await l.importImage(archive.file)).includes(image));
    step('image imported');

    const pod = (h: Host, name: string, annotations: Record<string, string> = {}): PodConfig => {
      const logDirectory = path.join(topo!.dir, 'pods', name);
      fs.mkdirSync(logDirectory, { recursive: true });
      return {
        metadata: { name, uid: crypto.randomUUID(), namespace: 'default' },
        hostname: name,
        logDirectory,
        annotations,
        linux: { cgroupParent: cgroupParent(h) },
      };
    };
    // Every program the containers run is bounded in time, in case a killed run leaves them behind.
    const ctr = (name: string, args: string[]): ContainerConfig => ({
      metadata: { name },
      image: { image },
      command: ['/bin/timeout', '-s', 'KILL', '300', ...args],
      logPath: `${name}.log`,
    });
    const sleeper = (name: string) => ctr(name, ['/bin/sleep', '300']);

    // Server pod on host 2.
    const srvCfg = pod(h2, 'srv');
    const srvPod = await cri2.runPod(srvCfg, HANDLER);
    const srvStatus = await cri2.podStatus(srvPod);
    t.is(srvStatus.runtimeHandler, HANDLER);
    const srvIp = srvStatus.network?.ip ?? '';
    t.regex(srvIp, /^10\.200\.2\.1\d\d$/, 'the pod has an address from the CNI range');
    t.deepEqual(
      (await topo.registered(h2)).map((c) => [c.id, c.ip]),
      [[srvPod, srvIp]],
      "the hook registered the sandbox with the pod's IP",
    );
    t.is(ctd2.bundleSpec(srvPod).annotations?.[ANNOTATION_ID], srvPod, 'the shim ran slimfast-runc for the sandbox');
    const echod = await cri2.runContainer(srvPod, ctr('echod', [ECHOD, String(PORT)]), srvCfg);
    await topo.waitListener(srvIp, PORT, 15_000);
    t.deepEqual(
      (await topo.registered(h2)).map((c) => c.id),
      [srvPod],
      "the app container shares the sandbox's registration",
    );
    t.is(ctd2.bundleSpec(echod).annotations?.[ANNOTATION_ID], echod);
    step('server pod listening');

    // Client pod on host 1, on the seccomp path: a dynamically linked client (preload) in one container,
    // a statically linked one (seccomp agent) in the other; both share the sandbox's network namespace.
    const cliCfg = pod(h1, 'cli', { [ANNOTATION_SECCOMP]: 'true' });
    const cliPod = await cri1.runPod(cliCfg, HANDLER);
    const cliIp = (await cri1.podStatus(cliPod)).network?.ip ?? '';
    t.regex(cliIp, /^10\.200\.1\.1\d\d$/);
    t.deepEqual(
      (await topo.registered(h1)).map((c) => [c.id, c.ip]),
      [[cliPod, cliIp]],
    );
    const before = await handoffSnapshot(topo);
    const dyn = await cri1.runContainer(
      cliPod,
      ctr('dyn', ['/bin/sh', '-c', `${CONNRATE} ${srvIp} ${PORT} -n ${CONNS} -t 10 > /tmp/out 2>&1; echo $? > /tmp/rc; exec /bin/sleep 300`]),
      cliCfg,
    );
    const done = async (id: string) => (await cri1.execSync(id, ['/bin/cat', '/tmp/rc'], 10)).exitCode === 0;
    await topo.waitFor(() => done(dyn), 30_000, 'connrate in the "dyn" container to finish');
    const rcOf = async (id: string) => ({
      rc: (await cri1.execSync(id, ['/bin/cat', '/tmp/rc'])).stdout.trim(),
      out: (await cri1.execSync(id, ['/bin/cat', '/tmp/out'])).stdout,
    });
    const d = await rcOf(dyn);
    t.is(d.rc, '0', d.out);
    connrateOk(t, d.out, CONNS);
    await checkHandedOff(t, topo, before, CONNS);
    step('dynamic client container: handed off');

    const spec = ctd1.bundleSpec(dyn);
    t.is(spec.annotations?.[ANNOTATION_SECCOMP], 'true', 'containerd passed the pod annotation on (pod_annotations from the installer)');
    t.is(spec.linux?.seccomp?.listenerPath, path.join(h1.stateDir, 'seccomp.sock'), 'slimfast-runc added the notify rule');

    const k0 = await topo.counters(h1);
    const o0 = await topo.overlayPackets(h1);
    const stat = await cri1.runContainer(
      cliPod,
      ctr('static', ['/bin/sh', '-c', `${STATIC} ${srvIp} ${PORT} -n ${CONNS} -t 10 > /tmp/out 2>&1; echo $? > /tmp/rc; exec /bin/sleep 300`]),
      cliCfg,
    );
    await topo.waitFor(() => done(stat), 30_000, 'connrate-static in the "static" container to finish');
    const s = await rcOf(stat);
    t.is(s.rc, '0', s.out);
    const rs = connrateOk(t, s.out);
    const k1 = await topo.counters(h1);
    const delta = (a: Record<string, number>, b: Record<string, number>) =>
      ['seccomp_fds', 'seccomp_handed', 'seccomp_continued', 'handed_out', 'fallbacks'].map((n) => `${n} +${b[n] - a[n]}`).join(', ');
    t.is(k1.seccomp_handed - k0.seccomp_handed, rs.conns, `the static client's connects went through the seccomp agent (${delta(k0, k1)})`);
    t.deepEqual(await topo.overlayPackets(h1), o0, 'and did not cross the VXLAN device');
    step('static client container: through the seccomp agent');

    // ExecSync: the shim's runc exec; the process gets SlimFast's environment (preload) and, in the
    // seccomp pod, the notify rule with its own notify fd.
    const env = await cri1.execSync(dyn, ['/bin/busybox', 'env']);
    t.true(env.stdout.split('\n').includes(`LD_PRELOAD=${CONTAINER_PRELOAD}`), env.stdout);
    for (const [id, bin, counter] of [
      [dyn, CONNRATE, 'handed_out'],
      [stat, STATIC, 'seccomp_handed'],
    ] as const) {
      const a = await topo.counters(h1);
      const oa = await topo.overlayPackets(h1);
      const x = await cri1.execSync(id, [bin, srvIp, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], 30);
      t.is(x.exitCode, 0, `${x.stdout}\n${x.stderr}`);
      const rx = connrateOk(t, x.stdout);
      const b = await topo.counters(h1);
      t.is(b[counter] - a[counter], rx.conns, `ExecSync of ${path.basename(bin)}: ${counter} (${delta(a, b)})`);
      t.deepEqual(await topo.overlayPackets(h1), oa, 'over SlimFast, not the VXLAN device');
    }
    t.deepEqual(
      (await topo.registered(h1)).map((c) => c.id),
      [cliPod],
      'still one registration for the pod',
    );
    step('ExecSync checked');

    // A pod on the plain runc handler: no slimfast-runc, no registration, no preload; its TCP takes the overlay.
    const plainCfg = pod(h1, 'plain');
    const plainPod = await cri1.runPod(plainCfg);
    t.is((await cri1.podStatus(plainPod)).runtimeHandler, '');
    const plain = await cri1.runContainer(plainPod, sleeper('plain'), plainCfg);
    t.deepEqual(
      (await topo.registered(h1)).map((c) => c.id),
      [cliPod],
      'the runc pod is not registered',
    );
    t.is(ctd1.bundleSpec(plain).annotations?.[ANNOTATION_ID], undefined, 'nor edited by slimfast-runc');
    const penv = await cri1.execSync(plain, ['/bin/busybox', 'env']);
    t.false(penv.stdout.includes('LD_PRELOAD='), penv.stdout);
    const kp = await topo.counters(h1);
    const op = await topo.overlayPackets(h1);
    const xp = await cri1.execSync(plain, [CONNRATE, srvIp, String(PORT), '-n', String(EXEC_CONNS), '-t', '10'], 30);
    t.is(xp.exitCode, 0, `${xp.stdout}\n${xp.stderr}`);
    t.is(parseConnrate(xp.stdout).errors, 0);
    t.is((await topo.counters(h1)).handed_out, kp.handed_out, 'nothing handed out for the runc pod');
    t.true((await topo.overlayPackets(h1)).tx > op.tx, 'its connections crossed the VXLAN device');
    step('runc pod left alone');

    // A pod on the slimfast handler annotated io.slimfast.disable=true (passed on through pod_annotations): left alone too.
    const offCfg = pod(h1, 'off', { [ANNOTATION_DISABLE]: 'true' });
    const offPod = await cri1.runPod(offCfg, HANDLER);
    const off = await cri1.runContainer(offPod, sleeper('off'), offCfg);
    t.is(ctd1.bundleSpec(off).annotations?.[ANNOTATION_DISABLE], 'true', 'containerd passed the annotation on');
    t.is(ctd1.bundleSpec(off).annotations?.[ANNOTATION_ID], undefined, 'and slimfast-runc left the container as it was');
    t.deepEqual(
      (await topo.registered(h1)).map((c) => c.id),
      [cliPod],
      'the disabled pod is not registered',
    );
    t.false((await cri1.execSync(off, ['/bin/busybox', 'env'])).stdout.includes('LD_PRELOAD='));
    step('disabled pod left alone');

    // Stop and remove as the kubelet does: containers, then the sandbox (both hosts at once). Registrations go with the sandboxes.
    const removeAll = async (cri: CriClient, h: Host, pods: [string, string[]][]) => {
      for (const [podId, ids] of pods) {
        for (const id of ids) {
          await cri.stopContainer(id, 0);
          await cri.removeContainer(id);
        }
        if (podId !== plainPod && podId !== offPod)
          t.true(
            (await topo!.registered(h)).some((c) => c.id === podId),
            'the sandbox stays registered while it runs',
          );
        await cri.stopPod(podId);
        await cri.removePod(podId);
        t.false(
          (await topo!.registered(h)).some((c) => c.id === podId),
          `pod ${podId.slice(0, 12)} unregistered after removal`,
        );
      }
    };
    await Promise.all([
      removeAll(cri1, h1, [
        [cliPod, [dyn, stat]],
        [plainPod, [plain]],
        [offPod, [off]],
      ]),
      removeAll(cri2, h2, [[srvPod, [echod]]]),
    ]);
    for (const h of [h1, h2]) {
      t.deepEqual(await topo.registered(h), [], `nothing registered on host ${h.index}`);
      t.deepEqual(socketDirs(h), [], `no socket directory left on host ${h.index}`);
    }
    t.deepEqual([...(await cri1.listPods()), ...(await cri2.listPods())], [], 'no pod left');
    step('pods removed');
  },
);
