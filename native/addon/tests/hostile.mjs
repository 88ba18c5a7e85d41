// The hostile-input part of the self-test (selftest.mjs runs it): whatever reaches the reserved
// port — garbage, bad versions, oversized lengths, slow senders, floods of idle connections,
// seeded random mutations — is closed and counted once, within the header deadline, and a
// well-behaved peer is served all along.
import net from 'node:net';

const HOST = '127.0.0.8';
const GOOD = '127.0.0.9'; // the one configured peer
const TIMEOUT_MS = 1500;
const PEER_MAX = 30;
const PENDING_MAX = 50;

// Outcome counters: each reserved-port connection ends in exactly one of them.
const OUTCOMES = ['header_errors', 'header_not_member', 'refused', 'pool_expired', 'sync_streams', 'header_overload', 'handed_in'];

// A small deterministic PRNG (mulberry32) so a failing run can be replayed with its seed.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function hostileTests(t) {
  const { Engine, check, throwsLike, until, raw, header } = t;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const events = [];
  const E = new Engine();
  E.start(
    {
      hostIp: HOST,
      port: 0,
      overlayCidr: '10.96.0.0/12',
      localSubnet: '10.108.0.0/24',
      headerTimeoutMs: TIMEOUT_MS,
      headerPeerMax: PEER_MAX,
      headerPendingMax: PENDING_MAX,
    },
    (e) => {
      events.push(e);
      if (e.type === 'sync') new net.Socket({ fd: e.fd }).destroy(); // what JS does with a stream it does not want
    },
  );
  const P = E.counters().port;
  E.setPeers([{ ip: GOOD, subnet: '10.109.0.0/24', port: 1 }]);
  const c = () => E.counters();
  const outcomes = () => Object.fromEntries(OUTCOMES.map((n) => [n, c()[n]]));
  const delta = (a, b) => Object.fromEntries(OUTCOMES.map((n) => [n, b[n] - a[n]]).filter(([, d]) => d !== 0));

  // A well-behaved peer: its SYNC header is served (a sync event) promptly.
  async function served(what) {
    const n = events.filter((e) => e.type === 'sync').length;
    const t0 = Date.now();
    const s = raw(HOST, P, GOOD);
    s.s.write(header({ type: 2 }));
    const ok = await until(() => events.filter((e) => e.type === 'sync').length === n + 1, 2000);
    s.s.destroy();
    check(ok && Date.now() - t0 < 1000, `${what}: a good peer's header is served (${Date.now() - t0} ms)`, c());
  }

  throwsLike(
    () => new Engine().start({ hostIp: HOST, port: 0, overlayCidr: '10.96.0.0/12', localSubnet: '10.108.0.0/24', headerPeerMax: 0 }, () => {}),
    /headerPeerMax/,
    'start() refuses headerPeerMax 0',
  );

  // ---- malformed headers: each closed at once, counted as a header error ----
  const good = () => header({ dst: '10.108.0.2', dport: 80, src: '10.109.0.2', sport: 1 });
  const bad = [
    ['48 bytes of garbage', Buffer.alloc(48, 0xa5)],
    [
      'a wrong magic',
      (() => {
        const h = good();
        h.writeUInt32BE(0x534c4632, 0);
        return h;
      })(),
    ],
    [
      'version 2',
      (() => {
        const h = good();
        h[4] = 2;
        return h;
      })(),
    ],
    [
      'version 0',
      (() => {
        const h = good();
        h[4] = 0;
        return h;
      })(),
    ],
    ['an unknown type (9)', header({ type: 9 })],
    ['type 0', header({ type: 0 })],
    ['a doorbell type from the network', header({ type: 4 })],
    ['hdr_len 47', header({ len: 47 })],
    ['hdr_len 0', header({ len: 0 })],
    ['hdr_len 257 (past the 256 cap)', header({ len: 257 })],
    ['hdr_len 65535', header({ len: 65535 })],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.padEnd(64, ' '))],
  ];
  for (const [what, bytes] of bad) {
    const before = outcomes();
    const s = raw(HOST, P, '127.0.0.10');
    s.s.write(bytes);
    const t0 = Date.now();
    const closed = await until(() => s.closed, 2000);
    check(
      closed && Date.now() - t0 < TIMEOUT_MS && JSON.stringify(delta(before, outcomes())) === '{"header_errors":1}',
      `${what}: closed before the deadline, one header error`,
      { ms: Date.now() - t0, d: delta(before, outcomes()) },
    );
  }
  for (const cut of [1, 20, 47, 60]) {
    const before = outcomes();
    const s = raw(HOST, P, '127.0.0.10');
    await s.ready;
    s.s.end(Buffer.concat([header({ len: 64 }), Buffer.alloc(16)]).subarray(0, cut));
    const closed = await until(() => s.closed, 2000);
    check(
      closed && JSON.stringify(delta(before, outcomes())) === '{"header_errors":1}',
      `a header cut at byte ${cut}, then EOF: one header error`,
      delta(before, outcomes()),
    );
  }
  {
    // The longest header accepted: 208 bytes beyond the fixed part are skipped, the stream intact.
    const n = events.filter((e) => e.type === 'sync').length;
    const s = raw(HOST, P, GOOD);
    s.s.write(Buffer.concat([header({ type: 2, len: 256 }), Buffer.alloc(208, 7)]));
    check(await until(() => events.filter((e) => e.type === 'sync').length === n + 1), 'hdr_len 256 is read to its end and served');
    s.s.destroy();
  }

  // ---- a slow sender: the deadline counts from accept, not from its last byte ----
  {
    const before = outcomes();
    const s = raw(HOST, P, '127.0.0.10');
    await s.ready;
    const t0 = Date.now();
    const bytes = header({ type: 2 });
    for (let i = 0; i < bytes.length && !s.closed; i++) {
      s.s.write(bytes.subarray(i, i + 1));
      await sleep(50);
    }
    const ms = Date.now() - t0;
    check(
      s.closed && ms >= TIMEOUT_MS - 50 && ms < TIMEOUT_MS + 800 && JSON.stringify(delta(before, outcomes())) === '{"header_errors":1}',
      `a header sent a byte per 50 ms is cut off at the ${TIMEOUT_MS} ms deadline (${ms} ms)`,
      delta(before, outcomes()),
    );
  }

  // ---- floods of idle connections ----
  {
    // Connections that send nothing stay with the kernel (TCP_DEFER_ACCEPT); the broker is not woken.
    const silent = [];
    for (let i = 0; i < 200; i++) silent.push(raw(HOST, P, '127.0.0.11'));
    await Promise.all(silent.map((s) => s.ready));
    await sleep(100);
    check(c().pending_headers === 0, '200 silent connections cost the broker nothing yet', c());
    await served('beside 200 silent connections');
    // Closing them makes the kernel hand each over (its FIN counts as data): EOF, counted as unused.
    for (const s of silent) s.s.destroy();
    await sleep(300);

    // Connections that send a few bytes and stop: one address gets headerPeerMax waiting, no more.
    const before = outcomes();
    const idle = [];
    for (let i = 0; i < PEER_MAX + 10; i++) {
      const s = raw(HOST, P, '127.0.0.12');
      s.s.write(Buffer.alloc(5, 1));
      idle.push(s);
    }
    await until(
      () => c().pending_headers + c().header_overload - before.header_overload === PEER_MAX + 10 && idle.filter((s) => s.closed).length >= 10,
    );
    check(
      c().pending_headers === PEER_MAX && c().header_overload - before.header_overload === 10 && idle.filter((s) => s.closed).length === 10,
      `${PEER_MAX + 10} idle connections from one address: ${PEER_MAX} wait, 10 are closed at once`,
      c(),
    );
    await served(`with ${PEER_MAX} idle connections from one address`);
    // Another address still gets in, up to the engine-wide limit.
    const more = [];
    for (let i = 0; i < 25; i++) {
      const s = raw(HOST, P, '127.0.0.13');
      s.s.write(Buffer.alloc(5, 1));
      more.push(s);
    }
    await until(() => c().pending_headers === PENDING_MAX && c().header_overload - before.header_overload === 15);
    check(
      c().pending_headers === PENDING_MAX && c().header_overload - before.header_overload === 15,
      `a second address gets the ${PENDING_MAX - PEER_MAX} places left of ${PENDING_MAX}; 5 more are closed`,
      c(),
    );
    check(
      await until(() => [...idle, ...more].every((s) => s.closed) && c().pending_headers === 0, TIMEOUT_MS + 1500),
      'at the deadline every idle connection is closed',
      c(),
    );
    check(
      JSON.stringify(delta(before, outcomes())) === JSON.stringify({ header_errors: 50, sync_streams: 1, header_overload: 15 }),
      "each one counted once: 50 header errors (timed out), 15 overloads (and the good peer's stream)",
      delta(before, outcomes()),
    );
    // The per-address count went back to zero: that address may wait again.
    const s = raw(HOST, P, '127.0.0.12');
    s.s.write(Buffer.alloc(5, 1));
    check(await until(() => c().pending_headers === 1), 'an address whose connections timed out may wait again', c());
    s.s.destroy();
    await until(() => c().pending_headers === 0, 2000);
  }

  // ---- seeded random mutations of a valid header, split at random ----
  {
    const seed = Number(process.env.SLIMFAST_FUZZ_SEED ?? Date.now() % 1000000);
    const rnd = prng(seed);
    const N = 200;
    const before = outcomes();
    const syncs0 = events.filter((e) => e.type === 'sync').length;
    const base = [header({ dst: '10.108.0.2', dport: 80, src: '10.109.0.2', sport: 7 }), header({ type: 2 }), header({ type: 3, keyId: 1 })];
    let _open = 0;
    let _done = 0;
    const one = async () => {
      let b = Buffer.from(base[Math.floor(rnd() * base.length)]);
      const kind = rnd();
      if (kind < 0.5) for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      else if (kind < 0.65) b = b.subarray(0, Math.floor(rnd() * b.length));
      else if (kind < 0.8) b = Buffer.concat([b, Buffer.from(Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256)))]);
      else if (kind < 0.9) b.writeUInt16BE(Math.floor(rnd() * 65536), 6);
      else b = Buffer.from(Array.from({ length: Math.floor(rnd() * 120) }, () => Math.floor(rnd() * 256)));
      const s = raw(HOST, P, '127.0.0.14');
      _open++;
      await s.ready;
      for (let off = 0; off < b.length && !s.closed; ) {
        const n = 1 + Math.floor(rnd() * 40);
        s.s.write(b.subarray(off, off + n));
        off += n;
        if (rnd() < 0.3) await sleep(Math.floor(rnd() * 30));
      }
      // (A connection that sends nothing at all stays with the kernel, as above: it always ends.)
      if (b.length === 0 || rnd() < 0.3) s.s.end();
      await until(() => s.closed, TIMEOUT_MS + 1500);
      if (!s.closed) s.s.destroy();
      _open--;
      _done++;
      return s.closed;
    };
    const results = [];
    const workers = Array.from({ length: 20 }, async () => {
      while (results.length < N) {
        const i = results.length;
        results.push(null);
        results[i] = await one();
      }
    });
    await Promise.all(workers);
    await until(() => c().pending_headers === 0, 2000);
    const d = delta(before, outcomes());
    const total = Object.values(d).reduce((a, b) => a + b, 0);
    const unclosed = results.filter((r) => r !== true).length;
    check(unclosed === 0, `seeded mutations (seed ${seed}): the engine closed all ${N} connections itself`, { unclosed, d });
    check(total === N && c().pending_headers === 0, `each of the ${N} connections counted once (seed ${seed})`, {
      d,
      syncs: events.filter((e) => e.type === 'sync').length - syncs0,
    });
    await served('after the mutations');
  }
  E.stop();
}
