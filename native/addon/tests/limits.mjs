// The per-container limits and the privileged-port rule, in the self-test (selftest.mjs runs it).
// Two engines of their own: EL (127.0.0.10, subnet 10.110.0.0/24) with tiny limits (3 broker
// connections, 1 pool, 2 listener channels, 1 connect in progress per container) and EM
// (127.0.0.11, 10.111.0.0/24, container z listening on 9000) as its peer. A container at a limit is
// refused and counted, and every other container is served as before. Ports below a container's
// ip_unprivileged_port_start (fixed here with addContainer's unprivilegedPortStart) are refused to
// sfclient run as uid 65534 and allowed to root; a pooled header carrying one is reset by the
// receiver.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const EL_IP = '127.0.0.10';
const EM_IP = '127.0.0.11';
const EMFILE = 24;
const EACCES = 13;

export async function limitsTests(t) {
  const { Engine, addon, check, until, raw, header, client, clients, sfclient } = t;

  // ---- sizing from RLIMIT_NOFILE ----
  const big = addon.sizeLimits(1048576);
  check(
    big.conns === 1024 &&
      big.pools === 4096 &&
      big.listeners === 1024 &&
      big.pending === 1024 &&
      big.reserve === 65536 &&
      big.budget === 1048576 - 65536,
    'limits: the defaults under RLIMIT_NOFILE 1048576 (65536 kept for the control plane)',
    big,
  );
  const small = addon.sizeLimits(1024);
  const perContainer = (l) => l.conns + l.pools + 3 * l.listeners + 2 * l.pending;
  check(
    small.reserve === 256 && small.budget === 768 && perContainer(small) <= small.budget / 4 && small.conns >= 8,
    'limits: under RLIMIT_NOFILE 1024 one container at every limit holds at most a quarter of the budget',
    small,
  );
  const given = addon.sizeLimits(1024, { containerConnsMax: 5000, fdReserve: 100 });
  check(given.conns === 5000 && given.reserve === 100 && given.budget === 924, 'limits: explicit ones are taken as given', given);

  // uid 65534 must reach the sockets and a copy of sfclient.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-limits-'));
  fs.chmodSync(dir, 0o755);
  const bin = path.join(dir, 'sfclient');
  fs.copyFileSync(sfclient, bin);
  fs.chmodSync(bin, 0o755);
  const sock = (n) => path.join(dir, `${n}.sock`);
  const root = { bin };
  const nobody = { bin, uid: 65534, gid: 65534 };
  const mine = [];
  const open = async (name, as = root) => {
    const c = await client(sock(name), as);
    mine.push(c);
    return c;
  };

  const EL = new Engine();
  const EM = new Engine();
  EL.start(
    {
      hostIp: EL_IP,
      port: 0,
      overlayCidr: '10.96.0.0/12',
      localSubnet: '10.110.0.0/24',
      connectTimeoutMs: 1500,
      containerConnsMax: 3,
      containerPoolsMax: 1,
      containerListenersMax: 2,
      containerPendingMax: 1,
    },
    () => {},
  );
  const syncs = [];
  EM.start({ hostIp: EM_IP, port: 0, overlayCidr: '10.96.0.0/12', localSubnet: '10.111.0.0/24' }, (e) => {
    if (e.type === 'sync') {
      syncs.push(e);
      new net.Socket({ fd: e.fd }).destroy();
    }
  });
  const lim = EL.limits();
  check(
    lim.conns === 3 && lim.pools === 1 && lim.listeners === 2 && lim.pending === 1 && lim.nofile > 0 && lim.budget === lim.nofile - lim.reserve,
    'limits: limits() reports what start() made of the options',
    lim,
  );
  const PM = EM.counters().port;
  const PL = EL.counters().port;
  for (const [id, ip, portStart] of [
    ['x', '10.110.0.2', 1024],
    ['y', '10.110.0.3', 1024],
    ['w', '10.110.0.4', 1024],
    ['p', '10.110.0.5', 1024],
    ['q', '10.110.0.6', 0],
  ]) {
    EL.addContainer(id, ip, sock(id), { unprivilegedPortStart: portStart });
  }
  EM.addContainer('z', '10.111.0.2', sock('z'));
  EL.setPeers([{ ip: EM_IP, subnet: '10.111.0.0/24', port: PM }]);
  EM.setPeers([{ ip: EL_IP, subnet: '10.110.0.0/24', port: PL }]);
  const Z = await open('z');
  let r = await Z.cmd('listen 0.0.0.0 9000');
  const zChan = r.h;
  check(r.status === 0, 'limits: z listens on 9000', r);
  EL.setRemoteListeners(EM_IP, ['10.111.0.2:9000']);
  const drainZ = async (n) => {
    for (let i = 0; i < n; i++) {
      const a = await Z.cmd(`accept ${zChan} 2000`);
      if (a.h >= 0) await Z.cmd(`close ${a.h}`);
    }
  };
  const k = () => EL.counters();

  // ---- broker connections ----
  const X = [await open('x'), await open('x'), await open('x')];
  const hellos = await Promise.all(X.map((c) => c.cmd('hello')));
  check(
    hellos.every((h) => h.type === 101 && h.status === 0),
    'limits: three broker connections of x are served',
    hellos,
  );
  const X4 = await open('x');
  r = await X4.cmd('hello');
  check(r.type === 101 && r.status === EMFILE && r.seq === 0, 'limits: a fourth broker connection of x is told EMFILE', r);
  r = await X4.cmd('hello');
  check(r.error === 'eof' || /reset|pipe/i.test(r.error ?? ''), 'limits: and closed', r);
  check(k().limit_conns === 1 && k().preload_conns === 3, 'limits: counted in limit_conns; 3 connections open', k());
  const Y = await open('y');
  r = await Y.cmd('hello');
  check(r.status === 0, "limits: another container's broker connection is served", r);
  await X[2].quit();
  check(await until(() => k().preload_conns === 3), 'limits: x closed one', k());
  X[2] = await open('x');
  r = await X[2].cmd('hello');
  check(r.status === 0, 'limits: the place it freed is taken by the next one', r);

  // ---- listener channels ----
  for (const port of [8001, 8002]) {
    r = await X[0].cmd(`listen 0.0.0.0 ${port}`);
    check(r.status === 0, `limits: x listens on ${port}`, r);
  }
  r = await X[1].cmd('listen 0.0.0.0 8003');
  check(
    r.type === 103 && r.status === -EMFILE && r.h === -1,
    'limits: a third listener channel of x: the application keeps its own socket (-EMFILE)',
    r,
  );
  check(k().limit_listeners === 1 && EL.listeners().length === 2, 'limits: counted in limit_listeners, no listener made', [k(), EL.listeners()]);
  r = await Y.cmd('listen 0.0.0.0 8003');
  check(r.status === 0, 'limits: y still listens', r);

  // ---- pools ----
  r = await X[0].cmd('connect 10.111.0.2 9000');
  check(r.status === 0 && (await until(() => k().pools === 1)), "limits: x's first cross-host connect comes with a pool", [r, k()]);
  await X[0].cmd(`close ${r.h}`);
  r = await X[1].cmd('connect 10.111.0.2 9000');
  check(
    r.status === 0 && k().pools === 1 && k().limit_pools === 1,
    'limits: a second process of x gets no pool (limit_pools) but its connect is served',
    [r, k()],
  );
  await X[1].cmd(`close ${r.h}`);
  r = await Y.cmd('connect 10.111.0.2 9000');
  check(r.status === 0 && (await until(() => k().pools === 2)), 'limits: y gets its own pool', [r, k()]);
  await Y.cmd(`close ${r.h}`);
  await drainZ(3);

  // ---- connects in progress ----
  const W1 = await open('w');
  const W2 = await open('w');
  const bh = (await W1.cmd('blackhole')).port;
  EL.setPeers([
    { ip: EM_IP, subnet: '10.111.0.0/24', port: PM },
    { ip: '127.0.0.1', subnet: '10.107.0.0/24', port: bh },
  ]);
  EL.setRemoteListeners('127.0.0.1', ['10.107.0.2:80']);
  W1.send('connect 10.107.0.2 80');
  check(await until(() => k().pending_connects === 1), 'limits: a connect of w waits on an unresponsive peer', k());
  const t0 = Date.now();
  r = await W2.cmd('connect 10.107.0.2 80');
  check(
    r.type === 102 && r.status === -EMFILE && Date.now() - t0 < 500 && k().limit_pending === 1,
    "limits: w's next connect is answered FALLBACK at once (-EMFILE, limit_pending)",
    [r, Date.now() - t0, k()],
  );
  r = await Y.cmd('connect 10.111.0.2 9000');
  check(r.status === 0, "limits: y's connects are served meanwhile", r);
  await Y.cmd(`close ${r.h}`);
  await drainZ(1);
  r = await W1.next(4000);
  check(r.type === 102 && r.status === -1, 'limits: the held connect times out as before', r);

  // ---- privileged ports (p: ip_unprivileged_port_start 1024; q: 0) ----
  const PR = await open('p');
  const PN = await open('p', nobody);
  r = await PR.cmd('connect 10.111.0.2 9000 22');
  check(r.status === 0 && r.port_a === 22, 'ports: root may connect from port 22', r);
  await PR.cmd(`close ${r.h}`);
  r = await Z.cmd(`accept ${zChan} 2000`);
  check(r.type === 201 && r.port_b === 22, 'ports: and the listener sees port 22', r);
  if (r.h >= 0) await Z.cmd(`close ${r.h}`);
  const denied0 = k().sport_denied;
  r = await PN.cmd('connect 10.111.0.2 9000 22');
  check(
    r.type === 102 && r.status === EACCES && r.h === -1 && k().sport_denied === denied0 + 1,
    'ports: uid 65534 asking for source port 22 gets EACCES (sport_denied)',
    [r, k()],
  );
  r = await PN.cmd('connect 10.110.0.2 8001 22');
  check(r.status === EACCES && k().sport_denied === denied0 + 2, 'ports: to a listener on this host too', [r, k()]);
  r = await PN.cmd('connect 10.111.0.2 9000 1024');
  check(r.status === 0 && r.port_a === 1024, "ports: port 1024 is anybody's", r);
  await PN.cmd(`close ${r.h}`);
  r = await PN.cmd('connect 192.0.2.1 80 22');
  check(r.status === -1, 'ports: a connect the broker does not make is not refused (FALLBACK)', r);
  await drainZ(1);
  r = await PN.cmd('listen 0.0.0.0 80');
  check(
    r.type === 103 && r.status === -1 && r.h === -1 && k().lport_denied === 1,
    'ports: uid 65534 naming listening port 80 keeps its own socket (lport_denied)',
    [r, k()],
  );
  r = await PR.cmd('listen 0.0.0.0 80');
  check(r.status === 0, 'ports: root listens on 80', r);
  const QN = await open('q', nobody);
  r = await QN.cmd('connect 10.111.0.2 9000 22');
  check(r.status === 0 && r.port_a === 22, 'ports: in a container whose ip_unprivileged_port_start is 0, anybody may', r);
  await QN.cmd(`close ${r.h}`);
  await drainZ(1);

  // A pooled header is completed by whoever holds the socket, source port included: the receiver
  // refuses one below 1024. (EM learns EL's key from a SYNC header, as a subscription would bring.)
  const sub = raw(EM_IP, PM, EL_IP);
  sub.s.write(header({ type: 2, keyId: 1, tag: EL.hostKey() }));
  check(await until(() => syncs.length === 1), "ports: EM knows EL's key", syncs);
  sub.s.destroy();
  r = await PR.cmd('pooltake 10.111.0.2 9000 lowport');
  check(r.type === 202 && r.sent === 48, 'ports: a pooled socket sent with source port 22 in its header', r);
  const low = r.h;
  r = await PR.cmd(`recv ${low} 2000`);
  check(
    (r.error === 'ECONNRESET' || r.eof === true) && (await until(() => EM.counters().header_low_sport === 1)),
    'ports: the receiver resets it (header_low_sport)',
    [r, EM.counters()],
  );
  await PR.cmd(`close ${low}`);
  r = await PR.cmd('pooltake 10.111.0.2 9000');
  const ok = r.h;
  r = await Z.cmd(`accept ${zChan} 2000`);
  check(r.type === 201 && r.port_b >= 32768, 'ports: one with its own source port is handed in', r);
  if (r.h >= 0) await Z.cmd(`close ${r.h}`);
  await PR.cmd(`close ${ok}`);

  for (const c of mine) {
    await c.quit();
    clients.splice(clients.indexOf(c), 1);
  }
  EL.stop();
  EM.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
