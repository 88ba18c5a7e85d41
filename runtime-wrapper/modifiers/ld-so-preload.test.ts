import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { prepareHostPaths } from '../spec.js';
import { TEST_LD_SO_PRELOAD, baseSpec, clone, testCtx } from '../testing.js';
import { LD_SO_PRELOAD_CONTENT, ldSoPreload } from './ld-so-preload.js';

test('bind-mounts the host file read-only at /etc/ld.so.preload, after the existing mounts', (t) => {
  const spec = baseSpec();
  const ctx = testCtx();
  ldSoPreload.modify(spec, ctx);
  t.deepEqual(spec.mounts!.slice(0, 2), baseSpec().mounts);
  t.deepEqual(spec.mounts![2], {
    destination: '/etc/ld.so.preload',
    type: 'bind',
    source: TEST_LD_SO_PRELOAD,
    options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
  });
  t.deepEqual(ctx.needFiles, [{ path: TEST_LD_SO_PRELOAD, content: '/.slimfast/libslimfast.so\n' }], 'the file must exist before runc mounts it');
});

test('idempotent; keeps other mounts and fields; an earlier mount at /etc/ld.so.preload is replaced in place', (t) => {
  const spec = baseSpec();
  spec.mounts!.push({ destination: '/etc/ld.so.preload', type: 'bind', source: '/old/ld.so.preload', options: ['bind'] });
  spec.mounts!.push({ destination: '/data', type: 'bind', source: '/srv/data', uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }] });
  spec.mounts!.push({ destination: '/etc/ld.so.preload', type: 'bind', source: '/older/ld.so.preload' });
  const ctx = testCtx();
  ldSoPreload.modify(spec, ctx);
  const once = clone(spec);
  ldSoPreload.modify(spec, ctx);
  t.deepEqual(spec, once);
  t.is(ctx.needFiles.length, 1);
  t.deepEqual(
    spec.mounts!.map((m) => `${m.destination}=${m.source}`),
    ['/proc=proc', '/dev=tmpfs', `/etc/ld.so.preload=${TEST_LD_SO_PRELOAD}`, '/data=/srv/data'],
  );
  t.deepEqual(spec.mounts![3], once.mounts![3]);
  t.deepEqual(spec.process, baseSpec().process, "the environment is env's business");
});

test('a configuration without mounts gets one', (t) => {
  const spec = baseSpec();
  delete spec.mounts;
  ldSoPreload.modify(spec, testCtx());
  t.is(spec.mounts!.length, 1);
});

test('the host file is written world-readable, rewritten only when its content differs', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-ld-so-preload-'));
  try {
    const file = path.join(dir, 'state', 'ld.so.preload');
    const ctx = testCtx({ ldSoPreload: file });
    ldSoPreload.modify(baseSpec(), ctx);
    const umask = process.umask(0o077);
    try {
      prepareHostPaths(ctx);
    } finally {
      process.umask(umask);
    }
    t.is(fs.readFileSync(file, 'utf8'), LD_SO_PRELOAD_CONTENT);
    t.is(fs.statSync(file).mode & 0o777, 0o644);
    const ino = fs.statSync(file).ino;
    prepareHostPaths(ctx);
    t.is(fs.statSync(file).ino, ino, 'unchanged: not rewritten');
    fs.writeFileSync(file, '/elsewhere.so\n');
    prepareHostPaths(ctx);
    t.is(fs.readFileSync(file, 'utf8'), LD_SO_PRELOAD_CONTENT);
    t.deepEqual(fs.readdirSync(path.dirname(file)), ['ld.so.preload'], 'no temporary file is left behind');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
