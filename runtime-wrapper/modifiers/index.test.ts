import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { type Ctx, type Spec, SpecError, type SpecModifier, applyModifiers, skipReason as skipReasonOf } from '../spec.js';
import { baseSpec, clone, testCtx } from '../testing.js';
import { CREATE_MODIFIERS, EXEC_MODIFIERS, PRECREATE_MODIFIERS, putOnSlimfast } from './index.js';

test('every list is idempotent as a whole', (t) => {
  for (const list of [CREATE_MODIFIERS, PRECREATE_MODIFIERS, EXEC_MODIFIERS]) {
    const spec = baseSpec();
    applyModifiers(spec, testCtx(), list);
    const once = clone(spec);
    applyModifiers(spec, testCtx(), list);
    t.deepEqual(spec, once, list.map((m) => m.name).join(','));
  }
});

test('precreate makes every change but the hooks, plus /etc/ld.so.preload; exec only the env', (t) => {
  t.deepEqual(
    CREATE_MODIFIERS.map((m) => m.name),
    ['identity', 'preload-mount', 'env', 'seccomp', 'hooks'],
  );
  t.deepEqual(
    PRECREATE_MODIFIERS.map((m) => m.name),
    ['identity', 'preload-mount', 'ld-so-preload', 'env', 'seccomp'],
  );
  t.deepEqual(
    EXEC_MODIFIERS.map((m) => m.name),
    ['env'],
  );
  const spec = baseSpec();
  applyModifiers(spec, testCtx(), PRECREATE_MODIFIERS);
  t.is(spec.hooks, undefined);
});

test('containers on the host network, or annotated io.slimfast.disable=true, stay off SlimFast', (t) => {
  const ctx = testCtx();
  // The list's modifiers decide (identity's skip): the same for slimfast-runc create and the precreate hook.
  for (const list of [CREATE_MODIFIERS, PRECREATE_MODIFIERS]) {
    const skipReason = (spec: Spec, c: Ctx) => skipReasonOf(spec, c, list);
    t.is(skipReason(baseSpec(), ctx), undefined, 'a network namespace of its own');
    const podman = baseSpec();
    podman.linux!.namespaces![1] = { type: 'network', path: '/run/netns/netns-1234' };
    t.is(skipReason(podman, ctx), undefined, 'a prepared network namespace');

    const host = baseSpec();
    host.linux!.namespaces = host.linux!.namespaces!.filter((n) => n.type !== 'network');
    t.regex(skipReason(host, ctx)!, /host network namespace/);
    const hostPath = baseSpec();
    hostPath.linux!.namespaces![1] = { type: 'network', path: '/proc/1/ns/net' };
    t.regex(skipReason(hostPath, ctx)!, /is the host's/);
    const noLinux = baseSpec();
    delete noLinux.linux;
    t.truthy(skipReason(noLinux, ctx));

    for (const v of ['true', 'TRUE', '1', 'yes']) {
      t.regex(skipReason({ ...baseSpec(), annotations: { 'io.slimfast.disable': v } }, ctx)!, /io\.slimfast\.disable/, v);
    }
    t.is(skipReason({ ...baseSpec(), annotations: { 'io.slimfast.disable': 'false' } }, ctx), undefined);
  }
  t.is(
    skipReasonOf({ ...baseSpec(), annotations: { 'io.slimfast.disable': 'true' } }, ctx, EXEC_MODIFIERS),
    undefined,
    "exec goes by the container's io.slimfast.id instead",
  );
});

test('a skipped container is left as it came: no modifier runs, nothing is made on the host, no preload needed', (t) => {
  const host = baseSpec();
  host.linux!.namespaces = host.linux!.namespaces!.filter((n) => n.type !== 'network');
  const before = clone(host);
  const ctx = testCtx({ preload: '/nonexistent/libslimfast.so' });
  t.regex(putOnSlimfast(host, ctx, CREATE_MODIFIERS)!, /host network namespace/);
  t.deepEqual(host, before);
  t.deepEqual([ctx.needDirs, ctx.needFiles], [[], []]);
  // A later modifier's skip counts before an earlier one changes anything.
  const touched: string[] = [];
  const marker: SpecModifier = {
    name: 'marker',
    modify: (spec) => {
      spec.annotations = { touched: 'yes' };
      touched.push('marker');
    },
  };
  const refuses: SpecModifier = { name: 'refuses', skip: () => 'it says so', modify: () => void touched.push('refuses') };
  const spec = baseSpec();
  t.is(putOnSlimfast(spec, testCtx(), [marker, refuses]), 'it says so');
  t.deepEqual([touched, spec], [[], baseSpec()]);
});

test("a container that goes on SlimFast needs the preload library; a modifier's SpecError comes through as it is", (t) => {
  t.throws(() => putOnSlimfast(baseSpec(), testCtx({ preload: '/nonexistent/libslimfast.so' }), CREATE_MODIFIERS), {
    instanceOf: SpecError,
    message:
      'the SlimFast preload library /nonexistent/libslimfast.so is missing: build it ("npm run build" in the SlimFast install) or set SLIMFAST_PRELOAD',
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-put-on-'));
  try {
    const preload = path.join(dir, 'libslimfast.so');
    fs.writeFileSync(preload, '');
    const ctx = testCtx({ preload, socketDir: path.join(dir, 'sock'), ldSoPreload: path.join(dir, 'ld.so.preload') });
    const bad = { ...baseSpec(), annotations: { 'io.slimfast.seccomp': 'maybe' } };
    t.throws(() => putOnSlimfast(bad, ctx, CREATE_MODIFIERS), {
      instanceOf: SpecError,
      message: /io\.slimfast\.seccomp="maybe" is neither true nor false/,
    });
    const spec = baseSpec();
    t.is(putOnSlimfast(spec, ctx, PRECREATE_MODIFIERS), undefined);
    t.is(spec.annotations!['io.slimfast.id'], 'c1');
    t.true(fs.statSync(ctx.socketDir).isDirectory(), 'the bind-mount sources are made');
    t.is(fs.readFileSync(ctx.ldSoPreload, 'utf8'), '/.slimfast/libslimfast.so\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
