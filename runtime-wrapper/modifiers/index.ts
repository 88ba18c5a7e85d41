// The modifier lists: which changes slimfast-runc and the precreate hook make, in order, and how a list
// puts a container on SlimFast.
import fs from 'node:fs';
import { type Ctx, type Spec, SpecError, type SpecModifier, applyModifiers, prepareHostPaths, skipReason } from '../spec.js';
import { env } from './env.js';
import { hooks } from './hooks.js';
import { identity } from './identity.js';
import { ldSoPreload } from './ld-so-preload.js';
import { preloadMount } from './preload-mount.js';
import { seccomp } from './seccomp.js';

/**
 * slimfast-runc create/run: everything but /etc/ld.so.preload. slimfast-runc gives every exec'd process
 * the environment itself (EXEC_MODIFIERS on the --process file), so the image's own ld.so.preload stays.
 */
export const CREATE_MODIFIERS: readonly SpecModifier[] = [identity, preloadMount, env, seccomp, hooks];

/**
 * Podman's precreate hook stage: the same without the hooks, which Podman adds itself from the
 * createRuntime and poststop hooks.d files (adding them here too would register the container twice),
 * and with /etc/ld.so.preload: nothing else reaches `podman exec` processes, which lack the environment.
 */
export const PRECREATE_MODIFIERS: readonly SpecModifier[] = [identity, preloadMount, ldSoPreload, env, seccomp];

/** slimfast-runc exec --process FILE: the process environment only. */
export const EXEC_MODIFIERS: readonly SpecModifier[] = [env];

/**
 * Puts the container on SlimFast by the list: undefined once the configuration is changed and the
 * bind-mount sources exist, or why it stays off SlimFast (a modifier's skip; then nothing is changed,
 * neither the configuration nor anything on the host). A missing preload library, or a change a
 * modifier cannot make, throws a SpecError.
 */
export function putOnSlimfast(spec: Spec, ctx: Ctx, modifiers: readonly SpecModifier[]): string | undefined {
  const skipped = skipReason(spec, ctx, modifiers);
  if (skipped) return skipped;
  if (!fs.existsSync(ctx.preload)) {
    throw new SpecError(
      `the SlimFast preload library ${ctx.preload} is missing: build it ("npm run build" in the SlimFast install) or set SLIMFAST_PRELOAD`,
    );
  }
  applyModifiers(spec, ctx, modifiers);
  prepareHostPaths(ctx);
  return undefined;
}
