import crypto from 'node:crypto';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';
import { buildCtx, hookTimeoutSeconds, isHostNetns } from './context.js';

test("the socket directory is the broker registry's: STATE_DIR/containers/<12 hex of sha256(id)>", (t) => {
  const ctx = buildCtx('my-container', { SLIMFAST_STATE_DIR: '/run/sf-x' });
  const h = crypto.createHash('sha256').update('my-container').digest('hex').slice(0, 12);
  t.is(ctx.socketDir, path.join('/run/sf-x', 'containers', h));
  t.is(ctx.stateDir, '/run/sf-x');
  t.is(ctx.hook, installPaths().hook);
  t.is(ctx.preload, installPaths().preload);
  t.true(path.isAbsolute(ctx.hook));
});

test('hook env names the state dir and forwards SlimFast settings; timeout covers SLIMFAST_HOOK_TIMEOUT', (t) => {
  const ctx = buildCtx('c', { SLIMFAST_STATE_DIR: '/run/sf-x', SLIMFAST_CONFIG: '/etc/sf.json', SLIMFAST_HOOK_TIMEOUT: '3.5', HOME: '/root' });
  t.deepEqual(ctx.hookEnv, [
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'SLIMFAST_STATE_DIR=/run/sf-x',
    'SLIMFAST_CONFIG=/etc/sf.json',
    'SLIMFAST_HOOK_TIMEOUT=3.5',
  ]);
  t.is(ctx.hookTimeout, 6);
  t.is(buildCtx('c', { SLIMFAST_STATE_DIR: 'rel/dir' }).stateDir, path.resolve('rel/dir'));
  t.is(buildCtx('c', { SLIMFAST_STATE_DIR: '/s', SLIMFAST_PRELOAD: '/p.so' }).preload, '/p.so');
});

test('SLIMFAST_HOOK_TIMEOUT parsing', (t) => {
  t.is(hookTimeoutSeconds({}), 10);
  t.is(hookTimeoutSeconds({ SLIMFAST_HOOK_TIMEOUT: '2' }), 2);
  t.is(hookTimeoutSeconds({ SLIMFAST_HOOK_TIMEOUT: '0.5s' }), 0.5);
  t.throws(() => hookTimeoutSeconds({ SLIMFAST_HOOK_TIMEOUT: 'soon' }), { message: /SLIMFAST_HOOK_TIMEOUT="soon"/ });
  t.throws(() => hookTimeoutSeconds({ SLIMFAST_HOOK_TIMEOUT: '-1' }));
});

test('host network namespace detection compares namespace identity, not paths', (t) => {
  t.true(isHostNetns('/proc/self/ns/net'));
  t.true(isHostNetns(`/proc/${process.pid}/ns/net`));
  t.false(isHostNetns('/nonexistent/ns'));
  t.false(isHostNetns('/proc/self/ns/mnt'));
});
