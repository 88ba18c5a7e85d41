// Helpers for the tests of runtime-wrapper/ and hooks/ (not a test file itself).
import os from 'node:os';
import path from 'node:path';
import type { Ctx, Spec } from './spec.js';

const TEST_STATE_DIR = path.join(os.tmpdir(), `sf-test-ctx-${process.pid}`);
/** Where testCtx's socket directory lives (created by code under test that prepares directories). */
export const TEST_SOCKET_DIR = path.join(TEST_STATE_DIR, 'containers', '0123456789ab');
/** Where testCtx's ld.so.preload file lives (written by code under test that prepares files). */
export const TEST_LD_SO_PRELOAD = path.join(TEST_STATE_DIR, 'ld.so.preload');

export function testCtx(over: Partial<Ctx> = {}): Ctx {
  return {
    id: 'c1',
    stateDir: '/run/sf-test',
    preload: '/opt/slimfast/native/preload/libslimfast.so',
    hook: '/opt/slimfast/bin/slimfast-hook',
    hookEnv: ['PATH=/usr/bin:/bin', 'SLIMFAST_STATE_DIR=/run/sf-test'],
    hookTimeout: 12,
    socketDir: TEST_SOCKET_DIR,
    ldSoPreload: TEST_LD_SO_PRELOAD,
    isHostNetns: (p) => p === '/proc/1/ns/net',
    needDirs: [],
    needFiles: [],
    ...over,
  };
}

/** A configuration like `runc spec` writes, with a network namespace of its own. */
export function baseSpec(): Spec {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'runc',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore'],
    },
  };
}

export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
