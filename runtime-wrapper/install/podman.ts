// `slimfast install podman`: the hooks.d files (oci-hooks(5), schema 1.0.0) that put Podman containers
// on SlimFast with whatever OCI runtime Podman uses: precreate (Podman runs it with the configuration on
// stdin and takes the modified one from stdout), createRuntime (register) and poststop (unregister).
import path from 'node:path';
import { HOOK_PATH } from '../constants.js';
import { hookTimeoutSeconds } from '../context.js';
import type { FileChange } from './common.js';

export interface PodmanOptions {
  hook: string;
  stateDir?: string;
  /** Only containers with an annotation KEY matching VALUE (both POSIX EREs); default: every container. */
  whenAnnotation?: [key: string, value: string];
  /** Extra environment for the hooks (NAME=value), e.g. SLIMFAST_CONFIG. */
  env?: string[];
}

export const HOOK_FILES: [file: string, stage: string, arg: string][] = [
  ['50-slimfast-precreate.json', 'precreate', 'precreate'],
  ['50-slimfast-createruntime.json', 'createRuntime', 'create'],
  ['50-slimfast-poststop.json', 'poststop', 'poststop'],
];

export function hookDefinition(stage: string, arg: string, opts: PodmanOptions): Record<string, unknown> {
  const env = [HOOK_PATH, ...(opts.stateDir ? [`SLIMFAST_STATE_DIR=${path.resolve(opts.stateDir)}`] : []), ...(opts.env ?? [])];
  const when = opts.whenAnnotation ? { annotations: { [opts.whenAnnotation[0]]: opts.whenAnnotation[1] } } : { always: true };
  return {
    version: '1.0.0',
    hook: { path: opts.hook, args: ['slimfast-hook', arg], env, timeout: Math.ceil(hookTimeoutSeconds({})) + 2 },
    when,
    stages: [stage],
  };
}

export function renderHookFile(stage: string, arg: string, opts: PodmanOptions): string {
  return JSON.stringify(hookDefinition(stage, arg, opts), null, 2) + '\n';
}

export function planPodman(hooksDir: string, read: (file: string) => string | undefined, opts: PodmanOptions): FileChange[] {
  return HOOK_FILES.map(([name, stage, arg]) => {
    const file = path.join(path.resolve(hooksDir), name);
    return { file, before: read(file), after: renderHookFile(stage, arg, opts) };
  });
}

export const PODMAN_HINT = 'Podman reads hooks directories at every container start: pass --hooks-dir DIR, or set hooks_dir in containers.conf, if DIR is not one of its defaults (/usr/share/containers/oci/hooks.d, /etc/containers/oci/hooks.d)';
