// Builds the modifiers' context from this install and the environment.
import path from 'node:path';
import { readConfigFile, resolveStateDir } from '../common/config-file.js';
import { nsIdentity } from '../common/netns.js';
import { installPaths } from '../common/paths.js';
import { containerSocketDir, stateLayout } from '../common/state-dir.js';
import { DEFAULT_HOOK_TIMEOUT_S, FORWARDED_ENV, HOOK_PATH } from './constants.js';
import type { Ctx } from './spec.js';

/** SLIMFAST_HOOK_TIMEOUT in seconds (a positive number, "s" suffix allowed), else the default. */
export function hookTimeoutSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SLIMFAST_HOOK_TIMEOUT?.trim();
  if (!raw) return DEFAULT_HOOK_TIMEOUT_S;
  const n = Number(raw.replace(/s$/i, ''));
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`SLIMFAST_HOOK_TIMEOUT="${raw}" is not a positive number of seconds`);
  }
  return n;
}

/**
 * "Is nsPath the host's network namespace": the one the runtime runs in (runtimeNs, the "dev:ino" of
 * slimfast-runc's or slimfast-hook's own when the broker does their work; else this process's) or init's.
 */
export function hostNetnsCheck(runtimeNs?: string): (nsPath: string) => boolean {
  return (nsPath) => {
    const id = nsIdentity(nsPath);
    if (!id) return false;
    return id === (runtimeNs ?? nsIdentity('/proc/self/ns/net')) || id === nsIdentity('/proc/1/ns/net');
  };
}

/** True when nsPath is the network namespace this process (the runtime) or init runs in. */
export const isHostNetns = hostNetnsCheck();

/** The host path of libslimfast.so: SLIMFAST_PRELOAD (packaging, tests) or this install's. */
export function preloadPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.SLIMFAST_PRELOAD || installPaths().preload;
}

export function buildCtx(id: string, env: NodeJS.ProcessEnv = process.env, runtimeNs?: string): Ctx {
  const stateDir = stateLayout(resolveStateDir(env.SLIMFAST_STATE_DIR || undefined)).dir;
  const hookEnv = [HOOK_PATH, `SLIMFAST_STATE_DIR=${stateDir}`];
  for (const name of FORWARDED_ENV) if (env[name]) hookEnv.push(`${name}=${env[name]}`);
  return {
    id,
    stateDir,
    preload: preloadPath(env),
    hook: installPaths().hook,
    hookEnv,
    hookTimeout: Math.ceil(hookTimeoutSeconds(env)) + 2,
    socketDir: containerSocketDir(stateLayout(stateDir), id),
    ldSoPreload: path.join(stateDir, 'ld.so.preload'),
    isHostNetns: runtimeNs ? hostNetnsCheck(runtimeNs) : isHostNetns,
    needDirs: [],
    needFiles: [],
    seccompDefault: seccompDefault(),
  };
}

/** "seccomp" in the config file: true, false or absent (false). */
function seccompDefault(): boolean {
  const v = (readConfigFile() as { seccomp?: unknown }).seccomp;
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new Error(`"seccomp": ${JSON.stringify(v)} in the config file must be true or false`);
  return v;
}
