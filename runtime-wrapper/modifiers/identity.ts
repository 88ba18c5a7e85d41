// Records the id the container is registered with at the broker as the annotation io.slimfast.id.
// The hooks read it from the OCI state (runc passes annotations to every hook), so the createRuntime
// and poststop hooks and the bind-mounted socket directory always agree on the id, also when the
// precreate hook had to choose it. It also marks the container as a SlimFast one (see exec).
import { ANNOTATION_ID } from '../constants.js';
import type { Ctx, Spec, SpecModifier } from '../spec.js';

export const identity: SpecModifier = {
  name: 'identity',
  modify(spec: Spec, ctx: Ctx): void {
    spec.annotations ??= {};
    spec.annotations[ANNOTATION_ID] = ctx.id;
  },
};
