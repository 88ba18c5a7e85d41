// Authenticated headers between real brokers (`slimfast daemon --cluster-key FILE`): cross-host
// connections work as before, and headers written here (forged, replayed, stale, from an address
// that is no member, or signed with another key) reach a reserved port and are refused and counted
// on the broker's path and on the kernel's, while the hosts keep serving their containers. Last,
// without a key: a static broker refuses to start, and the explicit opt-out (--insecure-host-keys)
// is said to be insecure, and is.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { ECHO_SERVER, type EchoRun, echoRun, PY } from './lib/apps.js';
import { checkHandedOff, handoffSnapshot } from './lib/handoff.js';
import { connectHeader as makeConnect, expectRefused, loadSigner, REFUSALS, type Signer, sendHeader, syncHeader } from './lib/raw-header.js';
import { parseClusterKey } from '../common/cluster-key.js';
import { CLI, Topology } from '../lab/topology.js';

const OUTSIDER = '192.168.77.50'; // on host 1's underlay link, but no member of the cluster
const PORT = 7000;

let topo: Topology;
let sign: Signer;
let root: Buffer;
let server: ReturnType<Topology['spawn']>;

test.before(async () => {
  // The reference signer of the engine's self-test: the headers here are signed the same way.
  sign = await loadSigner();
  topo = await Topology.create({ containers: [1, 1], clusterKey: 'file' });
  root = sign.clusterRoot(parseClusterKey(fs.readFileSync(topo.clusterKeyFile!), 'cluster.key'));
  await topo.hostExec(topo.hosts[0], ['ip', 'addr', 'add', `${OUTSIDER}/24`, 'dev', 'eth0']);
  server = topo.spawn(topo.container('c2'), [PY, ECHO_SERVER, String(PORT)]);
  await topo.waitPort(topo.container('c2'), PORT);
  await topo.waitListener(topo.container('c2').ip, PORT);
});

test.after.always(async () => {
  await topo?.destroy();
});

/** A CONNECT header from c1 to c2's server, signed with `key` (none: unsigned), ageMs old. */
const connectHeader = (key: Buffer | undefined, ageMs = 0) =>
  makeConnect(sign, { src: topo.container('c1').ip, dst: topo.container('c2').ip, dstPort: PORT, key, ageMs });

/** Sends one header to host 2's reserved port from `src` in host 1's namespace. */
const send = (header: Buffer, src: string, mode: 'plain' | 'tfo') => sendHeader(topo, topo.hosts[0], topo.hosts[1], header, src, mode);

/** Sends the header and checks host 2 refused it under `counter` alone. */
const refused = (t: import('ava').ExecutionContext, what: string, header: Buffer, src: string, mode: 'plain' | 'tfo', counter: string) =>
  expectRefused(t, topo, topo.hosts[0], topo.hosts[1], what, header, src, mode, counter);

const echo = async (count: number): Promise<EchoRun> => echoRun(topo, topo.container('c1'), topo.container('c2').ip, PORT, count);

test.serial('with a cluster key, cross-host connections are handed off host to host and no header is refused', async (t) => {
  const before = await handoffSnapshot(topo);
  const run = await echo(40);
  t.deepEqual(run.errors, []);
  t.is(run.results.length, 40);
  t.true(run.results.every((r) => r.echo_ok && r.server_peer === r.local && r.local.startsWith(`${topo.container('c1').ip}:`)));
  await checkHandedOff(t, topo, before, 40);
  const after = await handoffSnapshot(topo);
  t.true(after.k1.pool_taken - before.k1.pool_taken >= 30, 'pooled connects (signed when made, used later) pass too');
  for (const k of [after.k1, after.k2])
    t.deepEqual(
      REFUSALS.filter((n) => k[n] !== 0),
      [],
      'no refusals on either host',
    );
  t.is((await topo.status(topo.hosts[0])).health.headerAuth, 'cluster key', 'status says headers are signed');
});

test.serial('a header signed with the right key from the right host is accepted once; its replay is refused', async (t) => {
  const key1 = sign.derivedKey(root, topo.hosts[0].ip);
  for (const mode of ['plain', 'tfo'] as const) {
    const h = connectHeader(key1);
    const ok = await send(h, topo.hosts[0].ip, mode);
    // The server greets with what accept() told it: its own address and the header's source vIP.
    t.regex(
      ok.data,
      new RegExp(`^hello ${topo.container('c2').ip}:${PORT} ${topo.container('c1').ip}:${h.readUInt16BE(14)} `),
      `a signed header (${mode}) reached the server: ${JSON.stringify(ok)}`,
    );
    await refused(t, 'the same header again', h, topo.hosts[0].ip, mode, mode === 'plain' ? 'header_replayed' : 'steer_replayed');
  }
});

test.serial('forged, stale and future headers and headers from non-members are refused on both paths', async (t) => {
  const h1 = topo.hosts[0].ip;
  const key1 = sign.derivedKey(root, h1);
  const wrongKey = sign.derivedKey(sign.clusterRoot(Buffer.alloc(32, 7)), h1);
  const cases: [string, () => Buffer, string, string, string][] = [
    // key_id 0 is nothing the kernel steers: it passes the SYN to the broker, which refuses it.
    ['an unsigned header', () => connectHeader(undefined), h1, 'header_forged', 'header_forged'],
    ['a header signed with another cluster key', () => connectHeader(wrongKey), h1, 'header_forged', 'steer_bad_tag'],
    [
      "a header signed with host 2's key by host 1",
      () => connectHeader(sign.derivedKey(root, topo.hosts[1].ip)),
      h1,
      'header_forged',
      'steer_bad_tag',
    ],
    ['a header 60 s old', () => connectHeader(key1, 60_000), h1, 'header_stale', 'steer_stale'],
    ['a header 20 s in the future', () => connectHeader(key1, -20_000), h1, 'header_stale', 'steer_stale'],
    ["host 1's signed header from an address that is no member", () => connectHeader(key1), OUTSIDER, 'header_not_member', 'steer_not_member'],
    [
      "a header signed with the non-member's own derived key",
      () => connectHeader(sign.derivedKey(root, OUTSIDER)),
      OUTSIDER,
      'header_not_member',
      'steer_not_member',
    ],
  ];
  for (const [what, make, src, brokerCounter, kernelCounter] of cases) {
    await refused(t, what, make(), src, 'plain', brokerCounter);
    await refused(t, what, make(), src, 'tfo', kernelCounter);
  }
  // A SYNC stream (the listener table) is opened only for a member's signed header.
  const sync = (key: Buffer) => syncHeader(sign, key);
  await refused(t, 'a SYNC header from a non-member', sync(sign.derivedKey(root, OUTSIDER)), OUTSIDER, 'plain', 'header_not_member');
  await refused(t, 'a SYNC header with a forged tag', sync(wrongKey), h1, 'plain', 'header_forged');
  const table = await send(sync(key1), h1, 'plain');
  t.regex(table.data, /"type":"full"/, `a member's signed SYNC header gets the listener table: ${JSON.stringify(table)}`);

  const run = await echo(10);
  t.deepEqual(run.errors, [], 'the containers are still served');
});

test.serial('a broker started with another cluster key is refused by its peer and cannot sync; with the right key it syncs again', async (t) => {
  const [h1, h2] = topo.hosts;
  const other = path.join(topo.dir, 'other.key');
  fs.writeFileSync(other, Buffer.alloc(32, 9), { mode: 0o600 });
  // The server goes first: its kernel-steered listener would keep host 2's reserved port bound.
  server.kill('SIGKILL');
  await server.catch(() => {});
  await topo.stopBroker(h2);
  await topo.startBroker(h2, ['--cluster-key', other]);
  const k1 = await topo.counters(h1);
  await topo.waitFor(async () => (await topo.counters(h1)).header_forged > k1.header_forged, 10_000, "host 1 to refuse host 2's SYNC header");
  const st1 = await topo.status(h1);
  const st2 = await topo.status(h2);
  t.false(st1.peers[0].synced, 'host 1 holds no listener table from host 2');
  t.false(st2.peers[0].synced, 'nor host 2 from host 1');

  await topo.stopBroker(h2);
  await topo.startBroker(h2);
  await topo.waitSynced();
  server = topo.spawn(topo.container('c2'), [PY, ECHO_SERVER, String(PORT)]);
  await topo.waitPort(topo.container('c2'), PORT);
  await topo.waitListener(topo.container('c2').ip, PORT);
  const before = await handoffSnapshot(topo);
  const run = await echo(10);
  t.deepEqual(run.errors, []);
  await checkHandedOff(t, topo, before, 10);
});

test.serial(
  "without a key a static broker refuses to start; --insecure-host-keys starts it, says so, and leaves a host's address able to pose as it",
  async (t) => {
    const [h1, h2] = topo.hosts;
    server.kill('SIGKILL');
    await server.catch(() => {});
    await topo.stopBroker(h2);
    const bare = await execa(
      'ip',
      [
        'netns',
        'exec',
        h2.ns,
        process.execPath,
        CLI,
        'daemon',
        '--host-ip',
        h2.ip,
        '--state-dir',
        h2.stateDir,
        '--port',
        String(topo.port),
        '--peers',
        topo.peersFile(),
      ],
      { reject: false, timeout: 20_000 },
    );
    t.is(bare.exitCode, 1, 'refused');
    t.regex(
      bare.stderr,
      /lists other hosts and no --cluster-key is given\. .*pose as this host\. Make one key and give every broker the same file:\n {2}head -c 32 \/dev\/urandom > \/etc\/slimfast\/cluster\.key && chmod 600/s,
    );
    t.false(fs.existsSync(path.join(h2.stateDir, 'slimfast.pid')), 'nothing was claimed');

    // The explicit opt-out: today's per-start host keys, announced in the clear.
    await topo.stopBroker(h1);
    await Promise.all([topo.startBroker(h1, ['--insecure-host-keys']), topo.startBroker(h2, ['--insecure-host-keys'])]);
    await topo.waitSynced();
    for (const h of [h1, h2]) {
      const health = (await topo.status(h)).health;
      t.is(health.headerAuth, 'insecure host keys', `${h.ns}: status says so`);
      t.is(health.clusterKeySource, '');
      const log = fs.readFileSync(h.daemonLog, 'utf8');
      t.regex(
        log,
        /"level":"warn".*--insecure-host-keys: no cluster key; headers are signed with per-start host keys announced to peers in the clear/,
        `${h.ns}: the log warns`,
      );
    }
    const text = await topo.cli(['status', '--state-dir', h1.stateDir]);
    t.regex(text.stdout, /^headers: INSECURE: host keys announced in the clear \(--insecure-host-keys\)/m);
    const doc = await execa('ip', ['netns', 'exec', h1.ns, process.execPath, CLI, 'doctor', '--json', '--state-dir', h1.stateDir], {
      reject: false,
      timeout: 60_000,
    });
    const check = (JSON.parse(doc.stdout) as { checks: { name: string; status: string; detail: string; fix?: string }[] }).checks.find(
      (c) => c.name === 'cluster-key',
    );
    t.is(check?.status, 'warn', JSON.stringify(check));
    t.regex(check?.detail ?? '', /no cluster key \(--insecure-host-keys\)/);
    t.regex(check?.fix ?? '', /head -c 32 \/dev\/urandom/);

    server = topo.spawn(topo.container('c2'), [PY, ECHO_SERVER, String(PORT)]);
    await topo.waitPort(topo.container('c2'), PORT);
    await topo.waitListener(topo.container('c2').ip, PORT);
    t.deepEqual((await echo(10)).errors, [], 'the containers are served');

    // What the key prevents: from host 1's address (a container behind its NAT would do), announce a
    // key of one's own, then speak for host 1's containers with headers signed by it.
    const chosen = Buffer.alloc(16, 0x5a);
    const announced = await send(syncHeader(sign, chosen, { announce: true }), h1.ip, 'plain');
    t.regex(announced.data, /"type":"full"/, "a SYNC header announcing any key from a host's address is taken");
    const posed = await send(connectHeader(chosen), h1.ip, 'plain');
    t.regex(
      posed.data,
      new RegExp(`^hello ${topo.container('c2').ip}:${PORT} ${topo.container('c1').ip}:`),
      `a header signed with the announced key reached the server: ${JSON.stringify(posed)}`,
    );
  },
);
