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
