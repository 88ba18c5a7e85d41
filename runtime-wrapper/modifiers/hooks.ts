// Adds the createRuntime hook (`slimfast-hook create`: register with the broker once the network
// namespace exists). No poststop hook: the broker watches the container's init process and unregisters
// the container when it exits, which saves runc a hook process per container. A hook of ours already
// there (same program name and stage, e.g. from a Podman hooks.d file) is replaced, never doubled; a
// poststop hook of ours from an earlier install stays (it is harmless: the broker has forgotten the
// container by then).
import path from 'node:path';
import type { Ctx, Hook, Spec, SpecModifier } from '../spec.js';

const STAGES: [stage: string, arg: string][] = [['createRuntime', 'create']];

export function isSlimfastHook(h: Hook, arg: string): boolean {
  return path.basename(h.path ?? '') === 'slimfast-hook' && h.args?.[1] === arg;
}

export function slimfastHook(ctx: Ctx, arg: string): Hook {
  return { path: ctx.hook, args: ['slimfast-hook', arg], env: [...ctx.hookEnv], timeout: ctx.hookTimeout };
}

export const hooks: SpecModifier = {
  name: 'hooks',
  modify(spec: Spec, ctx: Ctx): void {
    spec.hooks ??= {};
    for (const [stage, arg] of STAGES) {
      spec.hooks[stage] ??= [];
      const list = spec.hooks[stage] as Hook[];
      const ours = slimfastHook(ctx, arg);
      const at = list.findIndex((h) => isSlimfastHook(h, arg));
      if (at < 0) {
        list.push(ours);
        continue;
      }
      list[at] = ours;
      for (let j = list.length - 1; j > at; j--) if (isSlimfastHook(list[j], arg)) list.splice(j, 1);
    }
  },
};
