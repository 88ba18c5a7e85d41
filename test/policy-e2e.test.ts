// Connect-time policy end to end: two emulated hosts whose brokers run with --policy FILE. A denied
// connect fails in the app with EACCES at once and sends nothing; the file is reloaded when it
// changes (a bad version keeps the policy in force); a deny reaches processes that hold pools.
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI, type Container, type Host, Topology } from '../lab/topology.js';
import { CLIENT, ECHO_SERVER, type EchoRun, echoRun, PY } from './lib/apps.js';

interface Try {
  connected: boolean;
  errno?: number;
  seconds: number;
}

const EACCES = 13;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-policy-'));
const file = path.join(dir, 'policy.json');
let topo: Topology;

const c1Deny = (to: string, ports: string) => ({ action: 'deny', from: '10.200.1.2', to, ports });
const FIRST = { default: 'allow', rules: [c1Deny('10.200.2.2', '7001'), c1Deny('10.200.1.3', '7100')] };

/** Replaces the file the way configuration tools do (a new file renamed over it), or in place. */
function writePolicy(doc: unknown, inPlace = false): void {
  const text = typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2);
  if (inPlace) {
    fs.writeFileSync(file, text);
    return;
  }
  fs.writeFileSync(`${file}.new`, text);
  fs.renameSync(`${file}.new`, file);
}

test.before(async () => {
  writePolicy(FIRST);
  // c1 (10.200.1.2), c2 (10.200.1.3) on host 1; c3 (10.200.2.2) on host 2.
  topo = await Topology.create({ containers: [2, 1], brokerArgs: () => ['--policy', file] });
  const [c2, c3] = [topo.container('c2'), topo.container('c3')];
  for (const port of [7000, 7001]) topo.spawn(c3, [PY, ECHO_SERVER, String(port)]);
  topo.spawn(c2, [PY, ECHO_SERVER, '7100']);
  for (const [c, port] of [
    [c3, 7000],
    [c3, 7001],
    [c2, 7100],
  ] as const) {
    await topo.waitPort(c, port);
    await topo.waitListener(c.ip, port);
  }
});

test.after.always(async () => {
  await topo?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function connects(from: string, to: Container, port: number, count: number): Promise<Try[]> {
  const r = await topo.exec(topo.container(from), [PY, CLIENT, 'connects', to.ip, String(port), String(count)], { timeout: 60_000 });
  if (r.exitCode !== 0) throw new Error(`client failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Try[];
}

async function echo(from: string, to: Container, port: number, count: number): Promise<EchoRun> {
  return echoRun(topo, topo.container(from), to.ip, port, count);
}

/** The messages of a broker's log (JSON lines). */
function logMessages(h: Host): string[] {
  return fs
    .readFileSync(h.daemonLog, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return (JSON.parse(l) as { msg: string }).msg;
      } catch {
        return l;
      }
    });
}

const waitPolicy = (h: Host, want: string) =>
  topo.waitFor(async () => (await topo.status(h)).health.policy === want, 5000, `${h.ns} to enforce "${want}"`);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test.serial('a denied port fails with EACCES at once and sends nothing; another port and another source connect', async (t) => {
  const [h1, h2] = topo.hosts;
  const c3 = topo.container('c3');
  const before = { k1: await topo.counters(h1), k2: await topo.counters(h2), vx: await topo.overlayPackets(h1) };
  const denied = await connects('c1', c3, 7001, 7);
  const after = { k1: await topo.counters(h1), k2: await topo.counters(h2), vx: await topo.overlayPackets(h1) };
  for (const d of denied) {
    t.false(d.connected);
    t.is(d.errno, EACCES);
    t.true(d.seconds < 0.5, `a denied connect took ${d.seconds} s`);
  }
  t.log(
    `denied connect: p50 ${(median(denied.map((d) => d.seconds)) * 1e6).toFixed(0)} us, max ${(Math.max(...denied.map((d) => d.seconds)) * 1e6).toFixed(0)} us`,
  );
  t.is(after.k1.policy_denied - before.k1.policy_denied, 7);
  t.is(after.k1.handed_out, before.k1.handed_out, 'no host connection was made');
  t.is(after.k1.fallbacks, before.k1.fallbacks, 'nor the ordinary connect');
  t.deepEqual(after.vx, before.vx, 'nothing went over the VXLAN device');
  for (const k of ['handed_in', 'refused', 'header_errors', 'plain_accepts']) t.is(after.k2[k], before.k2[k], `server host: ${k}`);

  for (const [from, port] of [
    ['c1', 7000],
    ['c2', 7001],
  ] as const) {
    const run = await echo(from, c3, port, 5);
    t.deepEqual(run.errors, [], `${from} -> ${port}`);
    t.is(run.results.filter((r) => r.echo_ok).length, 5);
  }
});

test.serial('a same-host listener is governed too', async (t) => {
  const h1 = topo.hosts[0];
  const c2 = topo.container('c2');
  const before = await topo.counters(h1);
  const denied = await connects('c1', c2, 7100, 3);
  t.true(
    denied.every((d) => !d.connected && d.errno === EACCES),
    JSON.stringify(denied),
  );
  const after = await topo.counters(h1);
  t.is(after.policy_denied - before.policy_denied, 3);
  for (const k of ['same_host', 'plain_accepts', 'fallbacks']) t.is(after[k], before[k], k);
  const run = await echo('c3', c2, 7100, 3);
  t.deepEqual(run.errors, [], 'from the other host it is allowed');
});

test.serial('status shows the policy in force and the counter', async (t) => {
  const h1 = topo.hosts[0];
  const st = await topo.status(h1);
  t.is(st.health.policy, `file ${file}, 2 rules, default allow`);
  t.true(st.counters.policy_denied >= 10);
  const text = (await topo.cli(['status', '--state-dir', h1.stateDir])).stdout;
  t.regex(text, new RegExp(`^policy: file ${file.replace(/[.\\/]/g, '\\$&')}, 2 rules, default allow$`, 'm'));
  t.regex(text, /policy_denied/);
});

test.serial('rewriting the file takes effect without a restart', async (t) => {
  const [h1, h2] = topo.hosts;
  const c3 = topo.container('c3');
  const pid = (await topo.status(h1)).health.pid;
  const t0 = Date.now();
  writePolicy({ default: 'allow', rules: [] }, true);
  let last: Try[] = [];
  await topo.waitFor(
    async () => {
      last = await connects('c1', c3, 7001, 1);
      return last[0].connected;
    },
    5000,
    'the allow to take effect',
  );
  t.log(`allowed ${Date.now() - t0} ms after the file was rewritten`);
  t.true(last[0].connected);
  t.is((await topo.status(h1)).health.pid, pid, 'the same broker');
  await waitPolicy(h2, `file ${file}, 0 rules, default allow`);
  t.true(logMessages(h1).includes(`policy: file ${file}, 0 rules, default allow`));
});

/** client.py MODE (then-refused, held-refused) from c1 to c3:7000: 20 echoes, then one more
 *  connect when go() says so; its result. */
async function echoThenConnect(t: ExecutionContext, mode: string): Promise<{ go: () => Promise<Try> }> {
  const client = execa('ip', topo.argv(topo.container('c1'), [PY, CLIENT, mode, topo.container('c3').ip, '7000', '20']), {
    reject: false,
    timeout: 60_000,
  });
  topo.adopt(client);
  let out = '';
  client.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await topo.waitFor(async () => out.includes('echoed'), 30_000, 'the client to finish its echoes');
  t.is(JSON.parse(out.split('\n')[0]).echoed, 20);
  return {
    go: async () => {
      client.stdin!.write('go\n');
      const res = await client;
      return JSON.parse(res.stdout.trim().split('\n').pop()!) as Try;
    },
  };
}

test.serial('a deny reaches a process that has used pooled connections', async (t) => {
  const [h1, h2] = topo.hosts;
  const k0 = await topo.counters(h1);
  const client = await echoThenConnect(t, 'then-refused');
  const k1 = await topo.counters(h1);
  t.true(k1.pool_taken - k0.pool_taken >= 10, `${k1.pool_taken - k0.pool_taken} of 20 connects came from the pool`);
  t.true(k1.pools > k0.pools || k1.pools >= 1, 'the client holds a pool');

  writePolicy({ default: 'allow', rules: [c1Deny('10.200.2.0/24', '7000-7001')] });
  await waitPolicy(h1, `file ${file}, 1 rule, default allow`);
  t.is((await topo.counters(h1)).pools, k1.pools - 1, "the client's pool was withdrawn");
  const k2 = await topo.counters(h2);
  const last = await client.go();
  t.false(last.connected);
  t.is(last.errno, EACCES);
  t.true(last.seconds < 0.5, `${last.seconds} s`);
  const k3 = await topo.counters(h2);
  t.is(k3.handed_in, k2.handed_in, 'the server host saw nothing');
});

test.serial('a socket a process took from its pool before a deny does not connect after it', async (t) => {
  const h1 = topo.hosts[0];
  writePolicy({ default: 'allow', rules: [] });
  await waitPolicy(h1, `file ${file}, 0 rules, default allow`);
  // socket() hands out a pooled socket once the process's connects have gone through its pool;
  // the deny comes while the process holds one, unconnected, well past the 20 ms it may use one
  // without looking at its channel.
  const client = await echoThenConnect(t, 'held-refused');
  writePolicy({ default: 'allow', rules: [c1Deny('10.200.2.0/24', '7000-7001')] });
  await waitPolicy(h1, `file ${file}, 1 rule, default allow`);
  const last = await client.go();
  t.false(last.connected, JSON.stringify(last));
  t.is(last.errno, EACCES);
});

test.serial('a bad rewrite keeps the policy in force and says what is wrong; SIGHUP reloads', async (t) => {
  const h1 = topo.hosts[0];
  const c3 = topo.container('c3');
  const inForce = `file ${file}, 1 rule, default allow`;
  const keeping = `keeping the policy in force (${inForce})`;
  writePolicy('{"default": "allow", "rules": [');
  await topo.waitFor(
    async () => logMessages(h1).some((m) => m.startsWith(`policy: file ${file}: not valid JSON`) && m.endsWith(keeping)),
    5000,
    'the bad JSON to be reported',
  );
  writePolicy({ rules: [{ action: 'deny', ports: '70000' }] });
  await topo.waitFor(
    async () => logMessages(h1).some((m) => m.startsWith(`policy: file ${file}: rules[0].ports: "70000" is not a port list`) && m.endsWith(keeping)),
    5000,
    'the bad port to be reported',
  );
  t.is((await topo.status(h1)).health.policy, inForce);
  const still = await connects('c1', c3, 7000, 2);
  t.true(
    still.every((d) => !d.connected && d.errno === EACCES),
    'still denied',
  );

  const pid = (await topo.status(h1)).health.pid as number;
  writePolicy(FIRST);
  await waitPolicy(h1, `file ${file}, 2 rules, default allow`);
  process.kill(pid, 'SIGHUP');
  await topo.waitFor(async () => logMessages(h1).includes(`policy: SIGHUP: reloading ${file}`), 5000, 'the SIGHUP to be logged');
  t.is((await topo.status(h1)).health.pid, pid, 'SIGHUP does not stop the broker');
  t.is((await connects('c1', c3, 7000, 1))[0].connected, true);
});

test.serial('a daemon with a bad --policy file refuses to start and says why', async (t) => {
  const h1 = topo.hosts[0];
  const daemon = (policy: string) =>
    execa(
      'ip',
      [
        'netns',
        'exec',
        h1.ns,
        process.execPath,
        CLI,
        'daemon',
        '--host-ip',
        h1.ip,
        '--port',
        '4900',
        '--state-dir',
        fs.mkdtempSync(path.join(topo.dir, 'bad-policy-')),
        '--peers',
        topo.peersFile(),
        '--cluster-key',
        topo.clusterKeyFile!,
        '--policy',
        policy,
      ],
      { reject: false, timeout: 20_000 },
    );
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ default: 'allow', rules: [{ action: 'deny', to: '10.200.2.5/24' }] }));
  let r = await daemon(bad);
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /rules\[0\]\.to: "10\.200\.2\.5\/24" has host bits set; did you mean 10\.200\.2\.0\/24\?/);
  r = await daemon(path.join(dir, 'missing.json'));
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /cannot read the policy file .*missing\.json: ENOENT.*; fix --policy/);
});
