// End to end with real runc containers through slimfast-runc on two emulated hosts: the containers join
// network namespaces the lab made (as CNI leaves them), slimfast-hook registers them with their host's
// broker (the lab does not), and their TCP goes over SlimFast, not the VXLAN overlay.
// Needs root, runc (/usr/sbin/runc) and busybox-static.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { installPaths, repoRoot } from '../common/paths.js';
import { makeBundle, RuncLab, sweepStaleRunc, writeProcessFile } from '../lab/containers.js';
import { Topology } from '../lab/topology.js';
import { checkHandedOff, connrateOk, handoffSnapshot } from './lib/handoff.js';

const ECHOD = path.join(repoRoot(), 'bench', 'clients', 'echod');
const CONNRATE = path.join(repoRoot(), 'bench', 'clients', 'connrate');
const PORT = 7100;
const CONNS = 200;

let topo: Topology | undefined;

test.after.always(async () => {
  await topo?.destroy();
});

test.serial('runc containers through slimfast-runc: registered by the hook, TCP over SlimFast, exec, poststop, pass-through', async (t) => {
  for (const f of [ECHOD, CONNRATE, installPaths().preload]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm run build:native`);
  }
  // Fail (and clean up in after.always) well before ava's own timeout, which skips the after hooks.
  t.timeout(100_000);
  const t0 = Date.now();
  const step = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  await sweepStaleRunc();
  topo = await Topology.create({ containers: [1, 1], register: false });
  const lab = new RuncLab(topo);
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  t.deepEqual(await topo!.registered(h1), [], 'the lab registered nothing itself');
  t.deepEqual(await topo!.registered(h2), []);

  // Every binary the containers run is bounded in time, in case a killed run leaves them behind.
  const rootfs = { binaries: [ECHOD, CONNRATE], libraryDeps: [installPaths().preload] };
  const srvBundle = makeBundle(path.join(topo.dir, 'bundle-srv'), {
    ...rootfs,
    args: ['/bin/timeout', '-s', 'KILL', '300', ECHOD, String(PORT)],
    netns: c2.netnsPath,
  });
  const client = `${CONNRATE} ${c2.ip} ${PORT} -n ${CONNS} -t 10`;
  const cliBundle = makeBundle(path.join(topo.dir, 'bundle-cli'), {
    ...rootfs,
    args: ['/bin/sh', '-c', `${client}; echo "connrate-exit=$?"; exec /bin/timeout -s KILL 300 /bin/sleep 300`],
    netns: c1.netnsPath,
  });

  step('topology up');
  // Server on host 2.
  const srv = await lab.run(h2, 'srv', srvBundle);
  step('server container running');
  await topo.waitListener(c2.ip, PORT, 15_000);
  step('server listening');
  const onH2 = await topo!.registered(h2);
  t.deepEqual(
    onH2.map((c) => [c.id, c.ip]),
    [[srv.id, c2.ip]],
    "the hook registered the server container with its namespace's IP",
  );

  // Client on host 1: its init process makes CONNS connections, then sleeps.
  const before = await handoffSnapshot(topo);
  const cli = await lab.run(h1, 'cli', cliBundle);
  step('client container running');
  await topo.waitFor(
    async () => fs.readFileSync(cli.stdout, 'utf8').includes('connrate-exit='),
    30_000,
    'connrate in the client container to finish',
  );
  step('client done');
  const out = fs.readFileSync(cli.stdout, 'utf8');
  t.regex(out, /connrate-exit=0/, `${out}\n${fs.readFileSync(cli.stderr, 'utf8')}`);
  const run = connrateOk(t, out);
  t.true(run.conns > 0);
  await checkHandedOff(t, topo, before, run.conns);

  // (a) both registered while running.
  const onH1 = await topo!.registered(h1);
  t.deepEqual(
    onH1.map((c) => [c.id, c.ip]),
    [[cli.id, c1.ip]],
    "the hook registered the client container with its namespace's IP",
  );
  t.deepEqual(
    (await topo!.registered(h2)).map((c) => c.id),
    [srv.id],
  );

  step('registrations checked');
  // (c) exec: the process gets SlimFast's environment and its connections are handed off too.
  const env = await lab.exec('cli', ['/bin/busybox', 'env']);
  t.is(env.exitCode, 0, env.stderr);
  t.regex(env.stdout, /^LD_PRELOAD=\/\.slimfast\/libslimfast\.so$/m);
  t.regex(env.stdout, /^SLIMFAST_SOCKET=\/\.slimfast\/run\/sf\.sock$/m);
  const k0 = await topo.counters(h1);
  const o0 = await topo.overlayPackets(h1);
  const x1 = await lab.exec('cli', [CONNRATE, c2.ip, String(PORT), '-n', '50', '-t', '10'], { timeout: 30_000 });
  t.is(x1.exitCode, 0, x1.stderr);
  const r1 = connrateOk(t, x1.stdout);
  t.true(r1.conns > 0);
  // exec --process FILE: slimfast-runc adds the environment to the file (it has none of it here).
  const processFile = writeProcessFile(path.join(topo.dir, 'exec-process.json'), [CONNRATE, c2.ip, String(PORT), '-n', '50', '-t', '10']);
  const x2 = await lab.exec('cli', [], { flags: ['--process', processFile], timeout: 30_000 });
  t.is(x2.exitCode, 0, x2.stderr);
  const r2 = connrateOk(t, x2.stdout);
  t.true(r2.conns > 0);
  t.is((await topo.counters(h1)).handed_out - k0.handed_out, r1.conns + r2.conns, "exec'd processes' connections were handed out as well");
  t.deepEqual(await topo.overlayPackets(h1), o0, 'and did not cross the VXLAN device');

  step('exec checked');
  // (e) pass-through: state is runc's own output.
  for (const name of ['cli', 'srv']) {
    const mine = await lab.state(name);
    const real = await lab.state(name, { real: true });
    t.is(mine.exitCode, 0, mine.stderr);
    t.is(mine.stdout, real.stdout);
    t.is(mine.stderr, real.stderr);
    t.is((JSON.parse(mine.stdout) as { status: string }).status, 'running');
  }

  step('state checked');
  // (d) kill + delete: the poststop hook unregisters.
  for (const [name, h] of [
    ['cli', h1],
    ['srv', h2],
  ] as const) {
    const k = await lab.kill(name);
    t.is(k.exitCode, 0, k.stderr);
    await lab.waitStopped(name);
    const d = await lab.delete(name);
    t.is(d.exitCode, 0, d.stderr);
    t.deepEqual(await topo!.registered(h), [], `${name} is unregistered after delete`);
    t.deepEqual(fs.readdirSync(path.join(h.stateDir, 'containers')), [], `${name}'s socket directory is gone`);
    step(`${name} deleted`);
  }
  t.is((await lab.runc(h1, ['list', '-q'], { real: true })).stdout.trim(), '', 'no container left in the runc root');
});
