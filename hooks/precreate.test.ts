import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { TEST_LD_SO_PRELOAD, TEST_SOCKET_DIR, baseSpec, testCtx } from '../runtime-wrapper/testing.js';
import { HookInputError } from './oci-state.js';
import { idFromBundleDir, idFromPodmanMounts, precreate } from './precreate.js';

const PODMAN_ID = 'c91920472a586bd8a8755f6a41a8a5e7c1d2b353faa83fe3491f2af426753874';
const preload = process.execPath; // any existing file

function podmanSpec() {
  const spec = baseSpec();
  spec.linux!.namespaces![1] = { type: 'network', path: '/run/netns/netns-924d34c6' };
  spec.annotations = { 'io.container.manager': 'libpod' };
  for (const f of ['hosts', '.containerenv', 'hostname', 'resolv.conf']) {
    spec.mounts!.push({
      destination: `/etc/${f}`,
      type: 'bind',
      source: `/run/containers/storage/overlay-containers/${PODMAN_ID}/userdata/${f}`,
      options: ['bind'],
    });
  }
  spec.mounts!.push({ destination: '/dev/shm', type: 'bind', source: `/var/lib/containers/storage/overlay-containers/${PODMAN_ID}/userdata/shm` });
  return spec;
}

test('precreate adds mounts, env and the annotation, but not the hooks (Podman adds them from hooks.d)', (t) => {
  const seen: string[] = [];
  const r = precreate(JSON.stringify(podmanSpec()), '/tmp', {}, (id) => {
    seen.push(id);
    return testCtx({ id, preload });
  });
  t.true(r.changed);
  t.deepEqual(seen, [PODMAN_ID], 'the id of the container, from the files Podman mounts');
  const out = JSON.parse(r.output);
  t.is(out.annotations['io.slimfast.id'], PODMAN_ID);
  t.is(out.annotations['io.container.manager'], 'libpod');
  t.true(out.process.env.includes('LD_PRELOAD=/.slimfast/libslimfast.so'));
  t.deepEqual(
    out.mounts.slice(-3).map((m: { destination: string }) => m.destination),
    ['/.slimfast/libslimfast.so', '/.slimfast/run', '/etc/ld.so.preload'],
  );
  t.is(out.hooks, undefined);
  t.true(fs.statSync(TEST_SOCKET_DIR).isDirectory(), 'the socket directory was made for the bind mount');
  t.is(fs.readFileSync(TEST_LD_SO_PRELOAD, 'utf8'), '/.slimfast/libslimfast.so\n', 'and the file ld.so reads, for podman exec processes');
});

test("the id: an existing annotation, then Podman's bundle directory, then its mounts, else a made-up one", (t) => {
  t.is(idFromBundleDir(`/var/lib/containers/storage/overlay-containers/${PODMAN_ID}/userdata`), PODMAN_ID);
  t.is(idFromBundleDir('/tmp'), undefined);
  t.is(idFromPodmanMounts(podmanSpec()), PODMAN_ID);
  t.is(idFromPodmanMounts(baseSpec()), undefined);
  const ids: string[] = [];
  const ctx = (id: string) => {
    ids.push(id);
    return testCtx({ id, preload });
  };
  precreate(JSON.stringify({ ...podmanSpec(), annotations: { 'io.slimfast.id': 'given' } }), '/tmp', {}, ctx);
  precreate(JSON.stringify(baseSpec()), `/var/lib/containers/storage/overlay-containers/${'a'.repeat(64)}/userdata`, {}, ctx);
  precreate(JSON.stringify(baseSpec()), '/tmp', {}, ctx);
  t.is(ids[0], 'given');
  t.is(ids[1], 'a'.repeat(64));
  t.regex(ids[2], /^sf-[0-9a-f]{16}$/);
});

test('the id with any storage driver: Podman 4.3 with vfs runs the hook in its own working directory', (t) => {
  // As Podman 4.3.1 --storage-driver vfs lays it out: userdata under both the root and the runroot.
  const spec = baseSpec();
  spec.linux!.namespaces![1] = { type: 'network', path: '/run/netns/x' };
  for (const f of ['.containerenv', 'hostname', 'resolv.conf', 'hosts']) {
    spec.mounts!.push({
      destination: `/etc/${f}`,
      type: 'bind',
      source: `/tmp/p/runroot/vfs-containers/${PODMAN_ID}/userdata/${f}`,
      options: ['bind'],
    });
  }
  spec.mounts!.push({ destination: '/dev/shm', type: 'bind', source: `/tmp/p/root/vfs-containers/${PODMAN_ID}/userdata/shm` });
  t.is(idFromPodmanMounts(spec), PODMAN_ID);
  t.is(idFromBundleDir(`/var/lib/containers/storage/btrfs-containers/${PODMAN_ID}/userdata`), PODMAN_ID);
  const r = precreate(JSON.stringify(spec), '/home/user', {}, (id) => testCtx({ id, preload }));
  t.is(JSON.parse(r.output).annotations['io.slimfast.id'], PODMAN_ID, 'the id Podman gives the poststop hook');
});

test('host-network containers come back byte for byte', (t) => {
  const spec = baseSpec();
  spec.linux!.namespaces = [{ type: 'pid' }];
  const input = `${JSON.stringify(spec)}\n`;
  const r = precreate(input, '/tmp', {}, (id) => testCtx({ id, preload }));
  t.false(r.changed);
  t.is(r.output, input);
});

test('64-bit integers in the configuration survive', (t) => {
  const spec = podmanSpec() as Record<string, unknown>;
  const input = JSON.stringify(spec).replace('"ociVersion":"1.0.2-dev"', '"ociVersion":"1.0.2-dev","x":{"v":18446744073709551615}');
  const r = precreate(input, '/tmp', {}, (id) => testCtx({ id, preload }));
  t.true(r.output.includes('"x":{"v":18446744073709551615}'));
});

test('bad input and a missing preload library are clear errors', (t) => {
  t.throws(() => precreate('{"ociVersion":', '/tmp', {}, (id) => testCtx({ id, preload })), {
    instanceOf: HookInputError,
    message: /not an OCI runtime configuration/,
  });
  t.throws(() => precreate('[]', '/tmp', {}, (id) => testCtx({ id, preload })), { instanceOf: HookInputError });
  t.throws(() => precreate(JSON.stringify(podmanSpec()), '/tmp', {}, (id) => testCtx({ id, preload: '/nope.so' })), {
    message: /preload library \/nope\.so is missing/,
  });
});

test.after.always(() => {
  fs.rmSync(path.dirname(path.dirname(TEST_SOCKET_DIR)), { recursive: true, force: true });
});
