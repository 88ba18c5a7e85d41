// The cluster-key part of the self-test (selftest.mjs runs it): two engines sharing a cluster key,
// headers signed here in JS, refused on the broker's path and on the kernel's.
import crypto from 'node:crypto';
import net from 'node:net';

// SipHash-2-4-128 (native/include/siphash.h) and the key derivation of slimfast_wire.h, redone here:
// headers signed in JS pass only if both sides agree on every byte of it.
const M64 = (1n << 64n) - 1n;
const rotl = (x, b) => ((x << BigInt(b)) | (x >> BigInt(64 - b))) & M64;
export function siphash128(key, msg) {
  const k0 = key.readBigUInt64LE(0);
  const k1 = key.readBigUInt64LE(8);
  let v0 = 0x736f6d6570736575n ^ k0;
  let v1 = 0x646f72616e646f6dn ^ k1 ^ 0xeen;
  let v2 = 0x6c7967656e657261n ^ k0;
  let v3 = 0x7465646279746573n ^ k1;
  const round = (n) => {
    for (let i = 0; i < n; i++) {
      v0 = (v0 + v1) & M64;
      v1 = rotl(v1, 13);
      v1 ^= v0;
      v0 = rotl(v0, 32);
      v2 = (v2 + v3) & M64;
      v3 = rotl(v3, 16);
      v3 ^= v2;
      v0 = (v0 + v3) & M64;
      v3 = rotl(v3, 21);
      v3 ^= v0;
      v2 = (v2 + v1) & M64;
      v1 = rotl(v1, 17);
      v1 ^= v2;
      v2 = rotl(v2, 32);
    }
  };
  const full = msg.length & ~7;
  for (let i = 0; i < full; i += 8) {
    const m = msg.readBigUInt64LE(i);
    v3 ^= m;
    round(2);
    v0 ^= m;
  }
  let b = BigInt(msg.length & 255) << 56n;
  for (let i = 0; i < (msg.length & 7); i++) b |= BigInt(msg[full + i]) << BigInt(8 * i);
  v3 ^= b;
  round(2);
  v0 ^= b;
  v2 ^= 0xeen;
  round(4);
  const out = Buffer.alloc(16);
  out.writeBigUInt64LE(v0 ^ v1 ^ v2 ^ v3, 0);
  v1 ^= 0xddn;
  round(4);
  out.writeBigUInt64LE(v0 ^ v1 ^ v2 ^ v3, 8);
  return out;
}

// slimfast_wire.h "Cluster key".
export function clusterRoot(key) {
  let k = Buffer.from(key.subarray(0, 16));
  for (let off = 16; off < key.length; off += 16) k = siphash128(k, key.subarray(off, Math.min(off + 16, key.length)));
  return k;
}

export function derivedKey(root, ip) {
  const m = Buffer.alloc(24);
  m.write('slimfast host key v1', 0, 'latin1');
  m.writeUInt32BE(ip.split('.').reduce((a, p) => a * 256 + Number(p), 0) >>> 0, 20);
  return siphash128(root, m);
}

// t: the self-test's helpers and its engine E1 (without a cluster key).
export async function clusterKeyTests(t) {
  const { Engine, E1, overlay, check, throwsLike, until, raw, header, client, sock } = t;
  let r;
  let nonceSeq = 0n;
  const nowNs = () => BigInt(Date.now()) * 1000000n + (nonceSeq++ % 1000000n);
  // A header signed with key (type 3: the MAC leaves out bytes 8..15), nonce ageMs in the past.
  function signedHeader(key, fields, ageMs = 0) {
    const h = header({ keyId: 1, ...fields, nonce: nowNs() - BigInt(ageMs) * 1000000n });
    const part = Buffer.from(h.subarray(0, 32));
    if (h[5] === 3) part.fill(0, 8, 16);
    siphash128(key, part).copy(h, 32);
    return h;
  }
  const refusedRaw = (st) => st.closed && st.error === 'ECONNRESET';

  const key00 = Buffer.from([...Array(16).keys()]);
  check(
    siphash128(key00, Buffer.alloc(0)).toString('hex') === 'a3817f04ba25a8e66df67214c7550293',
    "the test's SipHash-128 meets the reference vector",
  );
  const K = crypto.randomBytes(40); // a root over three chunks: 16, 16 and 8 bytes
  const root = clusterRoot(K);
  const key4 = derivedKey(root, '127.0.0.4');
  const key6 = derivedKey(root, '127.0.0.6'); // a holder of the cluster key that is no member
  const opts = (host, subnet) => ({ hostIp: host, port: 0, overlayCidr: overlay, localSubnet: subnet, clusterKey: K });
  for (const [bad, re, why] of [
    [{ clusterKey: crypto.randomBytes(15) }, /clusterKey.*16\.\.64 bytes, got 15/, 'a 15-byte cluster key'],
    [{ clusterKey: crypto.randomBytes(65) }, /clusterKey.*got 65/, 'a 65-byte cluster key'],
    [{ clusterKey: 'secret-secret-secret' }, /clusterKey.*Buffer/, 'a cluster key that is no Buffer'],
    [{ clusterKey: K, headerWindowMs: 10000 }, /headerWindowMs.*25000/, 'a window shorter than a pooled header lives'],
  ])
    throwsLike(() => new Engine().start({ ...opts('127.0.0.4', '10.104.0.0/24'), ...bad }, () => {}), re, `start() refuses ${why}`);
  throwsLike(() => new Engine().syncHeader(), /not started/, 'syncHeader() before start() throws');

  // Without a cluster key: the header subscribers always sent, the tag being the host key.
  let sh = E1.syncHeader();
  const ageNs = BigInt(Date.now()) * 1000000n - sh.readBigUInt64BE(24);
  check(
    sh.length === 48 &&
      sh.readUInt32BE(0) === 0x534c4631 &&
      sh[4] === 1 &&
      sh[5] === 2 &&
      sh.readUInt16BE(6) === 48 &&
      sh.subarray(8, 20).equals(Buffer.alloc(12)) &&
      sh.readUInt32BE(20) === 1 &&
      sh.subarray(32).equals(E1.hostKey()) &&
      sh.readBigUInt64BE(24) % 1000000n === 0n &&
      ageNs >= 0n &&
      ageNs < 2000000000n,
    'syncHeader() without a cluster key: tag = hostKey()',
    sh.toString('hex'),
  );

  const ev3 = [];
  const ev4 = [];
  const E3 = new Engine();
  const E4 = new Engine();
  E3.start(opts('127.0.0.4', '10.104.0.0/24'), (e) => ev3.push(e));
  E4.start(opts('127.0.0.5', '10.105.0.0/24'), (e) => ev4.push(e));
  const P3 = E3.counters().port;
  const P4 = E4.counters().port;
  E3.setPeers([{ ip: '127.0.0.5', subnet: '10.105.0.0/24', port: P4 }]);
  E4.setPeers([{ ip: '127.0.0.4', subnet: '10.104.0.0/24', port: P3 }]);
  throwsLike(() => E3.hostKey(), /secret/, 'hostKey() throws with a cluster key');
  sh = E3.syncHeader();
  const sh2 = E3.syncHeader();
  check(
    sh[5] === 2 && sh.readUInt32BE(20) === 1 && siphash128(key4, sh.subarray(0, 32)).equals(sh.subarray(32)),
    'syncHeader() with a cluster key: signed with the key derived for 127.0.0.4',
    sh.toString('hex'),
  );
  check(sh2.readBigUInt64BE(24) > sh.readBigUInt64BE(24) && !sh2.subarray(32).equals(sh.subarray(32)), 'each syncHeader() has a new nonce');
  const c4 = () => E4.counters();
  const refusals = () => {
    const c = c4();
    return [c.header_forged, c.header_stale, c.header_replayed, c.header_not_member];
  };
  // One raw connection to E4 from `from`; resolves once E4 closed it or after ms.
  async function toE4(from, bytes, ms = 2000) {
    const st = raw('127.0.0.5', P4, from);
    st.s.write(bytes);
    await until(() => st.closed, ms);
    return st;
  }
  async function refusedBy(name, from, bytes, which) {
    const before = refusals();
    const st = await toE4(from, bytes);
    const after = refusals();
    const want = before.map((v, i) => (i === which ? v + 1 : v));
    check(refusedRaw(st) && JSON.stringify(after) === JSON.stringify(want), name, { error: st.error, before, after });
  }
  const FORGED = 0,
    STALE = 1,
    REPLAYED = 2,
    NOT_MEMBER = 3;

  // SYNC streams: only a member's own signed, fresh, new header opens one.
  const syncs = () => ev4.filter((e) => e.type === 'sync');
  const sub = raw('127.0.0.5', P4, '127.0.0.4');
  sub.s.write(sh);
  check(
    (await until(() => syncs().length === 1)) && syncs()[0].peerIp === '127.0.0.4' && c4().sync_streams === 1,
    'a signed SYNC header from a member opens a stream',
    ev4,
  );
  new net.Socket({ fd: syncs()[0].fd }).destroy();
  sub.s.destroy();
  await refusedBy('the same SYNC header again is refused (replayed)', '127.0.0.4', sh, REPLAYED);
  await refusedBy(
    'a SYNC header carrying a key, as without a cluster key, is refused (forged)',
    '127.0.0.4',
    header({ type: 2, keyId: 1, tag: crypto.randomBytes(16) }),
    FORGED,
  );
  await refusedBy('a SYNC header signed for a host that is no member is refused', '127.0.0.6', signedHeader(key6, { type: 2 }), NOT_MEMBER);
  await refusedBy("a member's SYNC header from another address is refused", '127.0.0.6', E3.syncHeader(), NOT_MEMBER);
  await refusedBy('a SYNC header 60 s old is refused (stale)', '127.0.0.4', signedHeader(key4, { type: 2 }, 60000), STALE);
  await refusedBy('a SYNC header 60 s ahead is refused (stale)', '127.0.0.4', signedHeader(key4, { type: 2 }, -60000), STALE);
  check(syncs().length === 1 && c4().sync_streams === 1, 'no refused SYNC header reached JS', ev4);

  // Well-behaved traffic, with keys no SYNC header announced.
  E3.addContainer('p', '10.104.0.2', sock('p'));
  E4.addContainer('q', '10.105.0.2', sock('q'));
  const Pc = await client(sock('p'));
  const Qc = await client(sock('q'));
  r = await Qc.cmd('listen 0.0.0.0 9000');
  const q9000 = r.h;
  r = await Qc.cmd('listen 0.0.0.0 9001');
  const q9001 = r.h;
  E3.setRemoteListeners('127.0.0.5', ['10.105.0.2:9000', '10.105.0.2:9001']);
  r = await Pc.cmd('connect 10.105.0.2 9000');
  const pX = r.h;
  check(r.status === 0 && r.h >= 0, 'cluster: cross-host CONNECT_OK', r);
  r = await Qc.cmd(`accept ${q9000} 2000`);
  check(r.type === 201 && r.vip_b === '10.104.0.2' && r.port_a === 9000, 'cluster: the signed CONNECT header is accepted', r);
  const qX = r.h;
  await Pc.cmd(`send ${pX} clustered`);
  r = await Qc.cmd(`recv ${qX} 2000`);
  check(r.data === 'clustered', 'cluster: data flows', r);
  await Pc.cmd(`close ${pX}`);
  await Qc.cmd(`close ${qX}`);
  r = await Pc.cmd('pooltake 10.105.0.2 9000');
  const pP = r.h;
  r = await Qc.cmd(`accept ${q9000} 2000`);
  check(r.type === 201 && r.vip_b === '10.104.0.2', 'cluster: a pooled header is accepted', r);
  await Qc.cmd(`close ${r.h}`);
  await Pc.cmd(`close ${pP}`);
  const before = refusals();
  r = await Pc.cmd('pooltake 10.105.0.2 9000 twice');
  const pT = [r.h, r.h2];
  check(r.h >= 0 && r.h2 >= 0, 'cluster: two pooled sockets taken, one header sent on both', r);
  r = await Qc.cmd(`accept ${q9000} 2000`);
  check(r.type === 201, 'cluster: the first is accepted', r);
  await Qc.cmd(`close ${r.h}`);
  r = await Pc.cmd(`recv ${pT[1]} 2000`);
  check(/ECONN/.test(r.error ?? '') || r.eof === true, 'cluster: the second is reset', r);
  check(await until(() => c4().header_replayed === before[REPLAYED] + 1), 'cluster: counted as replayed', c4());
  r = await Qc.cmd(`accept ${q9000} 200`);
  check(r.error === 'timeout', 'cluster: and not handed in', r);
  for (const h of pT) await Pc.cmd(`close ${h}`);

  // Crafted headers on the broker's path (after the handshake, to a listener that is not steered).
  const hdr4 = (over = {}, age = 0, key = key4) =>
    signedHeader(key, { type: 1, dst: '10.105.0.2', dport: 9000, src: '10.104.0.9', sport: 5151, ...over }, age);
  const good = hdr4();
  const hin4 = c4().handed_in;
  let st = await toE4('127.0.0.4', good, 300);
  r = await Qc.cmd(`accept ${q9000} 2000`);
  check(
    r.type === 201 && r.vip_b === '10.104.0.9' && r.port_b === 5151 && c4().handed_in === hin4 + 1,
    'cluster: a header signed in JS with the derived key is accepted',
    r,
  );
  await Qc.cmd(`close ${r.h}`);
  st.s.destroy();
  await refusedBy('cluster: the same header again (replayed)', '127.0.0.4', good, REPLAYED);
  const badTag = hdr4();
  badTag[40] ^= 1;
  await refusedBy('cluster: a bad tag (forged)', '127.0.0.4', badTag, FORGED);
  await refusedBy(
    'cluster: an unsigned header (forged)',
    '127.0.0.4',
    header({ dst: '10.105.0.2', dport: 9000, src: '10.104.0.9', sport: 1 }),
    FORGED,
  );
  await refusedBy("cluster: signed with another host's key (forged)", '127.0.0.4', hdr4({}, 0, key6), FORGED);
  await refusedBy('cluster: 31 s old (stale)', '127.0.0.4', hdr4({}, 31000), STALE);
  await refusedBy('cluster: 6 s ahead (stale)', '127.0.0.4', hdr4({}, -6000), STALE);
  await refusedBy("cluster: a member's header from another address (not a member)", '127.0.0.6', hdr4(), NOT_MEMBER);
  await refusedBy('cluster: a source vIP no member owns', '127.0.0.4', hdr4({ src: '10.106.0.1' }), NOT_MEMBER);
  await refusedBy("cluster: the receiver's own subnet from a peer", '127.0.0.4', hdr4({ src: '10.105.0.7' }), NOT_MEMBER);
  st = await toE4('127.0.0.4', hdr4({}, 20000), 300);
  r = await Qc.cmd(`accept ${q9000} 2000`);
  check(r.type === 201, 'cluster: a header 20 s old (a pooled one at its oldest) is accepted', r);
  await Qc.cmd(`close ${r.h}`);
  st.s.destroy();
  check(c4().handed_in === hin4 + 2 && c4().header_errors === 0, 'cluster: nothing refused was handed in', c4());

  // The kernel's path: a steered listener (if this kernel and user can steer).
  r = await Qc.cmd(`steer ${q9001}`);
  if (r.status !== 0) {
    console.log(`skip cluster key on the steered path (no kernel steering: status ${r.status})`);
  } else {
    const q9001s = r.h;
    const sc = () => E4.counters();
    const steerRefusals = () => {
      const c = sc();
      return [c.steer_bad_tag, c.steer_stale, c.steer_replayed, c.steer_not_member];
    };
    const hdr5 = (over = {}, age = 0, key = key4) => hdr4({ dport: 9001, ...over }, age, key);
    // A blocking TCP Fast Open connect whose SYN carries h: {h} once established, {error} if reset.
    const tfo = (from, h) => Pc.cmd(`tfo ${from} 127.0.0.5:${P4} ${h.toString('hex')}`);
    async function steerRefused(name, from, h, which) {
      const b = steerRefusals();
      const rr = await tfo(from, h);
      if (rr.h >= 0) await Pc.cmd(`close ${rr.h}`);
      const a = steerRefusals();
      check(rr.error === 'ECONNREFUSED' && JSON.stringify(a) === JSON.stringify(b.map((v, i) => (i === which ? v + 1 : v))), name, { rr, b, a });
    }
    r = await Pc.cmd('connect 10.105.0.2 9001');
    const pS = r.h;
    const sq = await Qc.cmd(`saccept ${q9001s} 2000`);
    check(
      r.status === 0 && sq.got === 48 && sq.hdr_type === 1 && sq.src_vip === '10.104.0.2' && sc().steered >= 1,
      'cluster: a CONNECT the engine signed is steered',
      [r, sq, sc()],
    );
    await Qc.cmd(`close ${sq.h}`);
    await Pc.cmd(`close ${pS}`);
    let steered0 = sc().steered;
    const rTwice = await Pc.cmd('pooltake 10.105.0.2 9001 twice');
    const pS2 = [rTwice.h, rTwice.h2];
    let sq2 = await Qc.cmd(`saccept ${q9001s} 2000`);
    check(
      sq2.got === 48 && sq2.hdr_type === 3 && sq2.src_vip === '10.104.0.2' && sc().steered === steered0 + 1,
      'cluster: a pooled header is steered',
      [sq2, sc()],
    );
    await Qc.cmd(`close ${sq2.h}`);
    r = rTwice;
    check(r.err2 === 'ECONNREFUSED' && sc().steer_replayed === 1, 'cluster: the same pooled header on a second socket is reset in the kernel', [
      r,
      sc(),
    ]);
    for (const h of pS2) await Pc.cmd(`close ${h}`);

    const viaKernel = hdr5();
    steered0 = sc().steered;
    const fd = (await tfo('127.0.0.4', viaKernel)).h;
    sq2 = await Qc.cmd(`saccept ${q9001s} 2000`);
    check(sq2.got === 48 && sq2.src_vip === '10.104.0.9' && sc().steered === steered0 + 1, 'cluster: a header signed in JS is steered', [sq2, sc()]);
    await Qc.cmd(`close ${sq2.h}`);
    await Pc.cmd(`close ${fd}`);
    await steerRefused('cluster, kernel: the same header again (replayed)', '127.0.0.4', viaKernel, REPLAYED);
    await refusedBy("cluster: the steered header replayed on the broker's path (one replay cache)", '127.0.0.4', viaKernel, REPLAYED);
    const viaBroker = hdr5();
    st = await toE4('127.0.0.4', viaBroker, 300);
    r = await Qc.cmd(`saccept ${q9001s} 2000`); // the doorbell for what the broker put on the channel
    const bell = r;
    r = await Qc.cmd(`accept ${q9001} 2000`);
    check(
      bell.hdr_type === 4 && r.type === 201 && r.vip_b === '10.104.0.9',
      "cluster: a header on the broker's path to a steered listener is handed over",
      [bell, r],
    );
    await Qc.cmd(`close ${bell.h}`);
    await Qc.cmd(`close ${r.h}`);
    st.s.destroy();
    await steerRefused("cluster, kernel: the broker's header replayed in a SYN", '127.0.0.4', viaBroker, REPLAYED);
    const bad5 = hdr5();
    bad5[33] ^= 4;
    await steerRefused('cluster, kernel: a bad tag (forged)', '127.0.0.4', bad5, FORGED);
    await steerRefused('cluster, kernel: 31 s old (stale)', '127.0.0.4', hdr5({}, 31000), STALE);
    await steerRefused('cluster, kernel: 6 s ahead (stale)', '127.0.0.4', hdr5({}, -6000), STALE);
    await steerRefused("cluster, kernel: a member's header from another address (not a member)", '127.0.0.6', hdr5(), NOT_MEMBER);
    r = await Qc.cmd(`saccept ${q9001s} 300`);
    check(r.error === 'timeout', 'cluster, kernel: nothing refused reached the listener', r);
    r = await Qc.cmd(`accept ${q9001} 200`);
    check(r.error === 'timeout', 'cluster, kernel: nor its channel', r);
    await Qc.cmd(`close ${q9001s}`);
  }
  await Pc.quit();
  await Qc.quit();
  E3.stop();
  E4.stop();
}
