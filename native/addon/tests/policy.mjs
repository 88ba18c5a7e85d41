// The policy part of the self-test (selftest.mjs runs it): setPolicy's validation, EACCES for
// denied connects (listeners on a peer and on this host, and destinations that would fall back),
// first-match order, and pools taken away from a container the policy restricts.
// A = 10.99.0.2 and B = 10.99.0.3 (listening on :80, channel bChan) on E1; C = 10.98.0.2 on E2
// (listening on :8080, channel cChan).
const rule = (over = {}) => ({ action: 'deny', from: '0.0.0.0/0', to: '10.98.0.2/32', portLo: 8080, portHi: 8080, ...over });

export async function policyTests({ E1, E2, A, B, C, bChan, cChan, check, throwsLike, until, client, sock }) {
  for (const [arg, re, why] of [
    [undefined, /expects \{default, rules\} or null/, 'no argument'],
    [{ default: 'maybe', rules: [] }, /"default" must be "allow" or "deny"/, 'a bad default'],
    [{ default: 'allow' }, /"rules" must be an array/, 'no rules'],
    [{ default: 'allow', rules: [5] }, /rules\[0\] is not an object/, 'a rule that is not an object'],
    [{ default: 'allow', rules: [rule(), rule({ action: 'drop' })] }, /rules\[1\]: "action" must be "allow" or "deny"/, 'a bad action'],
    [{ default: 'allow', rules: [rule({ from: '10.1.2.3' })] }, /rules\[0\]: "from" must be an IPv4 prefix/, 'a bad source'],
    [{ default: 'allow', rules: [rule({ to: undefined })] }, /rules\[0\]: "to" must be an IPv4 prefix/, 'no destination'],
    [{ default: 'allow', rules: [rule({ portLo: 70000 })] }, /rules\[0\]: "portLo" must be an integer 0..65535/, 'a bad port'],
    [{ default: 'allow', rules: [rule({ portLo: 9000, portHi: 8000 })] }, /rules\[0\]: "portLo" is above "portHi"/, 'an empty range'],
  ]) {
    throwsLike(() => (arg === undefined ? E1.setPolicy() : E1.setPolicy(arg)), re, `setPolicy throws on ${why}`);
  }

  // A connect to C through the broker, accepted and closed on both ends; returns the reply.
  const connectC = async (port = 8080) => {
    const r = await A.cmd(`connect 10.98.0.2 ${port}`);
    if (r.status === 0) {
      await A.cmd(`close ${r.h}`);
      const acc = await C.cmd(`accept ${cChan} 2000`);
      if (acc.h >= 0) await C.cmd(`close ${acc.h}`);
    }
    return r;
  };
  E1.setRemoteListeners('127.0.0.2', ['10.98.0.2:8080']);
  let r = await connectC();
  check(r.status === 0 && (r.a & 1) === 1, 'no policy yet: connect handed out, poolable', r);
  r = await A.cmd('poolhup 10.98.0.2');
  check(r.pool >= 0 && r.hup === false, 'A holds a live pool channel for E2', r);

  const pools = E1.counters().pools;
  const denied0 = E1.counters().policy_denied;
  const e2 = E2.counters();
  E1.setPolicy({ default: 'allow', rules: [rule({ from: '10.99.0.2/32' })] });
  check(E1.counters().pools === pools - 1, 'a policy that restricts A drops its pool at once', [pools, E1.counters().pools]);
  r = await A.cmd('poolhup 10.98.0.2');
  check(r.hup === true, "the pool channel's broker end is closed (the preload stops taking from it)", r);
  const t0 = process.hrtime.bigint();
  r = await A.cmd('connect 10.98.0.2 8080');
  const us = Number(process.hrtime.bigint() - t0) / 1000;
  check(r.type === 102 && r.status === 13 && r.h === -1, 'a denied connect is answered EACCES', { r, us });
  check(E1.counters().policy_denied === denied0 + 1, 'policy_denied counts it', E1.counters());
  const e2n = E2.counters();
  check(e2n.handed_in === e2.handed_in && e2n.pending_headers === 0 && e2n.header_errors === e2.header_errors, 'nothing reached the peer', [e2, e2n]);
  r = await A.cmd('connect 10.98.0.2 9999');
  check(r.status === -1, 'another port is not denied (falls back as without a policy)', r);
  r = await B.cmd('connect 10.98.0.2 8080');
  check(r.status === 0 && (r.a & 1) === 1, 'another source is not denied, and still gets pools', r);
  await B.cmd(`close ${r.h}`);
  r = await C.cmd(`accept ${cChan} 2000`);
  if (r.h >= 0) await C.cmd(`close ${r.h}`);

  // Destinations that are no SlimFast listener would fall back to the container's interface.
  E1.setPolicy({ default: 'allow', rules: [{ action: 'deny', from: '0.0.0.0/0', to: '10.98.0.0/24', portLo: 9000, portHi: 9001 }] });
  r = await A.cmd('connect 10.98.0.2 9001');
  check(r.status === 13, 'a denied overlay destination that would fall back is answered EACCES', r);
  r = await A.cmd('connect 10.98.0.2 9002');
  check(r.status === -1, 'the port next to the range falls back', r);

  // Same host: B's listener, from A and from B itself.
  E1.setPolicy({ default: 'allow', rules: [{ action: 'deny', from: '0.0.0.0/0', to: '10.99.0.3/32', portLo: 80, portHi: 80 }] });
  for (const [X, name] of [
    [A, 'A'],
    [B, 'B'],
  ]) {
    r = await X.cmd('connect 10.99.0.3 80');
    check(r.status === 13, `same host: ${name} -> B:80 denied`, r);
  }
  r = await B.cmd(`accept ${bChan} 200`);
  check(r.type !== 201, 'nothing was pushed to the listener', r);

  // Outside the overlay nothing is governed.
  E1.setPolicy({ default: 'deny', rules: [] });
  r = await A.cmd('connect 192.0.2.1 80');
  check(r.status === -1, 'default deny: a destination outside the overlay still falls back', r);
  r = await connectC();
  check(r.status === 13, 'default deny: the peer listener is denied', r);

  // First match wins.
  const allowC = { action: 'allow', from: '10.99.0.2/32', to: '10.98.0.2/32', portLo: 8080, portHi: 8080 };
  const denyAll = { action: 'deny', from: '0.0.0.0/0', to: '0.0.0.0/0', portLo: 0, portHi: 65535 };
  E1.setPolicy({ default: 'allow', rules: [allowC, denyAll] });
  const pools1 = E1.counters().pools;
  r = await connectC();
  check(r.status === 0 && (r.a & 1) === 0, 'allow before deny: connected, but a restricted source is not poolable', r);
  check(E1.counters().pools === pools1, 'and gets no pool', E1.counters());
  r = await A.cmd('connect 10.99.0.3 80');
  check(r.status === 13, 'the deny after it catches the rest', r);
  E1.setPolicy({ default: 'allow', rules: [denyAll, allowC] });
  r = await connectC();
  check(r.status === 13, 'deny before allow: denied', r);

  // An allow for everything from a source: nothing after it can deny, so it keeps pools.
  E1.setPolicy({ default: 'deny', rules: [{ ...allowC, to: '0.0.0.0/0', portLo: 0, portHi: 65535 }] });
  r = await connectC();
  check(r.status === 0 && (r.a & 1) === 1, 'allowed everything: poolable again', r);
  check(await until(() => E1.counters().pools === pools1 + 1), 'and a new pool comes', E1.counters());
  r = await B.cmd('connect 10.98.0.2 8080');
  check(r.status === 13, 'while the other source hits the default', r);

  // A container registered while the policy restricts it.
  E1.setPolicy({ default: 'deny', rules: [{ ...allowC, from: '10.99.0.7/32' }] });
  E1.addContainer('p', '10.99.0.7', sock('p'));
  const P = await client(sock('p'));
  r = await P.cmd('connect 10.98.0.2 8080');
  check(r.status === 0 && (r.a & 1) === 0, 'a container registered under a policy that restricts it is not poolable', r);
  if (r.h >= 0) await P.cmd(`close ${r.h}`);
  r = await C.cmd(`accept ${cChan} 2000`);
  if (r.h >= 0) await C.cmd(`close ${r.h}`);
  await P.quit();
  E1.removeContainer('p');

  E1.setPolicy(null);
  r = await B.cmd('connect 10.99.0.3 80');
  check(r.status === 0, 'setPolicy(null): no policy', r);
  await B.cmd(`close ${r.h}`);
  r = await B.cmd(`accept ${bChan} 2000`);
  if (r.h >= 0) await B.cmd(`close ${r.h}`);
  check(E1.counters().policy_denied === denied0 + 8, 'every denial counted once', E1.counters());
  E1.setRemoteListeners('127.0.0.2', null);
  return us;
}
