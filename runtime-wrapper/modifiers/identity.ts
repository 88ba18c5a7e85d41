// Records the id the container is registered with at the broker as the annotation io.slimfast.id.
// The hooks read it from the OCI state (runc passes annotations to every hook), so the createRuntime
// and poststop hooks and the bind-mounted socket directory always agree on the id, also when the
// precreate hook had to choose it. It also marks the container as a SlimFast one (see exec), and so it
// is what skips a container that stays off SlimFast: one annotated io.slimfast.disable=true, and one
// without a network namespace of its own, which has no address to put on the overlay.
import { ANNOTATION_DISABLE, ANNOTATION_ID, isTrueAnnotation } from '../constants.js';
import type { Ctx, Spec, SpecModifier } from '../spec.js';

export const identity: SpecModifier = {
  name: 'identity',
  skip(spec: Spec, ctx: Ctx): string | undefined {
    if (isTrueAnnotation(spec.annotations?.[ANNOTATION_DISABLE])) return `it is annotated ${ANNOTATION_DISABLE}=true`;
    const netns = spec.linux?.namespaces?.find((ns) => ns.type === 'network');
    if (!netns) return 'it shares the host network namespace (no network namespace in linux.namespaces)';
    if (netns.path && ctx.isHostNetns(netns.path)) return `its network namespace ${netns.path} is the host's`;
    return undefined;
  },
  modify(spec: Spec, ctx: Ctx): void {
    spec.annotations ??= {};
    spec.annotations[ANNOTATION_ID] = ctx.id;
  },
};
