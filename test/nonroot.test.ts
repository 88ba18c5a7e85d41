// Non-root processes on SlimFast, end to end on two emulated hosts: servers and clients running as
// uid 1000 (a Dockerfile USER, Kubernetes runAsNonRoot) and a server that starts as root and switches
// user before it listens, in runc containers through slimfast-runc and in namespaces registered with
// `slimfast container add` (whose processes reach their broker socket through the host's mount
// namespace). Every connection is handed off host to host, none crosses the VXLAN devices. A process
// outside a container's network namespace that finds its socket is refused, and told so on stderr.
// Needs root, runc, busybox-static, setpriv and gcc.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { installPaths, repoRoot } from '../common/paths.js';
import { parseConnrate } from '../bench/measure.js';
import { RuncLab, makeBundle, sweepStaleRunc } from '../lab/containers.js';
import { Topology } from '../lab/topology.js';
import { checkHandedOff, handoffSnapshot } from './lib/handoff.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const DROPPER_SRC = path.join(repoRoot(), 'test', 'apps', 'dropuser_echo.c');
const CONNS = 100;
const USER = { uid: 1000, gid: 1000 };

let topo: Topology | undefined;

test.afterEach.always(async () => {
  await topo?.destroy();
  topo = undefined;
});

/** The real uid of a process, from /proc (as the host sees it: no user namespace here). */
const procUid = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/** Makes CONNS connections with connrate through `run`, and checks every one was handed off. */
async function handedOff(t: import('ava').ExecutionContext, what: string, run: () => Promise<{ exitCode?: number; stdout: string; stderr: string }>) {
  const before = await handoffSnapshot(topo!);
  const r = await run();
  t.is(r.exitCode, 0, `${what}: ${r.stderr}`);
  const res = parseConnrate(String(r.stdout));
  t.is(res.errors, 0, `${what}: ${res.first_error}`);
  t.true(res.conns > 0, what);
  await checkHandedOff(t, topo!, before, res.conns);
}

test.serial('runc: containers whose process runs as uid 1000, and a server that switches user before listening, are on SlimFast', async (t) => {
  t.timeout(110_000);
  for (const f of [ECHOD, CONNRATE, installPaths().preload]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
  }
  await sweepStaleRunc();
  topo = await Topology.create({ containers: [1, 2], register: false });
  const lab = new RuncLab(topo);
  const [h1, h2] = topo.hosts;
  const [c1, c2, c3] = ['c1', 'c2', 'c3'].map((n) => topo!.container(n));
  const dropper = path.join(topo.dir, 'dropuser_echo');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', dropper, DROPPER_SRC], { stdio: 'pipe', timeout: 60_000 });

  const rootfs = { binaries: [ECHOD, CONNRATE, dropper], libraryDeps: [installPaths().preload] };
  const bundle = (name: string, netns: string, args: string[], user?: { uid: number; gid: number }) => {
    const dir = makeBundle(path.join(topo!.dir, `bundle-${name}`), { ...rootfs, args: ['/bin/timeout', '-s', 'KILL', '300', ...args], netns });
    const file = path.join(dir, 'config.json');
    const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (user) spec.process.user = user;
    // What a root process needs to switch user (Docker's and containerd's defaults have them; `runc spec`'s not).
    else for (const set of ['bounding', 'effective', 'permitted']) spec.process.capabilities[set].push('CAP_SETUID', 'CAP_SETGID');
    fs.writeFileSync(file, JSON.stringify(spec, null, '\t'));
    return dir;
  };
  // Host 2: echod as uid 1000 (USER in the image), and the dropper started as root.
  const srv = await lab.run(h2, 'srv', bundle('srv', c2.netnsPath, [ECHOD, '7300'], USER));
  const drop = await lab.run(h2, 'drop', bundle('drop', c3.netnsPath, [dropper, String(USER.uid), String(USER.gid), '7301']));
  // Host 1: the client container, its process uid 1000 as well (its execs inherit that).
  const cli = await lab.run(h1, 'cli', bundle('cli', c1.netnsPath, ['/bin/sleep', '300'], USER));
  await topo.waitListener(c2.ip, 7300, 20_000);
  await topo.waitListener(c3.ip, 7301, 20_000);
  t.is(procUid(srv.pid), USER.uid, "the server container's process runs as uid 1000");
  t.is(procUid(cli.pid), USER.uid, "and the client container's");
  await topo.waitFor(async () => fs.readFileSync(drop.stdout, 'utf8').includes('listening'), 10_000, 'the dropper to listen');
  t.regex(fs.readFileSync(drop.stdout, 'utf8'), /^listening uid=1000 gid=1000$/m, 'the dropper listened after switching to uid 1000');
  const id = await lab.exec('cli', ['/bin/busybox', 'id', '-u']);
  t.is(id.stdout.trim(), String(USER.uid), "processes exec'd into the client container run as uid 1000");

  for (const [ip, port, what] of [
    [c2.ip, 7300, 'uid 1000 server'],
    [c3.ip, 7301, 'server that switched user'],
  ] as const) {
    await handedOff(t, what, () => lab.exec('cli', [CONNRATE, ip, String(port), '-n', String(CONNS), '-t', '10'], { timeout: 30_000 }));
  }
  for (const name of ['srv', 'drop']) {
    t.notRegex(fs.readFileSync(path.join(topo.dir, `${lab.id(name)}.err`), 'utf8'), /slimfast/, `${name} said nothing about its broker`);
  }
});

test.serial(
  'container add: a server running as another user reaches its broker socket; processes of other namespaces that find it are refused',
  async (t) => {
    t.timeout(100_000);
    for (const f of [ECHOD, CONNRATE, installPaths().preload]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
    }
    topo = await Topology.create({ containers: [1, 1] });
    const [, h2] = topo.hosts;
    const [c1, c2] = ['c1', 'c2'].map((n) => topo!.container(n));
    const sock = c2.env!.SLIMFAST_SOCKET;
    t.is(fs.statSync(path.join(h2.stateDir, 'containers')).mode & 0o777, 0o711, 'containers/ is traversable, not listable');
    t.is(fs.statSync(sock).mode & 0o777, 0o666);
    const asUser = ['setpriv', `--reuid=${USER.uid}`, `--regid=${USER.gid}`, '--clear-groups'];

    // Server as uid 1000 in c2 (the preload connects to its broker at its first listen); client as uid 1000 in c1.
    const srv = topo.spawn(c2, [...asUser, 'timeout', '-s', 'KILL', '100', ECHOD, '7400']);
    await topo.waitListener(c2.ip, 7400, 20_000);
    await handedOff(t, 'uid 1000 client to uid 1000 server', () =>
      topo!.exec(c1, [...asUser, CONNRATE, c2.ip, '7400', '-n', String(CONNS), '-t', '10'], { timeout: 30_000 }),
    );
    // A root server that switches user before it listens.
    const dropper = path.join(topo.dir, 'dropuser_echo');
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-o', dropper, DROPPER_SRC], { stdio: 'pipe', timeout: 60_000 });
    fs.chmodSync(dropper, 0o755);
    const drop = topo.spawn(c2, ['timeout', '-s', 'KILL', '100', dropper, String(USER.uid), String(USER.gid), '7401']);
    await topo.waitListener(c2.ip, 7401, 20_000);
    await handedOff(t, 'server that switched user', () =>
      topo!.exec(c1, [CONNRATE, c2.ip, '7401', '-n', String(CONNS), '-t', '10'], { timeout: 30_000 }),
    );

    // The socket path is reachable from the host's mount namespace, so the broker checks who connects:
    // a host process (h2's namespace, uid 1000) and another container's (c1, root) are refused, and
    // their preload says so once on stderr; their listen stays an ordinary one.
    const k0 = await topo.counters(h2);
    const refused = /refused this program: it is not in that container's network namespace/;
    const fromHost = await topo.hostExec(h2, [
      ...asUser,
      'env',
      `LD_PRELOAD=${c2.env!.LD_PRELOAD}`,
      `SLIMFAST_SOCKET=${sock}`,
      'timeout',
      '-s',
      'KILL',
      '2',
      ECHOD,
      '7402',
    ]);
    t.regex(String(fromHost.stderr), refused, 'a host process is refused');
    const fromOther = await topo.exec(c1, ['timeout', '-s', 'KILL', '2', ECHOD, '7403'], { env: { SLIMFAST_SOCKET: sock } });
    t.regex(String(fromOther.stderr), refused, "another container's process is refused");
    t.is((await topo.counters(h2)).peer_outside - k0.peer_outside, 2, 'the broker counted both');
    const listeners = (await topo.status(h2)).listeners as { ip: string; port: number }[];
    t.deepEqual(
      listeners.filter((l) => l.port === 7402 || l.port === 7403),
      [],
      'neither registered a listener as c2',
    );

    // SIGTERM: timeout passes it on to the server (SIGKILL would leave the server holding the pipes).
    srv.kill('SIGTERM');
    drop.kill('SIGTERM');
    const [s, d] = await Promise.all([srv, drop]);
    t.notRegex(String(s.stderr), /slimfast/, 'the uid 1000 server said nothing about its broker');
    t.notRegex(String(d.stderr), /slimfast/, 'nor the one that switched user');
  },
);
