// Cluster mode on a real etcd (Debian's etcd-server) with three emulated hosts: brokers find each
// other through subnet leases, a host that joins later becomes reachable without restarting anyone,
// a dead broker drops out when its lease expires, and an etcd restart costs the data path nothing.
// No broker is given --cluster-key: they share one through etcd (<prefix>/cluster-key), which the
// first creates, and check every header with it.
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, type Container, type Host, Topology } from '../lab/topology.js';
import { CLIENT, ECHO_SERVER, echoRun, PY } from './lib/apps.js';
import { connectHeader, expectRefused, loadSigner, sendHeader, type Signer } from './lib/raw-header.js';
import { keyFingerprint, parseHexClusterKey } from '../common/cluster-key.js';

const TTL = 3;
const KEY = '/slimfast/v1/cluster-key';
let topo: Topology;
let sign: Signer;
let c3Server: ReturnType<Topology['spawn']> | undefined;

test.before(async () => {
  sign = await loadSigner();
  topo = await Topology.create({ hosts: 3, containers: [1, 1, 1], slimfast: false, etcd: { leaseTtl: TTL } });
});

test.after.always(async () => {
  await topo?.destroy();
});

async function peersOf(h: Host): Promise<{ ip: string; synced: boolean }[]> {
  return (await topo.status(h)).peers as { ip: string; synced: boolean }[];
}

async function waitPeers(h: Host, want: Host[], timeoutMs = 15_000): Promise<void> {
  const ips = want.map((x) => x.ip).sort();
  await topo.waitFor(
    async () => {
      const p = await peersOf(h);
      return JSON.stringify(p.map((x) => x.ip).sort()) === JSON.stringify(ips) && p.every((x) => x.synced);
    },
    timeoutMs,
    `${h.ns} to have peers [${ips.join(', ')}], synced`,
  );
}

/** count echo connections from one container to another, checked to have gone over SlimFast. */
async function echoOverSlimfast(t: ExecutionContext, from: Container, to: Container, port: number, count: number): Promise<void> {
  const before = { k: await topo.counters(from.host), o: await topo.overlayPackets(from.host) };
  const run = await echoRun(topo, from, to.ip, port, count);
  t.deepEqual(run.errors, []);
  t.is(run.results.filter((x) => x.echo_ok && x.peer === `${to.ip}:${port}`).length, count);
  const after = { k: await topo.counters(from.host), o: await topo.overlayPackets(from.host) };
  t.is(after.k.handed_out - before.k.handed_out, count, `${from.name} -> ${to.name}: every connection handed out by the broker`);
  t.deepEqual(after.o, before.o, 'the VXLAN device carried no packets');
}

async function subnetKeys(): Promise<string[]> {
  const r = await topo.etcdctl(['get', '--prefix', '--keys-only', '/slimfast/v1/subnets/']);
  if (r.exitCode !== 0) throw new Error(`etcdctl: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((k) => k.replace('/slimfast/v1/subnets/', ''))
    .sort();
}

test.serial('brokers find each other through etcd subnet leases', async (t) => {
  const [h1, h2] = topo.hosts;
  await Promise.all([topo.startBroker(h1), topo.startBroker(h2)]);
  await waitPeers(h1, [h2]);
  await waitPeers(h2, [h1]);
  t.deepEqual(await subnetKeys(), ['10.200.1.0-24', '10.200.2.0-24']);
  const st = await topo.status(h1);
  t.is(st.health.membership, 'etcd');
  t.is(st.health.etcdState, 'connected');

  const [c1, c2] = [topo.container('c1'), topo.container('c2')];
  await topo.register(c1);
  await topo.register(c2);
  topo.spawn(c2, [PY, ECHO_SERVER, '7000']);
  await topo.waitPort(c2, 7000);
  await topo.waitListener(c2.ip, 7000);
  await echoOverSlimfast(t, c1, c2, 7000, 20);
});

/** The cluster key etcd holds (hex text), checked to be one. */
async function etcdKey(): Promise<Buffer> {
  const r = await topo.etcdctl(['get', '--print-value-only', KEY]);
  if (r.exitCode !== 0) throw new Error(`etcdctl: ${r.stderr}`);
  const key = parseHexClusterKey(r.stdout);
  if (!key) throw new Error(`${KEY} holds no key: "${r.stdout}"`);
  return key;
}

/** Host h's broker signs with etcd's key: status says so, and its state dir caches that key (mode 600). */
async function usesEtcdKey(t: ExecutionContext, h: Host, key: Buffer): Promise<void> {
  const health = (await topo.status(h)).health;
  t.is(health.headerAuth, 'cluster key', `${h.ns}: headers are signed`);
  t.is(health.clusterKeySource, `etcd ${KEY}`, `${h.ns}: with the key from etcd`);
  t.is(health.clusterKeyFingerprint, keyFingerprint(key), `${h.ns}: the key etcd holds`);
  const cache = path.join(h.stateDir, 'cluster-key.json');
  t.is(fs.statSync(cache).mode & 0o777, 0o600, `${h.ns}: the cached copy is root's alone`);
  t.deepEqual(JSON.parse(fs.readFileSync(cache, 'utf8')), { name: KEY, key: key.toString('hex') });
}

test.serial('without --cluster-key the brokers share one key through etcd, made once, and check every header with it', async (t) => {
  const [h1, h2] = topo.hosts;
  const key = await etcdKey();
  t.is(key.length, 32, '32 random bytes');
  // Both brokers started at once: one transaction created the key, the other broker read it.
  const created = [h1, h2].filter((h) => fs.readFileSync(h.daemonLog, 'utf8').includes(`etcd held no cluster key: created one at ${KEY}`));
  t.is(created.length, 1, 'exactly one broker created the key');
  for (const h of [h1, h2]) await usesEtcdKey(t, h, key);

  // Headers written here, from host 1's address to host 2's reserved port: signed with host 1's
  // key derived from etcd's, one reaches the server; signed with any other key, none does.
  const [c1, c2] = [topo.container('c1'), topo.container('c2')];
  const root = sign.clusterRoot(key);
  const header = (k: Buffer) => connectHeader(sign, { src: c1.ip, dst: c2.ip, dstPort: 7000, key: k });
  const ok = await sendHeader(topo, h1, h2, header(sign.derivedKey(root, h1.ip)), h1.ip, 'plain');
  t.regex(ok.data, new RegExp(`^hello ${c2.ip}:7000 ${c1.ip}:`), `a header signed with etcd's key is taken: ${JSON.stringify(ok)}`);
  const wrong = sign.derivedKey(sign.clusterRoot(Buffer.alloc(32, 7)), h1.ip);
  await expectRefused(t, topo, h1, h2, 'a header signed with another key', header(wrong), h1.ip, 'plain', 'header_forged');
  await expectRefused(t, topo, h1, h2, 'a header signed with another key', header(wrong), h1.ip, 'tfo', 'steer_bad_tag');
  await echoOverSlimfast(t, c1, c2, 7000, 10);
});

test.serial('a host that joins later is reachable without restarting anyone', async (t) => {
  const [h1, h2, h3] = topo.hosts;
  const pids = [(await topo.status(h1)).health.pid, (await topo.status(h2)).health.pid];
  await topo.startBroker(h3);
  await waitPeers(h1, [h2, h3]);
  await waitPeers(h2, [h1, h3]);
  await waitPeers(h3, [h1, h2]);
  t.deepEqual([(await topo.status(h1)).health.pid, (await topo.status(h2)).health.pid], pids, 'hosts 1 and 2 kept their brokers');
  await usesEtcdKey(t, h3, await etcdKey());

  const [c1, c3] = [topo.container('c1'), topo.container('c3')];
  await topo.register(c3);
  c3Server = topo.spawn(c3, [PY, ECHO_SERVER, '7300']);
  await topo.waitPort(c3, 7300);
  await topo.waitListener(c3.ip, 7300);
  await echoOverSlimfast(t, c1, c3, 7300, 20);
  await echoOverSlimfast(t, c3, topo.container('c2'), 7000, 10);
});

test.serial('a conflicting subnet claim or cluster network is refused with the reason', async (t) => {
  const h3 = topo.hosts[2];
  const daemon = (args: string[]) =>
    execa(
      'ip',
      [
        'netns',
        'exec',
        h3.ns,
        process.execPath,
        CLI,
        'daemon',
        '--host-ip',
        h3.ip,
        '--port',
        '4900',
        '--state-dir',
        fs.mkdtempSync(path.join(topo.dir, 'conflict-')),
        '--etcd',
        topo.etcdUrl,
        ...args,
      ],
      { reject: false, timeout: 20_000 },
    );
  const taken = await daemon(['--subnet', '10.200.1.0/24']);
  t.is(taken.exitCode, 1);
  t.regex(taken.stderr, /--subnet 10\.200\.1\.0\/24 conflicts with 10\.200\.1\.0\/24, held by host 192\.168\.77\.1/);
  const wrongNet = await daemon(['--cluster-cidr', '10.9.0.0/16']);
  t.is(wrongNet.exitCode, 1);
  t.regex(wrongNet.stderr, /--cluster-cidr 10\.9\.0\.0\/16 disagrees with the network 10\.200\.0\.0\/16/);
  t.deepEqual(await subnetKeys(), ['10.200.1.0-24', '10.200.2.0-24', '10.200.3.0-24'], 'no record was added or lost');
});

test.serial('while etcd is down the brokers serve from their last view, and catch up when it returns', async (t) => {
  const [h1, h2, h3] = topo.hosts;
  const key = await etcdKey();
  await topo.stopEtcd('SIGKILL');
  // Past two lease TTLs every broker has given its lease up for lost.
  await topo.waitFor(async () => (await topo.status(h1)).health.etcdState === 'unreachable', 4 * TTL * 1000, 'host 1 to see etcd gone');
  await new Promise((r) => setTimeout(r, 2 * TTL * 1000));
  t.is((await peersOf(h1)).length, 2, 'host 1 still knows both peers');
  await echoOverSlimfast(t, topo.container('c1'), topo.container('c2'), 7000, 10);

  // A broker restarted meanwhile starts on the membership and the key cached in its state dir, and
  // its peers take its headers (their listener tables sync only under one key).
  await topo.stopBroker(h1);
  await topo.startBroker(h1);
  const health = (await topo.status(h1)).health;
  t.is(health.clusterKeySource, `etcd ${KEY} (the copy cached in ${path.join(h1.stateDir, 'cluster-key.json')}: etcd did not answer)`);
  t.is(health.clusterKeyFingerprint, keyFingerprint(key));
  await waitPeers(h1, [h2, h3]);
  await waitPeers(h2, [h1, h3]);
  await echoOverSlimfast(t, topo.container('c1'), topo.container('c2'), 7000, 10);

  await topo.startEtcd();
  for (const h of [h1, h2, h3]) {
    await topo.waitFor(async () => (await topo.status(h)).health.etcdState === 'connected', 20_000, `${h.ns} to reach etcd again`);
  }
  t.deepEqual(await subnetKeys(), ['10.200.1.0-24', '10.200.2.0-24', '10.200.3.0-24'], 'every host holds its subnet again');
  // The leases held after the restart are live ones: they outlast several TTLs.
  await new Promise((r) => setTimeout(r, 2 * TTL * 1000));
  t.deepEqual(await subnetKeys(), ['10.200.1.0-24', '10.200.2.0-24', '10.200.3.0-24']);
  await echoOverSlimfast(t, topo.container('c3'), topo.container('c2'), 7000, 10);
});

test.serial('a broker that dies drops out when its lease expires', async (t) => {
  const [h1, h2, h3] = topo.hosts;
  const killedAt = Date.now();
  await topo.stopBroker(h3, 'SIGKILL');
  await waitPeers(h1, [h2], (TTL + 8) * 1000);
  await waitPeers(h2, [h1], 5000);
  t.deepEqual(await subnetKeys(), ['10.200.1.0-24', '10.200.2.0-24']);
  t.log(`host 3 left the peer lists ${((Date.now() - killedAt) / 1000).toFixed(1)} s after its broker was killed (lease TTL ${TTL} s)`);

  // Restarted on its state dir, it takes its subnet back and is a peer again. (Its listening app
  // goes first: a steered listener keeps the reserved port bound while the broker is down.)
  c3Server?.kill('SIGKILL');
  await c3Server;
  await topo.startBroker(h3);
  await waitPeers(h1, [h2, h3]);
  t.is((await topo.status(h3)).health.subnet, h3.subnet);
});

test.serial('the policy is the etcd key <prefix>/policy, followed while it changes', async (t) => {
  const h1 = topo.hosts[0];
  const [c1, c2] = [topo.container('c1'), topo.container('c2')];
  const key = '/slimfast/v1/policy';
  const cache = path.join(h1.stateDir, 'policy.json');
  const tryOnce = async () =>
    JSON.parse((await topo.exec(c1, [PY, CLIENT, 'refused', c2.ip, '7000'])).stdout) as { connected: boolean; errno?: number };
  const waitPolicy = (want: string) => topo.waitFor(async () => (await topo.status(h1)).health.policy === want, 5000, `host 1 to enforce "${want}"`);
  t.is((await topo.status(h1)).health.policy, `none (etcd ${key})`);
  t.true((await tryOnce()).connected);

  const doc = { default: 'allow', rules: [{ action: 'deny', from: c1.ip, to: c2.ip, ports: '7000' }] };
  t.is((await topo.etcdctl(['put', key, JSON.stringify(doc)])).exitCode, 0);
  await waitPolicy(`etcd ${key}, 1 rule, default allow`);
  let r = await tryOnce();
  t.false(r.connected);
  t.is(r.errno, 13, 'EACCES');
  t.true(fs.existsSync(cache), 'cached in the state dir');

  await topo.etcdctl(['put', key, '{"rules": 5}']);
  const messages = () =>
    fs
      .readFileSync(h1.daemonLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
  await topo.waitFor(
    async () => messages().some((m) => m.startsWith(`policy: etcd ${key}: "rules" must be an array`)),
    5000,
    'the bad value to be reported',
  );
  r = await tryOnce();
  t.is(r.errno, 13, 'a bad value keeps the policy in force');

  await topo.etcdctl(['del', key]);
  await waitPolicy(`none (etcd ${key})`);
  t.true((await tryOnce()).connected, 'no key: no policy');
  t.false(fs.existsSync(cache));
});

test.serial('a deleted cluster key is put back by the running brokers; another key put there is reported, and the brokers keep theirs', async (t) => {
  const key = await etcdKey();
  t.is((await topo.etcdctl(['del', KEY])).exitCode, 0);
  await topo.waitFor(async () => (await etcdKey()).equals(key), 10_000, 'the key to be put back');
  const messages = (h: Host) =>
    fs
      .readFileSync(h.daemonLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
  t.true(
    topo.hosts.some((h) =>
      messages(h).includes(`the cluster key ${KEY} was deleted from etcd; putting this broker's back (to change the key, stop every broker first)`),
    ),
  );

  const other = Buffer.alloc(32, 3);
  t.is((await topo.etcdctl(['put', KEY, other.toString('hex')])).exitCode, 0);
  for (const h of topo.hosts) {
    await topo.waitFor(
      async () =>
        messages(h).some((m) =>
          m.startsWith(
            `the cluster key ${KEY} in etcd changed (fingerprint ${keyFingerprint(other)}); this broker keeps signing with the one it started with (${keyFingerprint(key)})`,
          ),
        ),
      5000,
      `${h.ns} to report the changed key`,
    );
    t.is((await topo.status(h)).health.clusterKeyFingerprint, keyFingerprint(key), `${h.ns} keeps its key`);
  }
  t.is((await topo.etcdctl(['put', KEY, key.toString('hex')])).exitCode, 0);
  await echoOverSlimfast(t, topo.container('c3'), topo.container('c2'), 7000, 5);
});
