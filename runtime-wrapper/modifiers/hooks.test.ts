import test from 'ava';
import type { Hook } from '../spec.js';
import { baseSpec, clone, testCtx } from '../testing.js';
import { hooks } from './hooks.js';

test('adds the createRuntime hook with absolute paths, env and timeout, and no poststop hook', (t) => {
  const spec = baseSpec();
  hooks.modify(spec, testCtx());
  const want = (arg: string): Hook => ({
    path: '/opt/slimfast/bin/slimfast-hook',
    args: ['slimfast-hook', arg],
    env: ['PATH=/usr/bin:/bin', 'SLIMFAST_STATE_DIR=/run/sf-test'],
    timeout: 12,
  });
  t.deepEqual(spec.hooks, { createRuntime: [want('create')] }, 'the broker unregisters the container when its init exits');
});

test('keeps other hooks and their order; never adds ours twice', (t) => {
  const spec = baseSpec();
  const nvidia = { path: '/usr/bin/nvidia-container-runtime-hook', args: ['nvidia-container-runtime-hook', 'prestart'] };
  const other = { path: '/usr/libexec/oci/hooks.d/x', args: ['x'] };
  spec.hooks = { prestart: [nvidia], createRuntime: [other], poststop: [] };
  hooks.modify(spec, testCtx());
  const once = clone(spec);
  hooks.modify(spec, testCtx());
  t.deepEqual(spec, once);
  t.deepEqual(spec.hooks.prestart, [nvidia]);
  t.is(spec.hooks.createRuntime!.length, 2);
  t.deepEqual(spec.hooks.createRuntime![0], other);
  t.deepEqual(spec.hooks.poststop, []);
});

test('a hook of ours from elsewhere (hooks.d, an older install) is replaced in place, duplicates dropped', (t) => {
  const spec = baseSpec();
  spec.hooks = {
    createRuntime: [
      { path: '/usr/local/lib/slimfast/bin/slimfast-hook', args: ['slimfast-hook', 'create'] },
      { path: '/x', args: ['x'] },
      { path: '/old/slimfast-hook', args: ['slimfast-hook', 'create'] },
    ],
  };
  hooks.modify(spec, testCtx());
  t.deepEqual(
    spec.hooks.createRuntime!.map((h) => h.path),
    ['/opt/slimfast/bin/slimfast-hook', '/x'],
  );
  t.is(spec.hooks.poststop, undefined);
});
