// The broker's runtime service end to end: slimfast-runc and slimfast-hook hand their work to the
// running broker (STATE_DIR/runtime.sock) and start no Node.js process; without a broker they run
// their Node.js programs as before. Node.js is made unreachable for the front ends
// (SLIMFAST_NODE=/nonexistent), so a start that succeeds went through the service, and one that
// needs Node.js says so. Needs root, runc (/usr/sbin/runc) and busybox-static.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { ControlClient } from '../common/control-client.js';
import { installPaths } from '../common/paths.js';
import { makeBundle, REAL_RUNC, RuncLab, SLIMFAST_RUNC, sweepStaleRunc, writeProcessFile } from '../lab/containers.js';
import { Topology } from '../lab/topology.js';
import { CONTAINER_SOCKET } from '../runtime-wrapper/constants.js';

const NO_NODE = { SLIMFAST_NODE: '/nonexistent/node' };

let topo: Topology | undefined;
let lab: RuncLab | undefined;

test.after.always(async () => {
  await lab?.destroy();
  await topo?.destroy();
});

function runc(args: string[], env: NodeJS.ProcessEnv, timeout = 60_000) {
  return spawnSync(SLIMFAST_RUNC, args, { env, encoding: 'utf8', timeout });
}

/** slimfast-hook STAGE with stdin held open (never ends); resolves with its status and stderr. */
function hookWithOpenStdin(stage: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(installPaths().hook, [stage], { env, stdio: ['pipe', 'ignore', 'pipe'] });
    child.stdin.write('{"id":');
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(kill);
      child.stdin.destroy();
      resolve({ code, stderr, ms: Date.now() - t0 });
    });
  });
}

test.serial('container start through the runtime service: no Node.js per container, same behaviour, and the fallback without a broker', async (t) => {
  t.timeout(240_000);
  await sweepStaleRunc();
  topo = await Topology.create({ containers: [1, 1], register: false });
  lab = new RuncLab(topo);
  const [h1] = topo.hosts;
  const c1 = topo.container('c1');
  const env = { ...lab.env(h1), ...NO_NODE };

  // 1. run: edited (the preload env), registered before the process starts (its broker socket
  // exists), unregistered by poststop; no Node.js anywhere.
  const probe = `test -S ${CONTAINER_SOCKET} && echo registered; echo "preload=$LD_PRELOAD"`;
  const bundle = makeBundle(path.join(topo.dir, 'b-run'), { args: ['/bin/sh', '-c', probe], netns: c1.netnsPath });
  const r = runc(['--root', lab.root, 'run', '-b', bundle, `${topo.id}-run`], env);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^registered$/m, 'the createRuntime hook registered the container before it ran');
  t.regex(r.stdout, /preload=\S*libslimfast\.so/, "slimfast-runc's edit gave the process the preload");
  t.deepEqual(await topo.registered(h1), [], 'the poststop hook unregistered it');

  // 2. An edit error through the service reads as the Node.js edit step's.
  const broken = path.join(topo.dir, 'b-broken');
  fs.mkdirSync(broken);
  fs.writeFileSync(path.join(broken, 'config.json'), '{"ociVersion": ');
  const viaService = runc(['--root', lab.root, 'create', '-b', broken, `${topo.id}-broken`], env);
  const viaNode = runc(['--root', lab.root, 'create', '-b', broken, `${topo.id}-broken`], { ...lab.env(h1), SLIMFAST_NO_RUNTIME_SERVICE: '1' });
  t.is(viaService.status, 1);
  t.is(viaNode.status, 1);
  t.regex(viaService.stderr, /config\.json/, viaService.stderr);
  t.is(viaService.stderr, viaNode.stderr);
  t.is(fs.readFileSync(path.join(broken, 'config.json'), 'utf8'), '{"ociVersion": ', 'the broken file is left as it was');

  // 3. A hook whose stdin never ends: the service applies the hook timeout (and its message).
  const hung = await hookWithOpenStdin('poststop', { ...env, SLIMFAST_HOOK_TIMEOUT: '1' });
  t.is(hung.code, 1, hung.stderr);
  t.regex(hung.stderr, /^slimfast-hook poststop: timed out after 1 s \(SLIMFAST_HOOK_TIMEOUT\)/);
  t.true(hung.ms < 10_000, `${hung.ms} ms`);

  // 4. The broker killed (SIGKILL) during 20 back-to-back starts, with one container running: every
  // start ends (none waits on the dead broker), the ones after it fail with the broker-down advice
  // (no allowWithoutBroker), no container is left in runc, and the restarted broker drops the
  // registration of the container that stopped while it was down.
  const sleeper = makeBundle(path.join(topo.dir, 'b-held'), {
    args: ['/bin/timeout', '-s', 'KILL', '300', '/bin/sleep', '300'],
    netns: c1.netnsPath,
  });
  const held = await lab.run(h1, 'held', sleeper);
  t.deepEqual(
    (await topo.registered(h1)).map((c) => c.id),
    [held.id],
  );
  // exec --process FILE through the service: the file gains the preload env (runc state read by the broker)
  const proc = writeProcessFile(path.join(topo.dir, 'exec-process.json'), ['/bin/sh', '-c', 'echo "preload=$LD_PRELOAD"']);
  const ex = runc(['--root', lab.root, 'exec', '--process', proc, held.id], env);
  t.is(ex.status, 0, ex.stderr);
  t.regex(ex.stdout, /preload=\S*libslimfast\.so/, "the exec'd process got the preload");
  const many = makeBundle(path.join(topo.dir, 'b-many'), { args: ['/bin/true'], netns: c1.netnsPath });
  const outcomes: { i: number; code: number | undefined; timedOut: boolean; stderr: string }[] = [];
  for (let i = 0; i < 20; i++) {
    if (i === 6) {
      await topo.stopBroker(h1, 'SIGKILL');
      await lab.kill('held');
      await lab.waitStopped('held');
      await lab.delete('held'); // its poststop finds no broker
    }
    const x = await execa(SLIMFAST_RUNC, ['--root', lab.root, 'run', '-b', many, `${topo.id}-m${i}`], {
      env: lab.env(h1),
      reject: false,
      timeout: 30_000,
    });
    outcomes.push({ i, code: x.exitCode, timedOut: x.timedOut, stderr: String(x.stderr).slice(-300) });
  }
  t.log(outcomes.map((o) => `${o.i}:${o.code}`).join(' '));
  t.deepEqual(
    outcomes.filter((o) => o.timedOut),
    [],
    'no start hung',
  );
  t.true(
    outcomes.slice(0, 6).every((o) => o.code === 0),
    JSON.stringify(outcomes.slice(0, 6)),
  );
  for (const o of outcomes.slice(6)) {
    t.not(o.code, 0);
    t.regex(o.stderr, /slimfast daemon.*allowWithoutBroker/, o.stderr);
  }
  const left = await execa(REAL_RUNC, ['--root', lab.root, 'list', '-q'], { reject: false });
  t.is(String(left.stdout).trim(), '', 'no container left in runc');
  await topo.startBroker(h1);
  t.deepEqual(await topo.registered(h1), [], 'the restarted broker holds no registration');
  const again = runc(['--root', lab.root, 'run', '-b', bundle, `${topo.id}-again`], env);
  t.is(again.status, 0, again.stderr);
  t.regex(again.stdout, /^registered$/m, 'and serves starts again');

  // 4b. A stopped broker (SIGSTOP) holds its sockets but answers nothing. slimfast-runc waits 1 s on
  // the runtime service and edits with Node.js; the hook then waits 0.3 s on the service and its
  // Node.js program 0.3 s on the control API: the start fails with the broker-down advice within
  // seconds, not after a whole hook timeout (10 s) or two.
  const health = new ControlClient(h1.stateDir);
  const brokerPid = (await health.health()).pid;
  health.close();
  process.kill(brokerPid, 'SIGSTOP');
  let stopped: { code: number | undefined; ms: number; stderr: string };
  try {
    const t0 = performance.now();
    const x = await execa(SLIMFAST_RUNC, ['--root', lab.root, 'run', '-b', many, `${topo.id}-stopped`], {
      env: lab.env(h1),
      reject: false,
      timeout: 30_000,
    });
    stopped = { code: x.exitCode, ms: performance.now() - t0, stderr: String(x.stderr) };
  } finally {
    process.kill(brokerPid, 'SIGCONT');
  }
  t.log(`a start against a stopped broker failed after ${stopped.ms.toFixed(0)} ms`);
  t.not(stopped.code, 0);
  t.regex(stopped.stderr, /is not answering.*allowWithoutBroker/s, stopped.stderr);
  t.true(stopped.ms < 8000, `${stopped.ms} ms`);
  t.is(
    String((await execa(REAL_RUNC, ['--root', lab.root, 'list', '-q'], { reject: false })).stdout).trim(),
    '',
    'the failed container is gone from runc',
  );

  // 5. No broker: the front ends need their Node.js programs, and say so.
  await topo.stopBroker(h1);
  const down = runc(['--root', lab.root, 'run', '-b', bundle, `${topo.id}-down`], env);
  t.not(down.status, 0);
  t.regex(down.stderr, /cannot run \/nonexistent\/node/, down.stderr);
});
