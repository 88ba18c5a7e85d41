// Podman's precreate hook stage: the runtime configuration comes on stdin and the (modified)
// configuration goes to stdout, before Podman hands it to the OCI runtime. This applies the same
// modifiers as slimfast-runc create, except the hooks, which Podman adds from the hooks.d files, so that
// Podman's hooks directory alone puts containers on SlimFast with a plain runc or crun; and it mounts
// /etc/ld.so.preload, since no hook sees `podman exec` (modifiers/ld-so-preload.ts).
//
// The configuration does not name the container. Podman >= 4.4 runs the hook in the container's bundle
// directory, .../<DRIVER>-containers/<ID>/userdata (Podman 4.3 runs it in its own working directory), and
// every Podman bind-mounts files from there (hosts, resolv.conf, .containerenv); failing both an id is made
// up. DRIVER is the storage driver: overlay by default, vfs, btrfs, zfs... It is recorded as the annotation
// io.slimfast.id for the createRuntime hook.
import crypto from 'node:crypto';
import path from 'node:path';
import { ANNOTATION_ID } from '../runtime-wrapper/constants.js';
import { buildCtx } from '../runtime-wrapper/context.js';
import { parseLossless, stringifyLossless } from '../runtime-wrapper/json-lossless.js';
import { PRECREATE_MODIFIERS, putOnSlimfast } from '../runtime-wrapper/modifiers/index.js';
import type { Ctx, Spec } from '../runtime-wrapper/spec.js';
import { HookInputError } from './oci-state.js';

// containers/storage keeps a container's files in <root or runroot>/<driver>-containers/<ID>/userdata.
const PODMAN_USERDATA = /\/[a-z0-9]+-containers\/([0-9a-f]{64})\/userdata(?:\/|$)/;

/** The container id from Podman's bundle directory (the hook's working directory in Podman >= 4.4), if it is one. */
export function idFromBundleDir(dir: string): string | undefined {
  return PODMAN_USERDATA.exec(path.resolve(dir))?.[1];
}

/**
 * The container id from the files Podman mounts from the container's userdata directory
 * (.../<driver>-containers/<ID>/userdata/{hosts,hostname,resolv.conf,.containerenv}), when they agree.
 */
export function idFromPodmanMounts(spec: Spec): string | undefined {
  const ids = new Set<string>();
  for (const m of spec.mounts ?? []) {
    const id = typeof m.source === 'string' ? PODMAN_USERDATA.exec(m.source)?.[1] : undefined;
    if (id) ids.add(id);
  }
  return ids.size === 1 ? [...ids][0] : undefined;
}

export interface PrecreateResult {
  output: string;
  changed: boolean;
  skipped?: string;
}

export function precreate(
  input: string,
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
  makeCtx: (id: string) => Ctx = (id) => buildCtx(id, env),
): PrecreateResult {
  let spec: Spec;
  try {
    spec = parseLossless(input) as Spec;
  } catch (err) {
    throw new HookInputError(
      `stdin is not an OCI runtime configuration (${(err as Error).message}); slimfast-hook precreate is run by Podman as a precreate hook`,
    );
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new HookInputError('stdin is not an OCI runtime configuration object');
  // A made-up id works for createRuntime, which sees the annotation, but Podman runs poststop with the
  // annotations it was given (without ours) and the real id: the real id is worth finding.
  const id = spec.annotations?.[ANNOTATION_ID] || idFromBundleDir(cwd) || idFromPodmanMounts(spec) || `sf-${crypto.randomBytes(8).toString('hex')}`;
  const skipped = putOnSlimfast(spec, makeCtx(id), PRECREATE_MODIFIERS);
  if (skipped) return { output: input, changed: false, skipped };
  return { output: stringifyLossless(spec), changed: true };
}
