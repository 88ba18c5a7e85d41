// The modifier lists: which changes slimfast-runc and the precreate hook make, in order.
import { ANNOTATION_DISABLE, isTrueAnnotation } from '../constants.js';
import type { Ctx, Spec, SpecModifier } from '../spec.js';
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

/** Why a container stays off SlimFast, or undefined when it goes on it. */
export function skipReason(spec: Spec, ctx: Pick<Ctx, 'isHostNetns'>): string | undefined {
  if (isTrueAnnotation(spec.annotations?.[ANNOTATION_DISABLE])) return `it is annotated ${ANNOTATION_DISABLE}=true`;
  const netns = spec.linux?.namespaces?.find((ns) => ns.type === 'network');
  if (!netns) return 'it shares the host network namespace (no network namespace in linux.namespaces)';
  if (netns.path && ctx.isHostNetns(netns.path)) return `its network namespace ${netns.path} is the host's`;
  return undefined;
}
