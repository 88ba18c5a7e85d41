#!/usr/bin/env node
// Self-test of the native engine (build/Release/slimfast_addon.node), loopback only.
//
//   node native/addon/tests/selftest.mjs        (after `npx node-gyp rebuild`; needs gcc)
//
// Two engines run in this process as two "hosts": E1 on 127.0.0.1 (subnet 10.99.0.0/24,
// containers a=10.99.0.2, b=10.99.0.3) and E2 on 127.0.0.2 (subnet 10.98.0.0/24, container
// c=10.98.0.2), each the other's peer, so the cross-host path goes through a real reserved port.
// Preloads are played by sfclient (built here with gcc). cluster_key.mjs adds two engines E3/E4
// (127.0.0.4, 127.0.0.5) that share a cluster key; hostile.mjs one more (127.0.0.8) for hostile
// input on the reserved port. Exits non-zero on any failure.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { clusterKeyTests } from './cluster_key.mjs';
import { hostileTests } from './hostile.mjs';
import { limitsTests } from './limits.mjs';
import { policyTests } from './policy.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..', '..');
const require = createRequire(import.meta.url);
// SLIMFAST_ADDON overrides the addon path (e.g. a sanitizer build).
const { Engine } = require(process.env.SLIMFAST_ADDON ?? path.join(root, 'build', 'Release', 'slimfast_addon.node'));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-selftest-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true })); // also when a step throws
const sfclient = path.join(tmp, 'sfclient');
// The unit tests, alone: SipHash against its reference vector, cluster-key derivation and the replay
// cache, signing and checking host headers, the route table, runc's container state as the seccomp
// agent parses it. tests/Makefile builds them (and sfclient) into the temp dir; each exits non-zero
// and says why on failure.
const UNIT_TESTS = ['siphash_test', 'header_auth_test', 'header_authority_test', 'routing_test', 'pool_stock_test', 'seccomp_state_test'];
execFileSync('make', ['-s', '-C', here, `OUT=${tmp}`, sfclient, ...UNIT_TESTS.map((t) => path.join(tmp, t))], { stdio: 'inherit' });
for (const t of UNIT_TESTS) execFileSync(path.join(tmp, t), { stdio: 'inherit' });

const verbose = process.argv.includes('-v');
let passed = 0;
let failed = 0;
function check(cond, name, detail) {
  if (cond) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail === undefined ? '' : ` -- ${JSON.stringify(detail)}`}`);
  }
}
function throwsLike(fn, re, name) {
  try {
    fn();
    check(false, name, 'did not throw');
  } catch (err) {
    check(re.test(err.message), name, err.message);
  }
}
// Kernel steering (native/bpf/steer.bpf.c + steering.cc) in a network namespace of its own, built
// into the temp dir by the tests' Makefile (clang, libbpf-dev). Exit 77: skipped (not root).
execFileSync('make', ['-s', '-C', here, `OUT=${tmp}`, path.join(tmp, 'steer_test')], { stdio: 'inherit' });
{
  const r = spawnSync(path.join(tmp, 'steer_test'), { stdio: 'inherit', timeout: 120000 });
  if (r.status === 77) console.log('skip kernel steering (steer_test needs root)');
  else check(r.status === 0, 'kernel steering (steer_test)', { status: r.status, signal: r.signal });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(pred, ms = 3000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(10);
  }
  return pred();
}
const fdList = () =>
  fs.readdirSync('/proc/self/fd').map((f) => {
    try {
      return `${f}=${fs.readlinkSync(`/proc/self/fd/${f}`)}`;
    } catch {
      return `${f}=?`;
    }
  });
const fdCount = () => fdList().length;

// ---------- sfclient driver: one process = one preload connection ----------
const clients = [];
class Client {
  // opts: {bin, uid, gid}: another copy of sfclient, run as another user (limits.mjs).
  constructor(sock, opts = {}) {
    this.p = spawn(opts.bin ?? sfclient, [sock], { stdio: ['pipe', 'pipe', 'inherit'], uid: opts.uid, gid: opts.gid });
    this.lines = [];
    this.waiters = [];
    readline.createInterface({ input: this.p.stdout }).on('line', (l) => {
      if (verbose) console.log(`   < ${l}`);
      const v = JSON.parse(l);
      if (this.waiters.length) this.waiters.shift()(v);
      else this.lines.push(v);
    });
    this.exited = new Promise((r) => this.p.on('exit', r));
    clients.push(this);
  }
  next(ms = 8000) {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    return new Promise((resolve) => {
      const w = (v) => {
        clearTimeout(t);
        resolve(v);
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        resolve({ error: 'sfclient did not answer' });
      }, ms);
      this.waiters.push(w);
    });
  }
  send(line) {
    if (verbose) console.log(`   > ${line}`);
    this.p.stdin.write(`${line}\n`);
  }
  cmd(line) {
    this.send(line);
    return this.next();
  }
  async quit() {
    if (this.p.exitCode === null && this.p.signalCode === null) this.p.stdin.end('quit\n');
    await this.exited;
  }
}
async function client(sock, opts) {
  const c = new Client(sock, opts);
  const r = await c.next();
  if (!r.ready) throw new Error(`sfclient could not connect to ${sock}: ${JSON.stringify(r)}`);
  return c;
}

// ---------- raw reserved-port connections ----------
function ipnum(s) {
  return s.split('.').reduce((a, p) => a * 256 + Number(p), 0) >>> 0;
}
function header({ type = 1, dst = '0.0.0.0', dport = 0, src = '0.0.0.0', sport = 0, len = 48, keyId = 0, tag = null, nonce = null } = {}) {
  const b = Buffer.alloc(48);
  b.writeUInt32BE(0x534c4631, 0);
  b.writeUInt8(1, 4);
  b.writeUInt8(type, 5);
  b.writeUInt16BE(len, 6);
  b.writeUInt32BE(ipnum(dst), 8);
  b.writeUInt16BE(dport, 12);
  b.writeUInt16BE(sport, 14);
  b.writeUInt32BE(ipnum(src), 16);
  b.writeUInt32BE(keyId, 20);
  b.writeBigUInt64BE(nonce ?? BigInt(Date.now()) * 1000000n, 24);
  if (tag) tag.copy(b, 32);
  return b;
}
// localAddress: raw headers to E1 come from 127.0.0.3, a host whose key E1 does not know (E1 knows its
// own, and would want 127.0.0.1's headers signed).
function raw(host, port, localAddress) {
  const s = net.connect({ host, port, localAddress });
  const st = { s, data: '', closed: false, error: null };
  s.on('data', (d) => (st.data += d));
  s.on('error', (e) => (st.error = e.code));
  s.on('close', () => (st.closed = true));
  st.ready = new Promise((r) => s.on('connect', r));
  return st;
}

// ---------- engines ----------
const fdsBefore = fdCount();
const fdListBefore = fdList();
const ev1 = [];
const ev2 = [];
const E1 = new Engine();
const E2 = new Engine();
const overlay = '10.96.0.0/12';
E1.start(
  { hostIp: '127.0.0.1', port: 0, overlayCidr: overlay, localSubnet: '10.99.0.0/24', headerTimeoutMs: 400, connectTimeoutMs: 500, poolPeerMax: 6 },
  (e) => ev1.push(e),
);
E2.start({ hostIp: '127.0.0.2', port: 0, overlayCidr: overlay, localSubnet: '10.98.0.0/24' }, (e) => ev2.push(e));
const P1 = E1.counters().port;
const P2 = E2.counters().port;
check(P1 > 0 && P2 > 0 && P1 !== P2, 'engines bound reserved ports', { P1, P2 });
throwsLike(
  () => E1.start({ hostIp: '127.0.0.1', port: 0, overlayCidr: overlay, localSubnet: '10.99.0.0/24' }, () => {}),
  /already started/,
  'second start() throws',
);
throwsLike(
  () => new Engine().start({ hostIp: '127.0.0.1', port: P1, overlayCidr: overlay, localSubnet: '10.99.0.0/24' }, () => {}),
  /EADDRINUSE|in use/i,
  'start() on a used port throws',
);
throwsLike(
  () => new Engine().start({ hostIp: 'nope', port: 0, overlayCidr: overlay, localSubnet: '10.99.0.0/24' }, () => {}),
  /hostIp/,
  'start() validates hostIp',
);

// A closed port (for connect failures) and a blackhole listener (SYNs dropped, for timeouts).
const closedPort = await new Promise((r) => {
  const s = net.createServer().listen(0, '127.0.0.3', () => {
    const p = s.address().port;
    s.close(() => r(p));
  });
});

const sock = (n) => path.join(tmp, `${n}.sock`);
E1.addContainer('a', '10.99.0.2', sock('a'));
E1.addContainer('b', '10.99.0.3', sock('b'));
E2.addContainer('c', '10.98.0.2', sock('c'));
throwsLike(() => E1.addContainer('a', '10.99.0.9', sock('a2')), /already registered/, 'duplicate container id throws');
throwsLike(() => E1.addContainer('a2', '10.99.0.2', sock('a2')), /already used by container "a"/, 'duplicate container ip throws');
check((fs.statSync(sock('a')).mode & 0o777) === 0o666, 'broker socket is mode 0666');
fs.writeFileSync(sock('stale'), 'x');
E2.addContainer('stale', '10.98.0.50', sock('stale'));
check(fs.statSync(sock('stale')).isSocket(), 'a stale file at the socket path is replaced');
check(E2.removeContainer('stale') === true && !fs.existsSync(sock('stale')), 'removeContainer unlinks the socket');

E1.setPeers([
  { ip: '127.0.0.2', subnet: '10.98.0.0/24', port: P2 },
  { ip: '127.0.0.3', subnet: '10.97.0.0/24', port: closedPort },
  { ip: '127.0.0.1', subnet: '10.101.0.0/24', port: 1 }, // replaced below once the blackhole exists
]);
E2.setPeers([{ ip: '127.0.0.1', subnet: '10.99.0.0/24', port: P1 }]);

const A = await client(sock('a'));
const B = await client(sock('b'));
const C = await client(sock('c'));
await until(() => E1.counters().preload_conns === 2 && E2.counters().preload_conns === 1);
check(E1.counters().preload_conns === 2 && E1.counters().containers === 2, 'preload connections counted', E1.counters());

// ---------- HELLO ----------
let r = await A.cmd('hello');
check(
  r.type === 101 && r.status === 0 && r.vip_a === '10.99.0.2' && r.vip_b === '10.96.0.0' && r.a === 12 && r.version === 1,
  'HELLO_OK: vIP, overlay, prefix',
  r,
);
r = await C.cmd('hello');
check(r.vip_a === '10.98.0.2', 'HELLO_OK on the second engine', r);

// ---------- LISTEN / QUERY_CHANNEL ----------
r = await B.cmd('listen 0.0.0.0 80');
const bChan = r.h;
const bReal = r.real_port;
check(r.type === 103 && r.status === 0 && r.h >= 0 && r.vip_a === '0.0.0.0' && r.port_a === 80, 'LISTEN_OK with a channel', r);
await until(() => ev1.some((e) => e.type === 'listener'));
check(
  JSON.stringify(ev1.filter((e) => e.type === 'listener')) ===
    JSON.stringify([{ type: 'listener', op: 'add', ip: '10.99.0.3', port: 80, containerId: 'b' }]),
  'listener add event',
  ev1,
);
check(
  JSON.stringify(E1.listeners()) === JSON.stringify([{ ip: '10.99.0.3', port: 80, containerId: 'b', channels: 1 }]),
  'listeners() shows it',
  E1.listeners(),
);
r = await B.cmd(`query ${bChan}`);
check(r.type === 104 && r.status === 0 && r.vip_a === '0.0.0.0' && r.port_a === 80, 'QUERY_CHANNEL finds the channel', r);
r = await B.cmd('queryino 123456789');
check(r.type === 104 && r.status === 2, 'QUERY_CHANNEL unknown inode -> ENOENT', r);
r = await A.cmd(`queryino ${fs.statSync('/proc/self/fd/0').ino}`);
check(r.status === 2, 'QUERY_CHANNEL from another container -> ENOENT', r);

r = await B.cmd('listen-notlistening 0.0.0.0 81');
check(r.type === 103 && r.status === 22 && r.h === -1, 'LISTEN with a non-listening socket -> EINVAL', r);
r = await B.cmd('listen-nofd 0.0.0.0 82');
check(r.type === 103 && r.status === 22, 'LISTEN without a descriptor -> EINVAL', r);
r = await B.cmd('listen 10.99.0.2 83');
check(r.type === 103 && r.status === -1, "LISTEN on another container's vIP -> FALLBACK", r);
check(E1.listeners().length === 1, 'failed LISTENs leave no listener', E1.listeners());

// ---------- same host ----------
r = await A.cmd('connect 10.99.0.3 80');
const aPair = r.h;
const sport = r.port_a;
check(
  r.type === 102 &&
    r.status === 0 &&
    r.h >= 0 &&
    r.vip_a === '10.99.0.2' &&
    sport >= 32768 &&
    sport <= 60999 &&
    r.vip_b === '10.99.0.3' &&
    r.port_b === 80,
  'same-host CONNECT_OK with a socket',
  r,
);
r = await B.cmd(`accept ${bChan} 2000`);
const bPair = r.h;
check(
  r.type === 201 && r.h >= 0 && r.vip_a === '10.99.0.3' && r.port_a === 80 && r.vip_b === '10.99.0.2' && r.port_b === sport,
  'same-host SF_ACCEPTED addresses',
  r,
);
await A.cmd(`send ${aPair} ping`);
r = await B.cmd(`recv ${bPair} 2000`);
check(r.data === 'ping', 'same-host data a -> b', r);
await B.cmd(`send ${bPair} pong`);
r = await A.cmd(`recv ${aPair} 2000`);
check(r.data === 'pong', 'same-host data b -> a', r);
r = await A.cmd(`names ${aPair}`);
check(/^127\.0\.0\.1:\d+$/.test(r.local) && /^127\.0\.0\.1:\d+$/.test(r.peer), 'same-host pair is loopback TCP', r);
for (const [who, h] of [
  [A, aPair],
  [B, bPair],
]) {
  r = await who.cmd(`repoint ${h} 127.0.0.1 ${closedPort}`);
  check(
    r.connect === 1 && r.bind === 1 && r.listen !== 0 && r.fastopen === 1,
    `same-host ${who === A ? 'client' : 'server'} end: re-connect, bind, listen, Fast Open refused`,
    r,
  );
}
await A.cmd(`close ${aPair}`);
await B.cmd(`close ${bPair}`);
r = await A.cmd('connect 10.99.0.3 80 5555');
const a2 = r.h;
check(r.status === 0 && r.port_a === 5555, 'same-host CONNECT keeps the bound port', r);
r = await B.cmd(`accept ${bChan} 2000`);
check(r.type === 201 && r.port_b === 5555 && r.vip_b === '10.99.0.2', 'SF_ACCEPTED carries the bound port', r);
await A.cmd(`close ${a2}`);
await B.cmd(`close ${r.h}`);
check(E1.counters().same_host === 2, 'same_host counter', E1.counters());

// ---------- fallbacks ----------
const fb0 = E1.counters().fallbacks;
for (const [dst, why] of [
  ['10.99.0.3 81', 'local container, no listener'],
  ['10.99.0.9 80', 'own subnet, unregistered ip'],
  ['192.0.2.1 80', 'outside the overlay'],
  ['10.100.0.1 80', 'in the overlay, no peer'],
  ['10.98.0.2 8080', 'peer view unknown'],
]) {
  r = await A.cmd(`connect ${dst}`);
  check(r.type === 102 && r.status === -1 && r.h === -1, `FALLBACK: ${why}`, r);
}
check(E1.counters().fallbacks === fb0 + 5, 'fallbacks counter', E1.counters());

// ---------- cross host (E1 -> reserved port of E2) ----------
r = await C.cmd('listen 0.0.0.0 8080');
const cChan = r.h;
check(r.status === 0, 'LISTEN on the second engine', r);
await until(() => ev2.some((e) => e.type === 'listener'));
check(
  ev2.some((e) => e.type === 'listener' && e.op === 'add' && e.ip === '10.98.0.2' && e.port === 8080 && e.containerId === 'c'),
  'E2 listener add event',
  ev2,
);
E1.setRemoteListeners('127.0.0.2', ['10.98.0.2:8080']);
r = await A.cmd('connect 10.98.0.2 8080');
const aX = r.h;
const xport = r.port_a;
check(
  r.type === 102 && r.status === 0 && r.h >= 0 && r.vip_a === '10.99.0.2' && r.vip_b === '10.98.0.2' && r.port_b === 8080,
  'cross-host CONNECT_OK with a socket',
  r,
);
r = await C.cmd(`accept ${cChan} 2000`);
const cX = r.h;
check(
  r.type === 201 && r.vip_a === '10.98.0.2' && r.port_a === 8080 && r.vip_b === '10.99.0.2' && r.port_b === xport,
  'cross-host SF_ACCEPTED (from the header)',
  r,
);
await A.cmd(`send ${aX} over`);
r = await C.cmd(`recv ${cX} 2000`);
check(r.data === 'over', 'cross-host data a -> c (header not leaked)', r);
await C.cmd(`send ${cX} back`);
r = await A.cmd(`recv ${aX} 2000`);
check(r.data === 'back', 'cross-host data c -> a', r);
r = await A.cmd(`names ${aX}`);
check(r.peer === `127.0.0.2:${P2}` && r.local.startsWith('127.0.0.1:'), 'cross-host socket runs hostIp -> peer reserved port', r);
// The confinement guard: a handed socket, either side, cannot be pointed anywhere else. The
// disconnect has no hook (the socket is dead after it); connect, bind and Fast Open get EPERM,
// listen EINVAL from the kernel itself.
const g1 = E1.counters();
const g2 = E2.counters();
check(g1.confined === 1 && g2.confined === 1 && E1.unconfined() === '', 'both engines are confined', [g1.confined, E1.unconfined()]);
const EPERM = 1;
// (Both engines run on this machine, so a socket E1 arms is armed in E2's guard too: each
// engine's counters are read just before its own socket's turn.)
for (const [who, h, eng] of [
  [A, aX, E1],
  [C, cX, E2],
]) {
  const g0 = eng.counters();
  r = await who.cmd(`repoint ${h} 127.0.0.1 ${closedPort}`);
  check(
    r.connect === EPERM && r.bind === EPERM && r.listen !== 0 && r.fastopen === EPERM,
    `handed socket ${h === aX ? 'out' : 'in'}: re-connect, bind, listen, Fast Open refused`,
    r,
  );
  const g = eng.counters();
  check(g.guard_denied_connect === g0.guard_denied_connect + 2 && g.guard_denied_bind === g0.guard_denied_bind + 1, 'the refusals are counted', g);
}
await A.cmd(`close ${aX}`);
await C.cmd(`close ${cX}`);
check(E1.counters().handed_out === 1 && E2.counters().handed_in === 1, 'handed_out / handed_in counters', [E1.counters(), E2.counters()]);

// Pools: that first cross-host connect came with a pool channel for E2's route, stocked with
// pre-established connections on which nothing was sent yet (E2's kernel holds them).
check(
  await until(() => E1.counters().pools === 1 && E1.counters().pool_stocked === 4),
  'a pool channel is stocked with 4 connections',
  E1.counters(),
);
check(E2.counters().pending_headers === 0 && E2.counters().handed_in === 1, "the peer's broker has not seen them", E2.counters());
// A host speaks only for its own subnet: before E2 knows E1's key, an unsigned CONNECT from E1's
// address is taken for a source vIP in E1's subnet, refused for any other (another host's
// container, or an address of no container).
{
  const nm = E2.counters().header_not_member;
  const hin = E2.counters().handed_in;
  for (const src of ['10.98.0.77', '10.50.0.9']) {
    const x = raw('127.0.0.2', P2, '127.0.0.1');
    await x.ready;
    x.s.write(header({ type: 1, dst: '10.98.0.2', dport: 8080, src, sport: 4321 }));
    check(await until(() => x.closed), `an unsigned CONNECT from E1 with source ${src} is closed`, x);
    x.s.destroy();
  }
  check(
    E2.counters().header_not_member === nm + 2 && E2.counters().handed_in === hin,
    "counted as not from the subnet's owner, nothing handed in",
    E2.counters(),
  );
  const ok = raw('127.0.0.2', P2, '127.0.0.1');
  await ok.ready;
  ok.s.write(header({ type: 1, dst: '10.98.0.2', dport: 8080, src: '10.99.0.9', sport: 4321 }));
  r = await C.cmd(`accept ${cChan} 2000`);
  check(r.type === 201 && r.vip_b === '10.99.0.9' && r.port_b === 4321, 'one from its own subnet is handed in', r);
  await C.cmd(`close ${r.h}`);
  ok.s.destroy();
}
// E2 learns E1's host key from the SYNC header E1 subscribes with (here: written by hand).
const subscription = raw('127.0.0.2', P2, '127.0.0.1');
subscription.s.write(header({ type: 2, keyId: 1, tag: E1.hostKey() }));
check(await until(() => ev2.some((e) => e.type === 'sync')), 'E2 got the SYNC header with the key', ev2);
new net.Socket({ fd: ev2.find((e) => e.type === 'sync').fd }).destroy();
subscription.s.destroy();
r = await A.cmd('pooltake 10.98.0.2 8080');
const aP = r.h;
check(
  r.type === 202 && r.h >= 0 && r.len === 80 && r.sent === 48 && r.key_id === 1 && r.hdr_type === 3 && r.port_a > 0 && r.pool_channels === 1,
  'pooltake: an SF_POOLED socket with a signed header, completed and sent',
  r,
);
r = await C.cmd(`accept ${cChan} 2000`);
const cP = r.h;
check(
  r.type === 201 && r.vip_a === '10.98.0.2' && r.port_a === 8080 && r.vip_b === '10.99.0.2',
  'pooled: SF_ACCEPTED with the stamped source vIP',
  r,
);
await A.cmd(`send ${aP} pooled`);
r = await C.cmd(`recv ${cP} 2000`);
check(r.data === 'pooled', 'pooled: data a -> c (header not leaked)', r);
await A.cmd(`close ${aP}`);
await C.cmd(`close ${cP}`);
check(
  await until(() => E1.counters().pool_taken === 1 && E1.counters().handed_out === 2 && E1.counters().pool_stocked === 5),
  'the take is counted and the pool stocked back up',
  [E1.counters(), E2.counters()],
);
const he = E2.counters().header_errors;
r = await A.cmd('pooltake 10.98.0.2 8080 forge');
const aF = r.h;
check(r.type === 202 && r.sent === 48, 'pooltake with a forged source vIP sent', r);
r = await A.cmd(`recv ${aF} 2000`);
check(r.error === 'ECONNRESET' || r.eof === true, 'a pooled header whose source vIP was changed is refused (MAC)', r);
check(
  (await until(() => E2.counters().header_errors === he + 1)) && E2.counters().handed_in === 3,
  'counted as a header error, nothing handed in',
  E2.counters(),
);
await A.cmd(`close ${aF}`);
r = await A.cmd('pooltake 10.98.0.2 8080 unsigned');
const aU = r.h;
r = await A.cmd(`recv ${aU} 2000`);
check(r.error === 'ECONNRESET' || r.eof === true, 'an unsigned CONNECT header from a host whose key is known is refused', r);
check((await until(() => E2.counters().header_errors === he + 2)) && E2.counters().handed_in === 3, 'counted, nothing handed in', E2.counters());
await A.cmd(`close ${aU}`);
// As far as E2 can tell, E1's broker restarts twice (new keys in new SYNC headers): pooled headers
// signed with the key before the latest still pass (processes may hold them up to 20 s), older fail.
async function resubscribe(key) {
  const n = ev2.filter((e) => e.type === 'sync').length;
  const sub = raw('127.0.0.2', P2, '127.0.0.1');
  sub.s.write(header({ type: 2, keyId: 1, tag: key }));
  await until(() => ev2.filter((e) => e.type === 'sync').length > n);
  new net.Socket({ fd: ev2.filter((e) => e.type === 'sync').pop().fd }).destroy();
  sub.s.destroy();
}
await resubscribe(crypto.randomBytes(16));
r = await A.cmd('pooltake 10.98.0.2 8080');
const aK1 = r.h;
r = await C.cmd(`accept ${cChan} 2000`);
check(r.type === 201 && r.vip_b === '10.99.0.2', 'a header signed with the previous key still passes', r);
await C.cmd(`close ${r.h}`);
await A.cmd(`close ${aK1}`);
await resubscribe(crypto.randomBytes(16));
r = await A.cmd('pooltake 10.98.0.2 8080');
const aK2 = r.h;
r = await A.cmd(`recv ${aK2} 2000`);
check(r.error === 'ECONNRESET' || r.eof === true, 'one signed with a key two generations old is refused', r);
await A.cmd(`close ${aK2}`);
await resubscribe(E1.hostKey()); // E1's real key again, for what follows

// A process that stops reading its pool channel: the broker's pushes fail (EPIPE) although it sees
// no EOF. It must drop the pool, not keep connecting and failing (that once spun the thread).
{
  const X = await client(sock('a'));
  // Reading the counters reads every pool's take reports (and restocks them): A's pool is full
  // again before X's is made. A moment for the restocking connects, then the baseline.
  E1.counters();
  await new Promise((res) => setTimeout(res, 50));
  const stocked0 = E1.counters().pool_stocked;
  r = await X.cmd('connect 10.98.0.2 8080');
  check(r.status === 0, 'X: cross-host connect (with a pool)', r);
  // A's pool holds 4 of the 6 pooled connections E1 may keep to E2 (poolPeerMax): X gets 2.
  check(await until(() => E1.counters().pool_stocked === stocked0 + 2), "X's pool is stocked up to the per-peer cap", [stocked0, E1.counters()]);
  await new Promise((res) => setTimeout(res, 200));
  check(E1.counters().pool_stocked === stocked0 + 2, 'and no further', E1.counters());
  await X.cmd(`close ${r.h}`);
  const pools = E1.counters().pools;
  r = await X.cmd('poolshut 10.98.0.2');
  check(r.shutdown === 0 && r.sent === 32, 'X stopped reading its pool and asked for more', r);
  const t0 = Date.now();
  check(await until(() => E1.counters().pools === pools - 1, 2000), 'the broker dropped that pool', E1.counters());
  check(Date.now() - t0 < 2000, 'and stayed responsive', Date.now() - t0);
  r = await A.cmd('connect 10.98.0.2 8080');
  check(r.status === 0, 'other processes still connect', r);
  await A.cmd(`close ${r.h}`);
  r = await C.cmd(`accept ${cChan} 2000`);
  await C.cmd(`close ${r.h}`);
  r = await C.cmd(`accept ${cChan} 200`);
  if (r.h >= 0) await C.cmd(`close ${r.h}`);
  await X.quit();
}
r = await A.cmd('pooltake 10.98.0.2 7777');
const aQ = r.h;
check(r.type === 202 && r.h >= 0, 'pooltake for a port nobody listens on', r);
r = await A.cmd(`recv ${aQ} 2000`);
check(r.error === 'ECONNRESET' || r.eof === true, 'pooled connection to an unknown listener is reset', r);
await A.cmd(`close ${aQ}`);
check(await until(() => E2.counters().refused === 1), 'refused on the peer', E2.counters());
r = await A.cmd('connect 10.98.0.2 9999');
check(r.status === -1, 'FALLBACK: peer view lacks the address', r);

// Reverse direction (E2 -> E1), with a known view.
E2.setRemoteListeners('127.0.0.1', ['10.99.0.3:80']);
r = await C.cmd('connect 10.99.0.3 80 4242');
const cY = r.h;
check(r.status === 0 && r.vip_a === '10.98.0.2' && r.port_a === 4242, 'cross-host CONNECT the other way', r);
r = await B.cmd(`accept ${bChan} 2000`);
check(r.type === 201 && r.vip_b === '10.98.0.2' && r.port_b === 4242 && r.vip_a === '10.99.0.3' && r.port_a === 80, 'reverse SF_ACCEPTED', r);
await B.cmd(`close ${r.h}`);
await C.cmd(`close ${cY}`);

// A stale view: E1 believes 10.98.0.2:7777 listens; E2 resets (refused).
E1.setRemoteListeners('127.0.0.2', ['10.98.0.2:8080', '10.98.0.2:7777']);
const cf0 = E1.counters().connect_failures;
r = await A.cmd('connect 10.98.0.2 7777');
if (r.status === 0) {
  check(true, 'stale view: connect handed out', r);
  const aS = r.h;
  r = await A.cmd(`recv ${aS} 2000`);
  check(r.error === 'ECONNRESET' || r.eof === true, 'stale view: the peer resets the connection', r);
  await A.cmd(`close ${aS}`);
} else {
  // The header rides in the SYN, so E2's reset can reach E1 before E1's engine thread has seen
  // the connect complete: then E1 counts a failed connect and answers fallback (the app's own
  // connect gets the real answer). Both orders happen on a busy machine.
  check(r.status === -1 && r.a === 0, 'stale view: the peer refused before the handoff: fallback, not remembered', r);
  check(E1.counters().connect_failures === cf0 + 1, 'stale view: counted as a failed connect', E1.counters());
}
check(await until(() => E2.counters().refused === 2), 'refused counter on the peer (the pooled one above, then this)', E2.counters());
E1.setRemoteListeners('127.0.0.2', null);
r = await A.cmd('connect 10.98.0.2 8080');
check(r.status === -1, 'FALLBACK once the view is unknown again', r);

// ---------- policy (policy.mjs) ----------
const deniedUs = await policyTests({ E1, E2, A, B, C, bChan, cChan, check, throwsLike, until, client, sock });
if (verbose) console.log(`   a denied connect took ${deniedUs.toFixed(0)} us (round trip through sfclient)`);

// ---------- connect failures ----------
E1.setRemoteListeners('127.0.0.3', ['10.97.0.2:80']);
let cf = E1.counters().connect_failures;
r = await A.cmd('connect 10.97.0.2 80');
check(r.status === -1 && E1.counters().connect_failures === cf + 1, 'connect refused by the peer -> FALLBACK + connect_failures', [r, E1.counters()]);
r = await A.cmd('blackhole');
const bh = r.port;
E1.setPeers([
  { ip: '127.0.0.2', subnet: '10.98.0.0/24', port: P2 },
  { ip: '127.0.0.3', subnet: '10.97.0.0/24', port: closedPort },
  { ip: '127.0.0.1', subnet: '10.101.0.0/24', port: bh },
]);
E1.setRemoteListeners('127.0.0.1', ['10.101.0.2:80']);
cf = E1.counters().connect_failures;
const t0 = Date.now();
r = await A.cmd('connect 10.101.0.2 80');
const took = Date.now() - t0;
check(r.status === -1 && E1.counters().connect_failures === cf + 1 && took >= 400 && took < 2500, 'connect timeout -> FALLBACK', {
  r,
  took,
  c: E1.counters(),
});
// The preload goes away while its connect is pending: the request is dropped.
const A2 = await client(sock('a'));
A2.send('connect 10.101.0.2 80');
check(await until(() => E1.counters().pending_connects === 1), 'pending connect is tracked', E1.counters());
A2.p.kill('SIGKILL');
await A2.exited;
check(
  await until(() => E1.counters().pending_connects === 0 && E1.counters().preload_conns === 2),
  'closing the preload drops its pending connect',
  E1.counters(),
);
check(E1.counters().connect_failures === cf + 1, 'dropped request is not a connect failure', E1.counters());

// ---------- plain (non-SlimFast) clients on the real listening socket ----------
const plain = raw('127.0.0.1', bReal);
await plain.ready;
plain.s.write('plain');
r = await B.cmd(`accept ${bChan} 2000`);
check(
  r.type === 201 && r.vip_a === '127.0.0.1' && r.port_a === bReal && r.vip_b === '127.0.0.1' && r.port_b === plain.s.localPort,
  'plain accept pushed with real addresses',
  r,
);
const bP = r.h;
r = await B.cmd(`recv ${bP} 2000`);
check(r.data === 'plain', 'plain accept data', r);
await B.cmd(`close ${bP}`);
plain.s.destroy();
check(E1.counters().plain_accepts === 1, 'plain_accepts counter', E1.counters());

// ---------- two channels on one key: round-robin ----------
const B2 = await client(sock('b'));
r = await B2.cmd('listen 0.0.0.0 80');
const b2Chan = r.h;
check(r.status === 0, 'second LISTEN on the same key', r);
check(E1.listeners()[0]?.channels === 2, 'listener has two channels', E1.listeners());
const got = { b: 0, b2: 0 };
for (let i = 0; i < 4; i++) {
  r = await A.cmd('connect 10.99.0.3 80');
  await A.cmd(`close ${r.h}`);
}
for (const [name, cl, ch] of [
  ['b', B, bChan],
  ['b2', B2, b2Chan],
]) {
  for (;;) {
    r = await cl.cmd(`accept ${ch} 300`);
    if (r.type !== 201) break;
    got[name]++;
    await cl.cmd(`close ${r.h}`);
  }
}
check(got.b === 2 && got.b2 === 2, 'connections shared round-robin', got);
check(ev1.filter((e) => e.type === 'listener').length === 1, 'second channel emits no add event', ev1);

// ---------- reserved port: headers ----------
let s = raw('127.0.0.1', P1, '127.0.0.3');
s.s.write(Buffer.alloc(48, 'x'));
check(await until(() => s.closed), 'malformed header: closed');
check(E1.counters().header_errors === 1, 'header_errors counter', E1.counters());

s = raw('127.0.0.1', P1, '127.0.0.3');
s.s.write(header({ dst: '10.99.0.3', dport: 4444, src: '10.97.0.9', sport: 1 })); // 127.0.0.3 owns 10.97.0.0/24
check(await until(() => s.closed), 'unknown destination: closed');
check(s.error === 'ECONNRESET' && E1.counters().refused === 1, 'unknown destination: reset + refused', [s.error, E1.counters()]);

const hin = E1.counters().handed_in;
s = raw('127.0.0.1', P1, '127.0.0.3');
await s.ready;
const h56 = header({ dst: '10.99.0.3', dport: 80, src: '10.97.0.77', sport: 1234, len: 56 });
s.s.write(h56.subarray(0, 20));
check(await until(() => E1.counters().pending_headers === 1), 'partial header waits in epoll', E1.counters());
await sleep(50);
s.s.write(Buffer.concat([h56.subarray(20), Buffer.from('EXTRAEXT'), Buffer.from('hello')]));
let acc = B;
r = await B.cmd(`accept ${bChan} 1000`);
if (r.type !== 201) {
  acc = B2;
  r = await B2.cmd(`accept ${b2Chan} 1000`);
}
check(
  r.type === 201 && r.vip_a === '10.99.0.3' && r.port_a === 80 && r.vip_b === '10.97.0.77' && r.port_b === 1234,
  'handed in after a split, longer header',
  r,
);
r = await acc.cmd(`recv ${r.h} 1000`);
check(r.data === 'hello', 'exactly hdr_len bytes consumed (app data intact)', r);
check(E1.counters().handed_in === hin + 1 && E1.counters().pending_headers === 0, 'handed_in / pending_headers', E1.counters());
s.s.destroy();

s = raw('127.0.0.1', P1, '127.0.0.3');
await s.ready;
s.s.write(Buffer.alloc(10, 1));
check(await until(() => s.closed, 2000), 'incomplete header times out (headerTimeoutMs)');
check(E1.counters().header_errors === 2 && E1.counters().pending_headers === 0, 'timeout counted as header error', E1.counters());

s = raw('127.0.0.1', P1, '127.0.0.3');
s.s.write(Buffer.concat([header({ type: 2 }), Buffer.from('{"type":"full"}\n')]));
check(await until(() => ev1.some((e) => e.type === 'sync')), 'SYNC header -> sync event', ev1);
const se = ev1.find((e) => e.type === 'sync');
check(se && se.peerIp === '127.0.0.3' && se.fd > 2, 'sync event carries fd and peerIp', se);
if (se) {
  const js = new net.Socket({ fd: se.fd, readable: true, writable: true });
  let data = '';
  js.on('data', (d) => (data += d));
  check(await until(() => data === '{"type":"full"}\n'), 'JS owns the sync fd; header consumed, stream intact', data);
  js.destroy();
}
s.s.destroy();

// ---------- malformed preload messages ----------
for (const [args, why] of [
  ['1 1 20', 'short message'],
  ['1 9 32', 'wrong version'],
  ['1 1 40', 'long message'],
]) {
  const X = await client(sock('a'));
  await X.cmd(`raw ${args}`);
  r = await X.cmd('hello');
  check(r.error === 'eof' || /reset|pipe/i.test(r.error ?? ''), `malformed preload message closes the connection (${why})`, r);
  await X.quit();
}
check(E1.counters().bad_msgs === 3, 'bad_msgs counter', E1.counters());

// ---------- listener removal ----------
await B2.cmd(`close ${b2Chan}`);
check(await until(() => E1.listeners()[0]?.channels === 1), 'closing one channel leaves the other', E1.listeners());
await B.cmd(`close ${bChan}`);
check(await until(() => E1.listeners().length === 0), 'closing the last channel removes the listener', E1.listeners());
check(await until(() => ev1.some((e) => e.type === 'listener' && e.op === 'remove')), 'listener remove event');
check(
  JSON.stringify(ev1.filter((e) => e.type === 'listener' && e.op === 'remove')) ===
    JSON.stringify([{ type: 'listener', op: 'remove', ip: '10.99.0.3', port: 80, containerId: 'b' }]),
  'remove event fields',
  ev1,
);
check(E1.counters().listeners === 0, 'listeners gauge', E1.counters());
r = await A.cmd('connect 10.99.0.3 80');
check(r.status === -1, 'FALLBACK after the listener is gone', r);

// ---------- removeContainer ----------
check(E2.removeContainer('c') === true, 'removeContainer returns true');
check(E2.removeContainer('c') === false, 'removeContainer of an unknown id returns false');
check(!fs.existsSync(sock('c')), 'container socket unlinked');
check(
  await until(() => ev2.some((e) => e.type === 'listener' && e.op === 'remove' && e.port === 8080 && e.containerId === 'c')),
  'removeContainer emits listener remove',
  ev2,
);
r = await C.cmd('hello');
check(r.error === 'eof' || /reset|pipe/i.test(r.error ?? ''), "removeContainer closes the container's preload connections", r);
check(E2.listeners().length === 0 && E2.counters().containers === 0 && E2.counters().preload_conns === 0, 'E2 tables empty', [
  E2.listeners(),
  E2.counters(),
]);

// ---------- without the confinement guard nothing is handed out ----------
{
  const E3 = new Engine();
  E3.start({ hostIp: '127.0.0.4', port: 0, overlayCidr: overlay, localSubnet: '10.95.0.0/24', guard: false }, () => {});
  E3.addContainer('u1', '10.95.0.2', sock('u1'));
  E3.addContainer('u2', '10.95.0.3', sock('u2'));
  const U1 = await client(sock('u1'));
  const U2 = await client(sock('u2'));
  check(E3.counters().confined === 0 && /guard: false/.test(E3.unconfined()), 'an engine without its guard says so', [
    E3.counters().confined,
    E3.unconfined(),
  ]);
  r = await U2.cmd('listen 0.0.0.0 80');
  check(r.type === 103 && r.status === -1 && r.h === -1, 'unconfined: LISTEN -> FALLBACK (the application keeps its own listener)', r);
  r = await U1.cmd('connect 10.95.0.3 80');
  check(r.type === 102 && r.status === -1 && r.h === -1, 'unconfined: same-host CONNECT -> FALLBACK', r);
  E3.setPeers([{ ip: '127.0.0.2', subnet: '10.98.0.0/24', port: P2 }]);
  E3.setRemoteListeners('127.0.0.2', ['10.98.0.2:9090']);
  r = await U1.cmd('connect 10.98.0.2 9090');
  check(r.type === 102 && r.status === -1 && r.h === -1, 'unconfined: cross-host CONNECT -> FALLBACK, no pool', r);
  check(E3.counters().handed_out === 0 && E3.counters().pools === 0 && E3.listeners().length === 0, 'unconfined: nothing handed out', E3.counters());
  await U1.quit();
  await U2.quit();
  clients.splice(clients.indexOf(U1), 1);
  clients.splice(clients.indexOf(U2), 1);
  E3.stop();
}

// ---------- cluster key (cluster_key.mjs) ----------
await clusterKeyTests({ Engine, E1, overlay, check, throwsLike, until, raw, header, client, sock });
await hostileTests({ Engine, check, throwsLike, until, raw, header });
await limitsTests({
  Engine,
  addon: require(process.env.SLIMFAST_ADDON ?? path.join(root, 'build', 'Release', 'slimfast_addon.node')),
  check,
  until,
  raw,
  header,
  client,
  clients,
  sfclient,
});

// ---------- stop ----------
for (const c of clients) await c.quit();
if (verbose) console.log(E1.counters(), E2.counters());
E1.stop();
E2.stop();
E1.stop();
check(
  E1.counters().port === 0 && E1.counters().containers === 0 && E1.counters().preload_conns === 0,
  'stop() closes everything (gauges 0)',
  E1.counters(),
);
check(!fs.existsSync(sock('a')) && !fs.existsSync(sock('b')), 'stop() unlinks container sockets');
E1.start({ hostIp: '127.0.0.1', port: 0, overlayCidr: overlay, localSubnet: '10.99.0.0/24' }, () => {});
check(E1.counters().port > 0, 'start() again after stop()');
E1.stop();
await sleep(50);
// (libuv keeps a /dev/null open after the first spawn; only sockets/epoll/eventfds are ours.)
const leaked = fdList().filter((f) => /socket:|anon_inode:/.test(f) && !fdListBefore.includes(f));
check(leaked.length === 0, 'no descriptors leaked (sockets, epoll, eventfd)', { leaked, before: fdsBefore, after: fdCount() });

fs.rmSync(tmp, { recursive: true, force: true });
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
// Everything is stopped: the process must now exit by itself (TSFNs released, no stray handles).
setTimeout(() => {
  console.log('FAIL the process did not exit after stop()');
  process.exit(1);
}, 5000).unref();
