import test from 'ava';
import { baseSpec, clone, testCtx } from '../testing.js';
import { identity } from './identity.js';

test('records the broker id as io.slimfast.id, keeping other annotations', (t) => {
  const spec = { ...baseSpec(), annotations: { 'org.opencontainers.image.stopSignal': '15' } };
  identity.modify(spec, testCtx({ id: 'abc' }));
  t.deepEqual(spec.annotations, { 'org.opencontainers.image.stopSignal': '15', 'io.slimfast.id': 'abc' });
});

test('creates annotations when absent; idempotent; a new id replaces an old one', (t) => {
  const spec = baseSpec();
  identity.modify(spec, testCtx({ id: 'abc' }));
  const once = clone(spec);
  identity.modify(spec, testCtx({ id: 'abc' }));
  t.deepEqual(spec, once);
  identity.modify(spec, testCtx({ id: 'def' }));
  t.is(spec.annotations!['io.slimfast.id'], 'def');
});

test('skips a container annotated io.slimfast.disable=true, or without a network namespace of its own', (t) => {
  const ctx = testCtx();
  t.is(identity.skip!(baseSpec(), ctx), undefined);
  t.is(identity.skip!({ ...baseSpec(), annotations: { 'io.slimfast.disable': 'yes' } }, ctx), 'it is annotated io.slimfast.disable=true');
  t.is(identity.skip!({ ...baseSpec(), annotations: { 'io.slimfast.disable': 'no' } }, ctx), undefined);
  const host = baseSpec();
  host.linux!.namespaces = host.linux!.namespaces!.filter((n) => n.type !== 'network');
  t.is(identity.skip!(host, ctx), 'it shares the host network namespace (no network namespace in linux.namespaces)');
  const hostPath = baseSpec();
  hostPath.linux!.namespaces![1] = { type: 'network', path: '/proc/1/ns/net' };
  t.is(identity.skip!(hostPath, ctx), "its network namespace /proc/1/ns/net is the host's");
  const joined = baseSpec();
  joined.linux!.namespaces![1] = { type: 'network', path: '/run/netns/other' };
  t.is(identity.skip!(joined, ctx), undefined, 'a network namespace prepared for it');
});
