// Statically linked programs on SlimFast through the broker's seccomp agent: a runc container
// annotated io.slimfast.seccomp=true (slimfast-runc adds a SCMP_ACT_NOTIFY rule for connect whose
// listener is the broker) runs connrate-static, which the preload cannot reach. Its connects to a
// SlimFast listener on the other host get host connections from the broker (seccomp_handed) and
// cross no VXLAN device; its connects elsewhere (the container's loopback) run unchanged
// (seccomp_continued); getsockname/getpeername of the sockets it swapped answer virtual addresses;
// a connect the policy denies fails with EACCES; a dynamically linked program in the same container
// keeps the preload's path.
// Needs root, runc (/usr/sbin/runc) with libseccomp 2.5+, a 5.9+ kernel and busybox-static.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths, repoRoot } from '../broker/paths.js';
import { parseConnrate } from '../bench/measure.js';
import { RuncLab, makeBundle, sweepStaleRunc } from '../lab/containers.js';
import { Topology } from '../lab/topology.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const STATIC = path.join(repoRoot(), 'bench', 'clients', 'connrate-static');
const PEERNAME_SRC = path.join(repoRoot(), 'test', 'apps', 'peername.c');
const PORT = 7100;
const LOCAL_PORT = 7200;
const DENIED_PORT = 7300;
const CONNS = 100;

let topo: Topology | undefined;
const policyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-seccomp-'));

test.after.always(async () => {
  await topo?.destroy();
  fs.rmSync(policyDir, { recursive: true, force: true });
});

test.serial('a static client in a runc container annotated io.slimfast.seccomp=true: host connections through the seccomp agent, everything else unchanged', async (t) => {
  for (const f of [ECHOD, CONNRATE, STATIC, installPaths().preload]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
  }
  t.timeout(100_000);
  const t0 = Date.now();
  const step = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  await sweepStaleRunc();
  // The policy denies the client container one port of the server container.
  const policyFile = path.join(policyDir, 'policy.json');
  fs.writeFileSync(policyFile, JSON.stringify({ default: 'allow', rules: [{ action: 'deny', from: '10.200.1.2', to: '10.200.2.2', ports: String(DENIED_PORT) }] }));
  topo = await Topology.create({ containers: [1, 1], register: false, brokerArgs: () => ['--policy', policyFile] });
  const lab = new RuncLab(topo);
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  t.deepEqual([c1.ip, c2.ip], ['10.200.1.2', '10.200.2.2'], 'the addresses the policy names');
  t.true(fs.existsSync(path.join(h1.stateDir, 'seccomp.sock')), 'the broker listens for notify fds in its state dir');

  const peername = path.join(topo.dir, 'peername');
  execFileSync('gcc', ['-O2', '-static', '-o', peername, PEERNAME_SRC], { stdio: 'pipe', timeout: 60_000 });
  const rootfs = { binaries: [ECHOD, CONNRATE, STATIC, peername], libraryDeps: [installPaths().preload] };
  const srvBundle = makeBundle(path.join(topo.dir, 'bundle-srv'), {
    ...rootfs,
    args: ['/bin/timeout', '-s', 'KILL', '300', ECHOD, String(PORT)],
    netns: c2.netnsPath,
  });
  // The client container: an echo server of its own (for the non-overlay case), then it sleeps.
  const cliBundle = makeBundle(path.join(topo.dir, 'bundle-cli'), {
    ...rootfs,
    args: ['/bin/sh', '-c', `/bin/timeout -s KILL 300 ${ECHOD} ${LOCAL_PORT} & exec /bin/timeout -s KILL 300 /bin/sleep 300`],
    netns: c1.netnsPath,
  });
  const cfgFile = path.join(cliBundle, 'config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  cfg.annotations = { ...(cfg.annotations ?? {}), 'io.slimfast.seccomp': 'true' };
  fs.writeFileSync(cfgFile, JSON.stringify(cfg, null, '\t'));

  await lab.run(h2, 'srv', srvBundle);
  await topo.waitListener(c2.ip, PORT, 15_000);
  step('server listening on host 2');
  const k0 = await topo.counters(h1);
  const cli = await lab.run(h1, 'cli', cliBundle);
  await topo.waitListener(c1.ip, LOCAL_PORT, 15_000);
  step('client container running');
  const edited = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  t.like(edited.linux.seccomp, { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: path.join(h1.stateDir, 'seccomp.sock'), listenerMetadata: cli.id });
  const k1 = await topo.counters(h1);
  t.true(k1.seccomp_fds - k0.seccomp_fds >= 1, `runc handed the container's notify fd to the broker (seccomp_fds ${k0.seccomp_fds} -> ${k1.seccomp_fds})`);

  // (1) The static client to the SlimFast listener on host 2: every connect handed out by the agent.
  const o1 = await topo.overlayPackets(h1);
  const o2 = await topo.overlayPackets(h2);
  const x1 = await lab.exec('cli', [STATIC, c2.ip, String(PORT), '-n', String(CONNS), '-t', '10'], { timeout: 30_000 });
  t.is(x1.exitCode, 0, `${x1.stdout}\n${x1.stderr}\n${JSON.stringify(await topo.counters(h1))}\n${fs.readFileSync(h1.daemonLog, 'utf8').slice(-3000)}`);
  const r1 = parseConnrate(x1.stdout);
  t.is(r1.errors, 0, r1.first_error);
  t.true(r1.conns > 0);
  const k2 = await topo.counters(h1);
  const d = (a: Record<string, number>, b: Record<string, number>, names: string[]) => names.map((n) => `${n} +${b[n] - a[n]}`).join(', ');
  const names = ['seccomp_handed', 'seccomp_continued', 'handed_out', 'fallbacks', 'connect_failures', 'seccomp_pending'];
  t.is(k2.seccomp_handed - k1.seccomp_handed, r1.conns, `every connect went through the seccomp agent (${d(k1, k2, names)})`);
  t.is(k2.handed_out - k1.handed_out, r1.conns, 'and counts as handed out');
  t.is(k2.seccomp_pending, 0, 'no notification is held any more');
  t.deepEqual(await topo.overlayPackets(h1), o1, 'VXLAN device on host 1 carried no packets');
  t.deepEqual(await topo.overlayPackets(h2), o2, 'VXLAN device on host 2 carried no packets');
  step(`static client: ${r1.conns} connections through the agent`);

  // getsockname/getpeername of a socket the agent put in place: the virtual addresses (truncated
  // like the kernel's into a short buffer, with the full length).
  const p1 = await lab.exec('cli', [peername, c2.ip, String(PORT)], { timeout: 30_000 });
  t.is(p1.exitCode, 0, p1.stderr);
  const m = /^local=([\d.]+):(\d+) peer=([\d.]+):(\d+) short=([\d.]+) len=(\d+) echo=ok$/m.exec(p1.stdout);
  t.truthy(m, p1.stdout);
  t.is(m?.[1], c1.ip, 'getsockname: the container\'s address');
  t.true(Number(m?.[2]) > 0);
  t.is(`${m?.[3]}:${m?.[4]}`, `${c2.ip}:${PORT}`, 'getpeername: the server container\'s address');
  t.is(m?.[5], `${c2.ip.split('.').slice(0, 2).join('.')}.255.255`, 'a 6-byte buffer gets 6 bytes');
  t.is(m?.[6], '16');
  t.is((await topo.counters(h1)).seccomp_handed - k2.seccomp_handed, 1);

  // A connect the policy denies fails with EACCES, as with the preload.
  const pd = (await topo.counters(h1)).policy_denied;
  const p0 = await lab.exec('cli', [peername, c2.ip, String(DENIED_PORT)], { timeout: 30_000 });
  t.is(p0.exitCode, 1, p0.stdout);
  t.regex(p0.stderr, /^connect: Permission denied$/m);
  t.is((await topo.counters(h1)).policy_denied, pd + 1, 'counted as a policy denial');

  // (2) Not a SlimFast destination (the container's own loopback): the kernel runs the connect as usual.
  const x2 = await lab.exec('cli', [STATIC, '127.0.0.1', String(LOCAL_PORT), '-n', '20', '-t', '10'], { timeout: 30_000 });
  t.is(x2.exitCode, 0, x2.stderr);
  const r2 = parseConnrate(x2.stdout);
  t.is(r2.errors, 0, r2.first_error);
  t.true(r2.conns > 0);
  const k3 = await topo.counters(h1);
  t.is(k3.seccomp_handed, k2.seccomp_handed + 1, 'nothing handed out for loopback');
  t.true(k3.seccomp_continued - k2.seccomp_continued >= r2.conns, `every loopback connect continued (${d(k2, k3, names)})`);
  const p2 = await lab.exec('cli', [peername, '127.0.0.1', String(LOCAL_PORT)], { timeout: 30_000 });
  t.is(p2.exitCode, 0, p2.stderr);
  t.regex(p2.stdout, new RegExp(`^local=127\\.0\\.0\\.1:\\d+ peer=127\\.0\\.0\\.1:${LOCAL_PORT} short=127\\.0\\.255\\.255 len=16 echo=ok$`, 'm'), 'the kernel\'s own answers elsewhere');
  step('loopback through CONTINUE');

  // (3) A dynamically linked client in the same container keeps the preload's path.
  const x3 = await lab.exec('cli', [CONNRATE, c2.ip, String(PORT), '-n', '50', '-t', '10'], { timeout: 30_000 });
  t.is(x3.exitCode, 0, x3.stderr);
  const r3 = parseConnrate(x3.stdout);
  t.is(r3.errors, 0, r3.first_error);
  const k4 = await topo.counters(h1);
  t.is(k4.handed_out - k3.handed_out, r3.conns, 'the preload\'s connects are handed out');
  t.is(k4.seccomp_handed, k3.seccomp_handed, 'without the agent');
  t.deepEqual(await topo.overlayPackets(h1), o1, 'VXLAN device on host 1 still carried no packets');

  // Deleting the container closes its notify fds (every process using the filter is gone).
  for (const name of ['cli', 'srv']) {
    t.is((await lab.kill(name)).exitCode, 0);
    await lab.waitStopped(name);
    t.is((await lab.delete(name)).exitCode, 0);
  }
  await topo.waitFor(async () => (await topo!.counters(h1)).seccomp_fds === k0.seccomp_fds, 10_000, 'the notify fds to be closed');
  step('containers deleted');
});
