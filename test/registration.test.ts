// The rules one registration must meet (broker/registration.ts), each with the reason a caller
// switches on.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { checkId, checkIp, checkRequest, checkSocketPath, isValidId, SOCKET_PATH_MAX } from '../broker/registration.js';
import { type ApiReason, hasReason } from '../common/api-errors.js';
import { parseCidr } from '../common/cidr.js';

function reasonOf(fn: () => unknown): ApiReason | 'none' {
  try {
    fn();
    return 'none';
  } catch (err) {
    for (const r of [
      'ID_INVALID',
      'NETNS_REQUIRED',
      'NETNS_MISSING',
      'PID_INVALID',
      'IP_INVALID',
      'IP_OUTSIDE_SUBNET',
      'SOCKET_PATH_TOO_LONG',
    ] as const) {
      if (hasReason(err, r)) return r;
    }
    throw err;
  }
}

test('ids: 1-128 characters of [A-Za-z0-9_.-], starting with a letter or digit', (t) => {
  for (const ok of ['a', 'C1', 'web-0.pod_x', 'x'.repeat(128)]) {
    t.true(isValidId(ok), ok);
    t.is(checkId(ok), ok);
  }
  for (const bad of ['', '-a', '.a', '_a', 'a b', 'a/b', '../x', 'x'.repeat(129), 'é']) {
    t.false(isValidId(bad), bad);
    t.is(
      reasonOf(() => checkId(bad)),
      'ID_INVALID',
      bad,
    );
  }
  t.is(
    reasonOf(() => checkId(undefined)),
    'ID_INVALID',
  );
});

test('a request: id, then an existing namespace path, then a whole pid; defaults filled in', (t) => {
  const ns = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-reg-'));
  t.teardown(() => fs.rmSync(ns, { recursive: true, force: true }));
  t.deepEqual(checkRequest({ id: 'c1', netns: ns }), { id: 'c1', netns: ns, ip: '', pid: 0, share: false });
  t.deepEqual(checkRequest({ id: 'c1', netns: ns, ip: '10.0.0.2', pid: 42, share: true }), {
    id: 'c1',
    netns: ns,
    ip: '10.0.0.2',
    pid: 42,
    share: true,
  });
  t.is(
    reasonOf(() => checkRequest({ id: 'bad id', netns: '' })),
    'ID_INVALID',
    'the id is checked first',
  );
  t.is(
    reasonOf(() => checkRequest({ id: 'c1', netns: '' })),
    'NETNS_REQUIRED',
  );
  t.is(
    reasonOf(() => checkRequest({ id: 'c1' })),
    'NETNS_REQUIRED',
  );
  t.is(
    reasonOf(() => checkRequest({ id: 'c1', netns: path.join(ns, 'missing') })),
    'NETNS_MISSING',
  );
  t.is(
    reasonOf(() => checkRequest({ id: 'c1', netns: ns, pid: -1 })),
    'PID_INVALID',
  );
  t.is(
    reasonOf(() => checkRequest({ id: 'c1', netns: ns, pid: 1.5 })),
    'PID_INVALID',
  );
});

test("the IP: an IPv4 address inside this host's subnet", (t) => {
  const subnet = parseCidr('10.200.1.0/24');
  t.is(checkIp('10.200.1.2', subnet), (10 << 24) + (200 << 16) + (1 << 8) + 2);
  t.is(
    reasonOf(() => checkIp('10.200.2.2', subnet)),
    'IP_OUTSIDE_SUBNET',
  );
  for (const bad of ['', '10.200.1', '10.200.1.256', 'fd00::1', '10.200.1.2/24'])
    t.is(
      reasonOf(() => checkIp(bad, subnet)),
      'IP_INVALID',
      bad,
    );
});

test('the socket path fits sockaddr_un (107 bytes, counted in bytes)', (t) => {
  t.is(
    reasonOf(() => checkSocketPath(`/${'a'.repeat(SOCKET_PATH_MAX - 1)}`)),
    'none',
  );
  t.is(
    reasonOf(() => checkSocketPath(`/${'a'.repeat(SOCKET_PATH_MAX)}`)),
    'SOCKET_PATH_TOO_LONG',
  );
  t.is(
    reasonOf(() => checkSocketPath(`/${'é'.repeat(54)}`)),
    'SOCKET_PATH_TOO_LONG',
    '109 bytes in 55 characters',
  );
});
