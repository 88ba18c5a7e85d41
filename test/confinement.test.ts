// Confinement of the host sockets SlimFast hands to containers. An unprivileged process (uid 65534,
// no capabilities) in a container gets a host-namespace socket for every connect to a SlimFast
// listener (and for every connection its SlimFast listener accepts). test/apps/escape.c works it
// through raw syscalls the preload never sees: disconnect (connect AF_UNSPEC), then connect it to
// the host's own 127.0.0.1 or another host's underlay address, bind it, listen on it, send with
// MSG_FASTOPEN. Every re-pointing call must fail (the broker's cgroup programs: EPERM); the
// disconnect itself may work (the kernel has no hook for it, and the socket is then dead); listen()
// fails on every socket that was ever connected (the kernel's own rule), and a steered listener
// that listens again on its reserved-port bind receives nothing. The control runs the same code on
// a socket of its own in a host namespace, where it must work.
// The "host services" it aims at: echod on 127.0.0.1:9000 in host 1 and on host 2's underlay
// address in host 2. Containers reach their broker socket through a bind mount of its directory
// (as slimfast-runc sets up), since the state dir is root's only; the bind mount lives in the
// mount namespace `ip netns exec` makes for the one command. The last test runs the static build
// in a runc container on the seccomp path (the broker's agent hands the sockets; needs runc and
// busybox-static as test/seccomp.test.ts does).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';
import { makeBundle, RuncLab, sweepStaleRunc } from '../lab/containers.js';
import { type Container, type Host, Topology } from '../lab/topology.js';
import { asNobodyWithSocket, NOBODY } from './lib/nobody.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const SRC = path.join(repoRoot(), 'test', 'apps', 'escape.c');
const SERVICE_PORT = 9000;
const PORT = 7000; // echod under the preload in c2 and c3
const GUARD_COUNTERS = ['guard_denied_connect', 'guard_denied_bind'];

// uid 65534 must reach the binaries: a 0755 directory of their own (the topology's may not be).
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-escape-'));
fs.chmodSync(dir, 0o755);
const ESCAPE = path.join(dir, 'escape');
const ESCAPE_STATIC = path.join(dir, 'escape-static');

let topo: Topology;
let targets: string[] = [];

interface Attack {
  kind: 'client' | 'server' | 'listener' | 'control';
  i?: number;
  local: string | null;
  echo?: boolean;
  disconnect: string | null;
  connect: Record<string, string | null>;
  reached: Record<string, boolean>;
  bind?: string | null;
  listen: string | null;
  fastopen?: string | null;
  relisten_probe?: string | null;
  relisten_accepted?: boolean;
  error?: string;
}

/** Two hosts (c1, c3, c4 on host 1; c2 on host 2), the host services, echod in c2 and c3. */
async function up(clusterKey: boolean): Promise<void> {
  topo = await Topology.create({ containers: [1, 1], clusterKey: clusterKey ? 'file' : 'none' });
  await topo.addContainer(topo.hosts[0], 'c3');
  await topo.register(topo.container('c3'));
  await topo.addContainer(topo.hosts[0], 'c4');
  const [h1, h2] = topo.hosts;
  const services: [Host, string][] = [
    [h1, '127.0.0.1'],
    [h2, h2.ip],
  ];
  targets = services.map(([, ip]) => `${ip}:${SERVICE_PORT}`);
  for (const [h, ip] of services) {
    // Killed by destroy() (adopted, and every process in the host's namespace is ended).
    topo.adopt(execa('ip', ['netns', 'exec', h.ns, ECHOD, String(SERVICE_PORT), ip], { reject: false, stdin: 'ignore', cleanup: true }));
    await topo.waitFor(
      async () => (await topo.hostExec(h, ['ss', '-Hltn', `src ${ip}:${SERVICE_PORT}`])).stdout.trim() !== '',
      10_000,
      `echod on ${ip} in ${h.ns}`,
    );
  }
  for (const name of ['c2', 'c3']) {
    const c = topo.container(name);
    topo.spawn(c, [ECHOD, String(PORT)]);
    await topo.waitPort(c, PORT);
    await topo.waitListener(c.ip, PORT);
  }
}

test.before(async () => {
  for (const [out, extra] of [
    [ESCAPE, []],
    [ESCAPE_STATIC, ['-static']],
  ] as const) {
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', ...extra, '-o', out, SRC], { stdio: 'pipe', timeout: 60_000 });
  }
  await up(false);
});

test.after.always(async () => {
  await topo?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The command, run in container c on SlimFast as uid 65534 (its broker socket bind-mounted where that uid reaches it). */
function asNobody(c: Container, cmd: string[]): string[] {
  const sock = c.env?.SLIMFAST_SOCKET;
  if (!sock) throw new Error(`${c.name} is not registered`);
  return asNobodyWithSocket(
    sock,
    path.join(dir, `run-${c.name}`),
    () => cmd,
    (at) => [`SLIMFAST_SOCKET=${at}`],
  );
}

/** The JSON lines of a finished escape run (execa's or RuncLab's result). */
function parse(
  t: ExecutionContext,
  r: { exitCode?: number; signal?: string; timedOut?: boolean; stdout: unknown; stderr: unknown },
  what: string,
): Attack[] {
  t.is(r.exitCode, 0, `${what} exited with ${r.exitCode ?? r.signal}${r.timedOut ? ' (timed out)' : ''}: ${String(r.stderr)}\n${String(r.stdout)}`);
  const lines = String(r.stdout)
    .split('\n')
    .filter((l) => l.trim() !== '');
  for (const l of lines) t.log(`${what}: ${l}`);
  return lines.map((l) => JSON.parse(l) as Attack);
}

/** `local` is one of these addresses, any port. */
const at = (...ips: string[]): RegExp => new RegExp(`^(${ips.map((ip) => ip.replace(/\./g, '\\.')).join('|')}):\\d+$`);

/** A re-pointing call was refused: it failed, and not merely because a connect is still under way. */
const refused = (v: string | null | undefined): boolean => v !== null && v !== undefined && v !== 'EINPROGRESS' && v !== 'EALREADY';

/** Every attack on one SlimFast-handed socket failed. */
function confined(t: ExecutionContext, a: Attack, local: RegExp): void {
  const what = `${a.kind}${a.i === undefined ? '' : ` ${a.i}`}: ${JSON.stringify(a)}`;
  t.is(a.error, undefined, what);
  t.regex(a.local ?? 'none', local, `a host socket: ${what}`);
  if (a.kind !== 'listener') t.true(a.echo, `the socket worked before the attack: ${what}`);
  for (const target of targets) {
    t.true(refused(a.connect[target]), `connect to ${target} refused: ${what}`);
    t.false(a.reached[target], `${target} not reached: ${what}`);
  }
  if (a.kind !== 'listener') {
    t.true(refused(a.bind), `bind refused: ${what}`);
    t.true(refused(a.fastopen), `sendto(MSG_FASTOPEN) refused: ${what}`);
  }
  if (a.kind === 'listener') {
    // A steered listener keeps its bind to the reserved port: after a disconnect it may listen
    // there again, but it is no longer in the steering program's socket map, which picks every
    // connection's socket (or drops it), so nothing reaches it, not even a connection to its own
    // address.
    if (a.listen === null) t.false(a.relisten_accepted, `a re-listened steered listener gets no connection: ${what}`);
  } else {
    t.not(a.listen, null, `listen refused: ${what}`);
  }
}

async function attackClient(t: ExecutionContext, from: Container, to: Container, port: number, n: number): Promise<Attack[]> {
  const r = await topo.exec(from, asNobody(from, [ESCAPE, 'client', to.ip, String(port), String(n), ...targets]), { timeout: 150_000 });
  const out = parse(t, r, `escape client in ${from.name} to ${to.name}`);
  t.is(out.length, n, 'one line per socket');
  return out;
}

test.serial('control: on a socket of its own (a host namespace, uid 65534) the attack reaches both host services', async (t) => {
  t.timeout(60_000);
  const h1 = topo.hosts[0];
  for (const bin of [ESCAPE, ESCAPE_STATIC]) {
    const out = parse(t, await topo.hostExec(h1, [...NOBODY, bin, 'control', ...targets]), `${path.basename(bin)} control`);
    t.is(out.length, 1);
    const [a] = out;
    t.is(a.error, undefined);
    t.true(a.echo);
    t.is(a.disconnect, null);
    for (const target of targets) {
      t.is(a.connect[target], null, `${path.basename(bin)}: connect to ${target}`);
      t.true(a.reached[target], `${path.basename(bin)}: ${target} answered`);
    }
    t.is(a.bind, null, 'bind works on a disconnected socket of its own');
  }
});

test.serial('cross-host: the sockets a container gets for its connects (broker and pool) cannot be re-pointed', async (t) => {
  t.timeout(180_000);
  const out = await attackClient(t, topo.container('c1'), topo.container('c2'), PORT, 5);
  for (const a of out) confined(t, a, at(topo.hosts[0].ip));
});

test.serial('same host: the sockets a container gets for its connects cannot be re-pointed', async (t) => {
  t.timeout(180_000);
  const out = await attackClient(t, topo.container('c1'), topo.container('c3'), PORT, 5);
  for (const a of out) confined(t, a, at('127.0.0.1', topo.hosts[0].ip));
});

async function serverSide(t: ExecutionContext): Promise<void> {
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const port = 7600;
  const server = topo.spawn(c2, asNobody(c2, [ESCAPE, 'server', String(port), ...targets]));
  await topo.waitListener(c2.ip, port, 15_000);
  const client = await attackClient(t, c1, c2, port, 1);
  const bound = await Promise.race([server, sleep(60_000, undefined, { ref: false })]);
  if (!bound) {
    t.fail('escape server did not finish within 60 s');
    return;
  }
  const out = parse(t, bound, 'escape server in c2');
  t.deepEqual(
    out.map((a) => a.kind),
    ['server', 'listener'],
  );
  for (const a of out) confined(t, a, at(topo.hosts[1].ip));
  for (const a of client) confined(t, a, at(topo.hosts[0].ip));
}

test.serial('server side: neither an accepted socket nor the steered listener can be re-pointed', async (t) => {
  t.timeout(120_000);
  await serverSide(t);
});

test.serial('the broker counts the refused connects and binds', async (t) => {
  t.timeout(120_000);
  const h1 = topo.hosts[0];
  const k0 = await topo.counters(h1);
  const missing = GUARD_COUNTERS.filter((k) => !(k in k0));
  if (missing.length) return t.fail(`the broker has no counter ${missing.join(', ')} (it comes with the broker side of the confinement guard)`);
  const n = 2;
  await attackClient(t, topo.container('c1'), topo.container('c2'), PORT, n);
  const k1 = await topo.counters(h1);
  const d = (k: string) => k1[k] - k0[k];
  t.true(
    d('guard_denied_connect') >= n * targets.length,
    `guard_denied_connect +${d('guard_denied_connect')} for ${n} sockets x ${targets.length} targets`,
  );
  t.true(d('guard_denied_bind') >= n, `guard_denied_bind +${d('guard_denied_bind')} for ${n} sockets`);
});

test.serial("static programs on the seccomp path: the agent's sockets cannot be re-pointed either", async (t) => {
  t.timeout(180_000);
  await sweepStaleRunc();
  const [h1, h2] = topo.hosts;
  const [c2, c4] = ['c2', 'c4'].map((n) => topo.container(n));
  const lab = new RuncLab(topo);
  // uid 65534 without capabilities, for the container's process and every exec in it.
  const bundle = makeBundle(path.join(topo.dir, 'bundle-escape'), {
    binaries: [ESCAPE_STATIC],
    args: ['/bin/timeout', '-s', 'KILL', '300', '/bin/sleep', '300'],
    netns: c4.netnsPath,
  });
  const file = path.join(bundle, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  cfg.annotations = { ...(cfg.annotations ?? {}), 'io.slimfast.seccomp': 'true' };
  cfg.process.user = { uid: 65534, gid: 65534 };
  cfg.process.capabilities = {};
  fs.writeFileSync(file, JSON.stringify(cfg, null, '\t'));
  await lab.run(h1, 'escape', bundle);
  const user = { flags: ['--user', '65534:65534'], timeout: 150_000 };
  // The agent answers getsockname with the virtual address (0.0.0.0 for its listener, as the kernel
  // would): here the counters prove the host sockets.
  const local = at(c4.ip, h1.ip, '0.0.0.0');

  const k0 = await topo.counters(h1);
  const n = 3;
  const r = await lab.exec('escape', [ESCAPE_STATIC, 'client', c2.ip, String(PORT), String(n), ...targets], user);
  const out = parse(t, r, 'static escape client in c4 to c2');
  t.is(out.length, n);
  for (const a of out) confined(t, a, local);
  const k1 = await topo.counters(h1);
  t.true(k1.seccomp_handed - k0.seccomp_handed >= n, `the agent handed out the sockets (seccomp_handed +${k1.seccomp_handed - k0.seccomp_handed})`);

  // The static server: its listen() and accept() through the agent; the client from c2 under the preload.
  const port = 7700;
  const server = lab.exec('escape', [ESCAPE_STATIC, 'server', String(port), ...targets], { ...user, timeout: 90_000 });
  await topo.waitListener(c4.ip, port, 15_000);
  for (const a of await attackClient(t, c2, c4, port, 1)) confined(t, a, at(h2.ip));
  const s = parse(t, await server, 'static escape server in c4');
  t.deepEqual(
    s.map((a) => a.kind),
    ['server', 'listener'],
  );
  for (const a of s) confined(t, a, local);
  t.true((await topo.counters(h1)).seccomp_accepted - k1.seccomp_accepted >= 1, 'the accepted socket came from the agent');
});

/** The keeper of a state dir (its pid), found by its command line. */
function keeperPid(stateDir: string): number | undefined {
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => /seccomp-keeper/.test(a)) && cmd.includes(path.join(stateDir, 'seccomp-keeper.sock'))) return Number(pid);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** How many BPF links and maps a process holds. */
function bpfFds(pid: number): { links: number; maps: number } {
  const targets = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
  return { links: targets.filter((x) => x === 'anon_inode:bpf_link').length, maps: targets.filter((x) => x === 'anon_inode:bpf-map').length };
}

test.serial('a broker restart: the sockets containers hold stay confined while no broker runs, and the next broker keeps their marks', async (t) => {
  t.timeout(180_000);
  const [h1, h2] = topo.hosts;
  const [c1, c2] = ['c1', 'c2'].map((n) => topo.container(n));
  const pid = keeperPid(h1.stateDir);
  if (!pid) return t.fail(`no seccomp keeper runs for ${h1.stateDir}`);
  t.deepEqual(bpfFds(pid), { links: 5, maps: 1 }, 'the keeper holds the guard: its map and its five program links');
  const go = path.join(dir, 'go-restart');
  const client = topo.spawn(c1, asNobody(c1, [ESCAPE, 'client', c2.ip, String(PORT), '3', ...targets]), { env: { ESCAPE_HOLD: go } });
  let said = '';
  client.stderr?.on('data', (d: Buffer) => (said += d.toString()));
  await topo.waitFor(async () => said.includes('held'), 20_000, 'the escape client holding its sockets');
  // Both brokers die at once; the sockets stay in the container's hands.
  await Promise.all([topo.stopBroker(h1, 'SIGKILL'), topo.stopBroker(h2, 'SIGKILL')]);
  fs.writeFileSync(go, '');
  const held = parse(t, await client, 'escape client in c1, its brokers killed');
  t.is(held.length, 3);
  for (const a of held) confined(t, a, at(h1.ip));
  // Started again: the new broker's guard uses the same marks, and the keeper holds only it.
  await Promise.all([topo.startBroker(h1), topo.startBroker(h2)]);
  await topo.waitListener(c2.ip, PORT, 15_000);
  for (const a of await attackClient(t, c1, c2, PORT, 2)) confined(t, a, at(h1.ip));
  t.deepEqual(bpfFds(pid), { links: 5, maps: 1 }, 'one guard held after the restart, the old one let go');
  t.is(keeperPid(h1.stateDir), pid, 'the same keeper');
});

test.serial('with a cluster key: the same confinement, client and server side', async (t) => {
  t.timeout(240_000);
  await topo.destroy();
  await up(true);
  t.truthy(topo.clusterKeyFile, 'the brokers run with --cluster-key');
  for (const a of await attackClient(t, topo.container('c1'), topo.container('c2'), PORT, 3)) confined(t, a, at(topo.hosts[0].ip));
  await serverSide(t);
});
