// Authenticated headers between real brokers (`slimfast daemon --cluster-key FILE`): cross-host
// connections work as before, and headers written here (forged, replayed, stale, from an address
// that is no member, or signed with another key) reach a reserved port and are refused and counted
// on the broker's path and on the kernel's, while the hosts keep serving their containers.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ECHO_SERVER, type EchoRun, echoRun, PY } from './lib/apps.js';
import { checkHandedOff, handoffSnapshot } from './lib/handoff.js';
import { buildHeader, HDR_CONNECT, HDR_SYNC, KEY_HOST } from '../broker/header.js';
import { parseClusterKey } from '../broker/cluster-key.js';
import { repoRoot } from '../broker/paths.js';
import { Topology } from '../lab/topology.js';

const RAW = path.join(repoRoot(), 'test', 'apps', 'raw_header.py');
const OUTSIDER = '192.168.77.50'; // on host 1's underlay link, but no member of the cluster
const PORT = 7000;

interface Signer {
  siphash128(key: Buffer, msg: Buffer): Buffer;
  clusterRoot(key: Buffer): Buffer;
  derivedKey(root: Buffer, ip: string): Buffer;
}

let topo: Topology;
let sign: Signer;
let root: Buffer;
let server: ReturnType<Topology['spawn']>;

test.before(async () => {
  // The reference signer of the engine's self-test: the headers here are signed the same way.
  sign = (await import(path.join(repoRoot(), 'native', 'addon', 'tests', 'cluster_key.mjs'))) as Signer;
  topo = await Topology.create({ containers: [1, 1], clusterKey: true });
  root = sign.clusterRoot(parseClusterKey(fs.readFileSync(topo.clusterKeyFile!), 'cluster.key'));
  await topo.hostExec(topo.hosts[0], ['ip', 'addr', 'add', `${OUTSIDER}/24`, 'dev', 'eth0']);
  server = topo.spawn(topo.container('c2'), [PY, ECHO_SERVER, String(PORT)]);
  await topo.waitPort(topo.container('c2'), PORT);
  await topo.waitListener(topo.container('c2').ip, PORT);
});

test.after.always(async () => {
  await topo?.destroy();
});

let seq = 0n;
/** A CONNECT header from c1 to c2's server, signed with `key` (none: unsigned), ageMs old. */
function connectHeader(key: Buffer | undefined, ageMs = 0): Buffer {
  const nonce = BigInt(Date.now() - ageMs) * 1_000_000n + (seq++ % 1_000_000n);
  const h = buildHeader({ type: HDR_CONNECT, dstIp: topo.container('c2').ip, dstPort: PORT, srcIp: topo.container('c1').ip, srcPort: 40000 + Number(seq % 20000n),
    keyId: key ? KEY_HOST : 0, nonce });
  if (key) sign.siphash128(key, h.subarray(0, 32)).copy(h, 32);
  return h;
}

interface RawResult { data: string; error: string | null; closed: boolean }

/** Sends one header to host 2's reserved port from `src` in host 1's namespace. */
async function send(header: Buffer, src: string, mode: 'plain' | 'tfo'): Promise<RawResult> {
  const r = await topo.hostExec(topo.hosts[0], [PY, RAW, topo.hosts[1].ip, String(topo.port), src, header.toString('hex'), mode, '2']);
  if (r.exitCode !== 0) throw new Error(`raw_header.py failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(r.stdout) as RawResult;
}

const REFUSALS = ['header_forged', 'header_stale', 'header_replayed', 'header_not_member', 'steer_bad_tag', 'steer_stale', 'steer_replayed', 'steer_not_member'];
async function refusals(): Promise<Record<string, number>> {
  const k = await topo.counters(topo.hosts[1]);
  return Object.fromEntries(REFUSALS.map((n) => [n, k[n]]));
}

/** Sends the header and checks host 2 refused it (no data back, connection closed) under `counter` alone. */
async function refused(t: import('ava').ExecutionContext, what: string, header: Buffer, src: string, mode: 'plain' | 'tfo', counter: string) {
  const before = await refusals();
  const r = await send(header, src, mode);
  let after = before;
  await topo.waitFor(async () => (after = await refusals())[counter] > before[counter], 3000, `${counter} to count the ${what}`).catch(() => {});
  t.false(r.data.includes('hello'), `${what} (${mode}): no application answered (${JSON.stringify(r)})`);
  t.true(r.closed, `${what} (${mode}): the connection was closed (${JSON.stringify(r)})`);
  const delta = Object.fromEntries(REFUSALS.map((n) => [n, after[n] - before[n]]).filter(([, d]) => d !== 0));
  t.deepEqual(delta, { [counter]: 1 }, `${what} (${mode}) counted as ${counter} only`);
}

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
  for (const k of [after.k1, after.k2]) t.deepEqual(REFUSALS.filter((n) => k[n] !== 0), [], 'no refusals on either host');
  t.is((await topo.status(topo.hosts[0])).health.headerAuth, 'cluster key', 'status says headers are signed');
});

test.serial('a header signed with the right key from the right host is accepted once; its replay is refused', async (t) => {
  const key1 = sign.derivedKey(root, topo.hosts[0].ip);
  for (const mode of ['plain', 'tfo'] as const) {
    const h = connectHeader(key1);
    const ok = await send(h, topo.hosts[0].ip, mode);
    // The server greets with what accept() told it: its own address and the header's source vIP.
    t.regex(ok.data, new RegExp(`^hello ${topo.container('c2').ip}:${PORT} ${topo.container('c1').ip}:${h.readUInt16BE(14)} `), `a signed header (${mode}) reached the server: ${JSON.stringify(ok)}`);
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
    ['a header signed with host 2\'s key by host 1', () => connectHeader(sign.derivedKey(root, topo.hosts[1].ip)), h1, 'header_forged', 'steer_bad_tag'],
    ['a header 60 s old', () => connectHeader(key1, 60_000), h1, 'header_stale', 'steer_stale'],
    ['a header 20 s in the future', () => connectHeader(key1, -20_000), h1, 'header_stale', 'steer_stale'],
    ['host 1\'s signed header from an address that is no member', () => connectHeader(key1), OUTSIDER, 'header_not_member', 'steer_not_member'],
    ['a header signed with the non-member\'s own derived key', () => connectHeader(sign.derivedKey(root, OUTSIDER)), OUTSIDER, 'header_not_member', 'steer_not_member'],
  ];
  for (const [what, make, src, brokerCounter, kernelCounter] of cases) {
    await refused(t, what, make(), src, 'plain', brokerCounter);
    await refused(t, what, make(), src, 'tfo', kernelCounter);
  }
  // A SYNC stream (the listener table) is opened only for a member's signed header.
  const sync = (key: Buffer) => {
    const h = buildHeader({ type: HDR_SYNC, keyId: KEY_HOST, nonce: BigInt(Date.now()) * 1_000_000n + (seq++ % 1_000_000n) });
    sign.siphash128(key, h.subarray(0, 32)).copy(h, 32);
    return h;
  };
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
  await topo.waitFor(async () => (await topo.counters(h1)).header_forged > k1.header_forged, 10_000, 'host 1 to refuse host 2\'s SYNC header');
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
