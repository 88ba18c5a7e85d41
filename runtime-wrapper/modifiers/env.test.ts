import test from 'ava';
import { baseSpec, clone, testCtx } from '../testing.js';
import { env, withPreload } from './env.js';

test('adds LD_PRELOAD and SLIMFAST_SOCKET to the process environment', (t) => {
  const spec = baseSpec();
  env.modify(spec, testCtx());
  t.deepEqual(spec.process!.env, [...baseSpec().process!.env!, 'LD_PRELOAD=/.slimfast/libslimfast.so', 'SLIMFAST_SOCKET=/.slimfast/run/sf.sock']);
});

test('appends to an existing LD_PRELOAD with ":" and replaces an old SLIMFAST_SOCKET', (t) => {
  const spec = baseSpec();
  spec.process!.env = ['LD_PRELOAD=/usr/lib/libjemalloc.so', 'SLIMFAST_SOCKET=/elsewhere.sock', 'A=1'];
  env.modify(spec, testCtx());
  t.deepEqual(spec.process!.env, ['LD_PRELOAD=/usr/lib/libjemalloc.so:/.slimfast/libslimfast.so', 'SLIMFAST_SOCKET=/.slimfast/run/sf.sock', 'A=1']);
});

test('idempotent, also when the library is listed among others', (t) => {
  const spec = baseSpec();
  env.modify(spec, testCtx());
  const once = clone(spec);
  env.modify(spec, testCtx());
  t.deepEqual(spec, once);
  t.is(withPreload('/a.so /.slimfast/libslimfast.so'), '/a.so /.slimfast/libslimfast.so');
  t.is(withPreload(''), '/.slimfast/libslimfast.so');
  t.is(withPreload('/a.so'), '/a.so:/.slimfast/libslimfast.so');
});

test('a process without env gets one; no process, nothing to do', (t) => {
  const spec = baseSpec();
  delete spec.process!.env;
  env.modify(spec, testCtx());
  t.is(spec.process!.env!.length, 2);
  const noProc = baseSpec();
  delete noProc.process;
  env.modify(noProc, testCtx());
  t.is(noProc.process, undefined);
});
