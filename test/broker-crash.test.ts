// A broker killed with SIGKILL and started again on the same state dir: connections made before
// keep working (the data path never goes through the broker), the containers and the listeners
// are back without restarting any application, and connects made meanwhile never hang.
import test from 'ava';
import { execa } from 'execa';
import { CLIENT, ECHO_SERVER, PY } from './lib/apps.js';
import { type Host, Topology } from '../lab/topology.js';

let topo: Topology;

test.before(async () => {
  topo = await Topology.create({ containers: [1, 1] });
});

test.after.always(async () => {
  await topo?.destroy();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Attempt {
  t: number;
  seconds: number;
  ok: boolean;
  error?: string;
}
interface LoopOut {
  held_start_ok: boolean;
  held_end_ok: boolean;
  attempts: Attempt[];
}

/** client.py loop in c1 against c2:port; resolves once its held connection echoed. */
async function startLoop(port: number, secs: number, everyMs: number): Promise<() => Promise<LoopOut>> {
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const child = execa('ip', topo.argv(c1, [PY, CLIENT, 'loop', c2.ip, String(port), String(secs), String(everyMs)]), {
    reject: false,
    timeout: (secs + 60) * 1000,
  });
  topo.adopt(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await topo.waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`client loop exited early: ${child.exitCode}`);
      return out.includes('"ready"');
    },
    15_000,
    'the client loop to hold its connection',
  );
  return async () => {
    const r = await child;
    if (r.exitCode !== 0) throw new Error(`client loop failed (${r.exitCode}): ${r.stderr}`);
    return JSON.parse(String(r.stdout).trim().split('\n').pop()!) as LoopOut;
  };
}

/** Kills h's broker, waits, starts it again on the same state dir; the time it served again. */
async function crashAndRestart(h: Host, downMs: number, extra: string[] = []): Promise<number> {
  await topo.stopBroker(h, 'SIGKILL');
  await sleep(downMs);
  await topo.startBroker(h, extra);
  return Date.now();
}

function checkLoop(t: import('ava').ExecutionContext, out: LoopOut, servingAt: number, handed: number, side: string) {
  t.true(out.held_start_ok && out.held_end_ok, 'the connection made before the crash still echoes after it');
  const slow = out.attempts.filter((a) => a.seconds >= 4);
  t.deepEqual(slow, [], 'no connect or echo took 4 s or more');
  // From 3 s after the restart on, every connection works and goes through the new broker.
  const late = out.attempts.filter((a) => a.t * 1000 >= servingAt + 3000);
  t.true(late.length >= 10, `${late.length} connections from 3 s after the restart on`);
  t.deepEqual(
    late.filter((a) => !a.ok),
    [],
    'all of them echoed',
  );
  t.true(handed >= late.length, `${handed} connections ${side} by the new broker, ${late.length} made from 3 s after it served`);
  // The first one through the new broker: counted back from the last connection made.
  const sinceServing = out.attempts.filter((a) => a.t * 1000 >= servingAt && a.ok);
  const firstIdx = Math.max(0, sinceServing.length - handed);
  const first = sinceServing[firstIdx];
  const failed = out.attempts.filter((a) => !a.ok);
  const failedDuring = failed.length;
  if (failed.length)
    t.log(
      `failed: ${failed
        .map((a) => `${((a.t * 1000 - servingAt) / 1000).toFixed(2)} s ${a.error ?? 'no echo'}`)
        .slice(0, 8)
        .join('; ')}`,
    );
  if (first)
    t.log(
      `first connection through the restarted broker ~${((first.t * 1000 - servingAt) / 1000).toFixed(2)} s after it served; ${failedDuring} of ${out.attempts.length} connections failed (fast) around the crash`,
    );
}

test.serial("the server host's broker dies: connections keep working, the listener is back within 3 s", async (t) => {
  const [, h2] = topo.hosts;
  const c2 = topo.container('c2');
  const server = topo.spawn(c2, [PY, ECHO_SERVER, '7600']);
  await topo.waitPort(c2, 7600);
  await topo.waitListener(c2.ip, 7600);
  const done = await startLoop(7600, 12, 100);
  await sleep(1000);
  const servingAt = await crashAndRestart(h2, 1000);
  // The container is known again from the state dir, and the application registered its listener.
  t.true(
    (await topo.registered(h2)).some((c) => c.ip === c2.ip),
    'the container is registered again',
  );
  await topo.waitFor(
    async () => (await topo.status(h2)).listeners?.some((l: { port: number }) => l.port === 7600),
    3000,
    "the listener in the new broker's table",
  );
  t.log(`listener in the restarted broker's table ${Date.now() - servingAt} ms after it served (status polled)`);
  const out = await done();
  const k = await topo.counters(h2);
  checkLoop(t, out, servingAt, k.handed_in, 'handed in');
  t.true(k.steered_again + k.listen_ok >= 1, 'the listener was registered again');
  server.kill('SIGKILL');
  await server.catch(() => {});
});

test.serial("the client host's broker dies: its applications connect through SlimFast again within 3 s", async (t) => {
  const [h1] = topo.hosts;
  const c2 = topo.container('c2');
  const server = topo.spawn(c2, [PY, ECHO_SERVER, '7700']);
  await topo.waitPort(c2, 7700);
  await topo.waitListener(c2.ip, 7700);
  const done = await startLoop(7700, 12, 100);
  await sleep(1000);
  const servingAt = await crashAndRestart(h1, 1000);
  const out = await done();
  const k = await topo.counters(h1);
  checkLoop(t, out, servingAt, k.handed_out, 'handed out');
  server.kill('SIGKILL');
  await server.catch(() => {});
});

test.serial('while the brokers are down, connects fall back or fail at once, and new listeners are ordinary ones', async (t) => {
  const [h1, h2] = topo.hosts;
  const c1 = topo.container('c1');
  const c2 = topo.container('c2');
  const servers = [topo.spawn(c2, [PY, ECHO_SERVER, '7800'])];
  await topo.waitPort(c2, 7800);
  await topo.waitListener(c2.ip, 7800);
  await Promise.all([topo.stopBroker(h1, 'SIGKILL'), topo.stopBroker(h2, 'SIGKILL')]);
  // A listener made now stays the application's own socket, reached over the overlay.
  servers.push(topo.spawn(c2, [PY, ECHO_SERVER, '7801']));
  await topo.waitPort(c2, 7801);
  for (const port of [7800, 7801]) {
    const r = await topo.exec(c1, [PY, CLIENT, 'connects', c2.ip, String(port), '10'], { timeout: 120_000 });
    t.is(r.exitCode, 0, r.stderr);
    const list = JSON.parse(r.stdout) as { connected: boolean; errno?: number; seconds: number }[];
    t.is(list.length, 10);
    for (const c of list) {
      t.true(c.seconds < 4, `port ${port}: a connect took ${c.seconds.toFixed(2)} s`);
      // ECONNREFUSED: a steered listener's plain-client socket went with its broker
      if (!c.connected) t.true([111, 113].includes(c.errno ?? 0), `port ${port}: errno ${c.errno}`);
    }
    if (port === 7801)
      t.true(
        list.every((c) => c.connected),
        'the listener made while the broker was down is served',
      );
  }
  await Promise.all([topo.startBroker(h1), topo.startBroker(h2)]);
  for (const s of servers) s.kill('SIGKILL');
  await Promise.all(servers.map((s) => s.catch(() => {})));
});

test.serial('without kernel steering: a channel listener falls back while its broker is down and is registered again', async (t) => {
  const [h1, h2] = topo.hosts;
  const c2 = topo.container('c2');
  await Promise.all([topo.stopBroker(h1), topo.stopBroker(h2)]);
  await Promise.all([topo.startBroker(h1, ['--no-steering']), topo.startBroker(h2, ['--no-steering'])]);
  await topo.waitSynced();
  topo.spawn(c2, [PY, ECHO_SERVER, '7900']);
  await topo.waitPort(c2, 7900);
  await topo.waitListener(c2.ip, 7900);
  t.is((await topo.counters(h2)).steered_listeners, 0, 'the listener is a channel one');
  const done = await startLoop(7900, 12, 100);
  await sleep(1000);
  const servingAt = await crashAndRestart(h2, 1000, ['--no-steering']);
  const out = await done();
  const k = await topo.counters(h2);
  checkLoop(t, out, servingAt, k.handed_in, 'handed in');
  // While the broker was down the application served plain clients on its own socket again.
  t.true(
    out.attempts.filter((a) => a.t * 1000 < servingAt && a.t * 1000 > servingAt - 2000).some((a) => a.ok),
    'connections while the broker was down fell back to the overlay and were served',
  );
});
