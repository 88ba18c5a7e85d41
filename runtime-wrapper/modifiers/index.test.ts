import test from 'ava';
import { applyModifiers } from '../spec.js';
import { baseSpec, clone, testCtx } from '../testing.js';
import { CREATE_MODIFIERS, EXEC_MODIFIERS, PRECREATE_MODIFIERS, skipReason } from './index.js';

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
  t.deepEqual(CREATE_MODIFIERS.map((m) => m.name), ['identity', 'preload-mount', 'env', 'seccomp', 'hooks']);
  t.deepEqual(PRECREATE_MODIFIERS.map((m) => m.name), ['identity', 'preload-mount', 'ld-so-preload', 'env', 'seccomp']);
  t.deepEqual(EXEC_MODIFIERS.map((m) => m.name), ['env']);
  const spec = baseSpec();
  applyModifiers(spec, testCtx(), PRECREATE_MODIFIERS);
  t.is(spec.hooks, undefined);
});

test('containers on the host network, or annotated io.slimfast.disable=true, stay off SlimFast', (t) => {
  const ctx = testCtx();
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
});
