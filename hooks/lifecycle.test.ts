// createRuntime/poststop logic against a fake broker.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ApiError } from '../common/api-errors.js';
import { BrokerUnreachable } from '../common/control-client.js';
import { containerSocketDir, stateLayout } from '../common/state-dir.js';
import { type BrokerApi, type HookDeps, createHook, poststopHook } from './lifecycle.js';

interface Calls {
  register: { id: string; netns: string; pid?: number; share?: boolean }[];
  unregister: string[];
  closed: number;
  warnings: string[];
}

const made: string[] = [];
test.after.always(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

function deps(
  behaviour: { fail?: Error; allow?: boolean; registered?: { id: string; netns: string; socket: string }[]; unregistered?: boolean } = {},
) {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfhook-'));
  made.push(stateDir);
  const calls: Calls = { register: [], unregister: [], closed: 0, warnings: [] };
  const api: BrokerApi = {
    async register(req) {
      calls.register.push(req);
      if (behaviour.fail) throw behaviour.fail;
      return { id: req.id, ip: '10.88.0.2', socket: '/x/sf.sock' };
    },
    async unregister(id) {
      calls.unregister.push(id);
      if (behaviour.fail) throw behaviour.fail;
      return behaviour.unregistered !== false;
    },
    async containers() {
      return behaviour.registered ?? [];
    },
    close() {
      calls.closed++;
    },
  };
  const d: HookDeps = {
    stateDir,
    connect: () => api,
    allowWithoutBroker: () => behaviour.allow === true,
    warn: (m) => calls.warnings.push(m),
    isHostNetns: (p) => p === '/proc/1/ns/net',
  };
  const socketDir = (id: string) => containerSocketDir(stateLayout(stateDir), id);
  return { d, calls, stateDir, socketDir };
}

const state = (over: Record<string, unknown> = {}) => ({
  ociVersion: '1.0.2',
  id: 'ctr',
  status: 'creating',
  pid: 4242,
  bundle: '/b',
  annotations: { 'io.slimfast.id': 'sfid' },
  ...over,
});

test("create registers the annotated id with the netns of the container's pid", async (t) => {
  const { d, calls } = deps();
  t.deepEqual(await createHook(state(), d), { code: 0 });
  t.deepEqual(
    calls.register,
    [{ id: 'sfid', netns: '/proc/4242/ns/net', pid: 4242, share: true }],
    'share: a registration of that namespace is shared (test/registry-lifetime.test.ts)',
  );
  t.is(calls.closed, 1);
});

test('create leaves alone containers that are not SlimFast ones, disabled ones and host-network ones', async (t) => {
  const { d, calls } = deps();
  t.is((await createHook(state({ annotations: {} }), d)).code, 0);
  t.is((await createHook(state({ annotations: undefined }), d)).code, 0);
  t.is((await createHook(state({ annotations: { 'io.slimfast.id': 'x', 'io.slimfast.disable': 'true' } }), d)).code, 0);
  t.is((await createHook(state({ pid: 1 }), d)).code, 0);
  t.deepEqual(calls.register, []);
});

test('create without a pid is an error that says why', async (t) => {
  const { d } = deps();
  const r = await createHook(state({ pid: undefined }), d);
  t.is(r.code, 1);
  t.regex(r.message!, /has no pid: slimfast-hook create must run as a createRuntime hook/);
});

test('broker down: a clear failure naming the state dir, the empty socket directory removed', async (t) => {
  const { d, stateDir, socketDir } = deps({ fail: new BrokerUnreachable(`no SlimFast broker at /s/slimfast.sock`) });
  fs.mkdirSync(socketDir('sfid'), { recursive: true });
  const r = await createHook(state(), d);
  t.is(r.code, 1);
  t.regex(r.message!, new RegExp(`cannot start container ctr on SlimFast \\(state dir ${stateDir}\\): no SlimFast broker`));
  t.regex(r.message!, /"allowWithoutBroker": true/);
  t.false(fs.existsSync(socketDir('sfid')));
});

test('broker down with allowWithoutBroker: exit 0 with a warning, the socket directory kept (it is mounted)', async (t) => {
  const { d, calls, socketDir } = deps({ fail: new BrokerUnreachable('not answering'), allow: true });
  fs.mkdirSync(socketDir('sfid'), { recursive: true });
  t.deepEqual(await createHook(state(), d), { code: 0 });
  t.is(calls.warnings.length, 1);
  t.regex(calls.warnings[0], /warning: start container ctr without SlimFast .*not answering .*allowWithoutBroker/);
  t.true(fs.existsSync(socketDir('sfid')));
});

test('other broker errors fail the container, allowWithoutBroker or not; no IPv4 address only warns', async (t) => {
  const bad = deps({ fail: new Error("container IP 172.17.0.2 is outside this host's subnet 10.88.0.0/16"), allow: true });
  const r = await createHook(state(), bad.d);
  t.is(r.code, 1);
  t.regex(r.message!, /cannot register container ctr with the SlimFast broker \(state dir .*\): container IP 172\.17\.0\.2 is outside/);
  const none = deps({ fail: new ApiError('NETNS_NO_IPV4', 'network namespace /proc/4242/ns/net has no global IPv4 address yet; pass --ip') });
  t.deepEqual(await createHook(state(), none.d), { code: 0 });
  t.regex(none.calls.warnings[0], /starts without SlimFast: .*no global IPv4 address/);
  // The reason decides, not the text: the same words without it fail the container.
  const text = deps({ fail: new Error('network namespace /proc/4242/ns/net has no global IPv4 address yet; pass --ip') });
  t.is((await createHook(state(), text.d)).code, 1);
});

test('poststop unregisters the annotated id; without the annotation only when its socket directory exists', async (t) => {
  const { d, calls, socketDir } = deps();
  t.deepEqual(await poststopHook(state({ status: 'stopped', pid: undefined }), d), { code: 0 });
  t.deepEqual(calls.unregister, ['sfid']);
  t.deepEqual(await poststopHook(state({ annotations: {} }), d), { code: 0 });
  t.deepEqual(calls.unregister, ['sfid'], 'a container that was never on SlimFast: the broker is not asked');
  fs.mkdirSync(socketDir('ctr'), { recursive: true });
  t.deepEqual(await poststopHook(state({ annotations: {} }), d), { code: 0 });
  t.deepEqual(calls.unregister, ['sfid', 'ctr'], 'Podman: the real id, found by its socket directory');
});

test('poststop with the broker down: clean up, and complain only about containers that were registered here', async (t) => {
  const { d, calls, socketDir } = deps({ fail: new BrokerUnreachable('no SlimFast broker at /s/slimfast.sock') });
  t.deepEqual(await poststopHook(state(), d), { code: 0 }, 'no socket directory: its create never got through');
  fs.mkdirSync(socketDir('sfid'), { recursive: true });
  const r = await poststopHook(state(), d);
  t.is(r.code, 1);
  t.regex(r.message!, /cannot unregister container ctr on SlimFast \(state dir .*\)/);
  t.false(fs.existsSync(socketDir('sfid')));
  const allowed = deps({ fail: new BrokerUnreachable('down'), allow: true });
  fs.mkdirSync(allowed.socketDir('sfid'), { recursive: true });
  t.deepEqual(await poststopHook(state(), allowed.d), { code: 0 });
  t.is(allowed.calls.warnings.length, 1);
  t.is(calls.closed, 2);
});
