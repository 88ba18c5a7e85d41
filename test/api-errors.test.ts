// Control-API refusals carry a gRPC status code and a machine-readable reason (trailer
// "slimfast-reason"), which ControlClient turns back into an ApiError: callers such as the OCI hook
// switch on the reason, not on message text. Against a real broker in a namespace of its own.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ApiError, GRPC_STATUS, REASON_KEY, REASONS } from '../common/api-errors.js';
import { ControlClient } from '../common/control-client.js';
import { clientConstructor } from '../common/proto.js';
import { stateLayout } from '../common/state-dir.js';
import { Topology } from '../lab/topology.js';

test("the status codes are gRPC's", (t) => {
  for (const [name, code] of Object.entries(GRPC_STATUS)) t.is(code as number, grpc.status[name as keyof typeof grpc.status] as number, name);
  for (const code of Object.values(REASONS)) t.true((Object.values(GRPC_STATUS) as number[]).includes(code));
});

async function reasonOf(p: Promise<unknown>): Promise<[string, string]> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return [err.reason, err.message];
    return ['(no reason)', (err as Error).message];
  }
  return ['(accepted)', ''];
}

test.serial('registration refusals: reason and status code over the wire', async (t) => {
  const topo = await Topology.create({ hosts: 1, containers: [1] });
  const bare = spawn('unshare', ['--net', 'sleep', '60'], { stdio: 'ignore' });
  try {
    const [h] = topo.hosts;
    const c = topo.container('c1');
    const client = new ControlClient(h.stateDir);
    try {
      t.deepEqual((await reasonOf(client.register({ id: 'bad id', netns: c.netnsPath })))[0], 'ID_INVALID');
      t.deepEqual((await reasonOf(client.register({ id: 'x', netns: '' })))[0], 'NETNS_REQUIRED');
      t.deepEqual((await reasonOf(client.register({ id: 'x', netns: '/proc/self/ns/none' })))[0], 'NETNS_MISSING');
      t.deepEqual((await reasonOf(client.register({ id: 'c1', netns: c.netnsPath })))[0], 'ALREADY_REGISTERED');
      t.deepEqual((await reasonOf(client.register({ id: 'c9', netns: c.netnsPath })))[0], 'IP_IN_USE');
      t.deepEqual((await reasonOf(client.register({ id: 'c9', netns: c.netnsPath, ip: '10.99.0.2' })))[0], 'IP_OUTSIDE_SUBNET');
      for (let i = 0; i < 50 && fs.readlinkSync(`/proc/${bare.pid}/ns/net`) === fs.readlinkSync('/proc/self/ns/net'); i++)
        await new Promise((r) => setTimeout(r, 20));
      const [reason, msg] = await reasonOf(client.register({ id: 'none', netns: `/proc/${bare.pid}/ns/net` }));
      t.is(reason, 'NETNS_NO_IPV4');
      t.regex(msg, /has no global IPv4 address/);
    } finally {
      client.close();
    }
    // The raw gRPC status and trailer, as another client sees them.
    const Ctor = clientConstructor();
    const raw = new Ctor(`unix:${stateLayout(h.stateDir).controlSocket}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => raw.registerContainer({ id: 'c1', netns: c.netnsPath }, (e) => resolve(e!)));
      t.is(err.code, grpc.status.ALREADY_EXISTS);
      t.deepEqual(err.metadata.get(REASON_KEY), ['ALREADY_REGISTERED']);
      t.regex(err.details, /container "c1" is already registered/);
    } finally {
      raw.close();
    }
  } finally {
    bare.kill('SIGKILL');
    await topo.destroy();
  }
});
