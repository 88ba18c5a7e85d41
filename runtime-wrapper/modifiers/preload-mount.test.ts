import test from 'ava';
import { TEST_SOCKET_DIR, baseSpec, clone, testCtx } from '../testing.js';
import { preloadMount } from './preload-mount.js';

test('bind-mounts the library and the socket directory read-only, after the existing mounts', (t) => {
  const spec = baseSpec();
  const ctx = testCtx();
  preloadMount.modify(spec, ctx);
  t.is(spec.mounts!.length, 4);
  t.deepEqual(spec.mounts!.slice(0, 2), baseSpec().mounts);
  t.deepEqual(spec.mounts![2], {
    destination: '/.slimfast/libslimfast.so',
    type: 'bind',
    source: ctx.preload,
    options: ['bind', 'ro', 'nosuid', 'nodev'],
  });
  t.deepEqual(spec.mounts![3], {
    destination: '/.slimfast/run',
    type: 'bind',
    source: ctx.socketDir,
    options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
  });
  t.deepEqual(ctx.needDirs, [ctx.socketDir], 'the socket directory must exist before runc mounts it');
});

test('idempotent: applying twice changes nothing more', (t) => {
  const spec = baseSpec();
  const ctx = testCtx();
  preloadMount.modify(spec, ctx);
  const once = clone(spec);
  preloadMount.modify(spec, ctx);
  t.deepEqual(spec, once);
  t.is(ctx.needDirs.length, 1);
});

test('an earlier SlimFast mount (another install, another state dir) is replaced in place, duplicates dropped', (t) => {
  const spec = baseSpec();
  spec.mounts!.push({ destination: '/.slimfast/libslimfast.so', type: 'bind', source: '/old/libslimfast.so', options: ['bind'] });
  spec.mounts!.push({ destination: '/data', type: 'bind', source: '/srv/data' });
  spec.mounts!.push({ destination: '/.slimfast/libslimfast.so', type: 'bind', source: '/older/libslimfast.so' });
  preloadMount.modify(spec, testCtx());
  t.deepEqual(
    spec.mounts!.map((m) => `${m.destination}=${m.source}`),
    [
      '/proc=proc',
      '/dev=tmpfs',
      '/.slimfast/libslimfast.so=/opt/slimfast/native/preload/libslimfast.so',
      '/data=/srv/data',
      `/.slimfast/run=${TEST_SOCKET_DIR}`,
    ],
  );
});

test('a configuration without mounts gets them', (t) => {
  const spec = baseSpec();
  delete spec.mounts;
  preloadMount.modify(spec, testCtx());
  t.is(spec.mounts!.length, 2);
});
