// `slimfast install podman`: the hooks.d files (oci-hooks(5), schema 1.0.0) that put Podman containers
// on SlimFast with whatever OCI runtime Podman uses: precreate (Podman runs it with the configuration on
// stdin and takes the modified one from stdout) and createRuntime (register; the broker unregisters the
// container when its init process exits). The poststop file earlier installs wrote is removed.
import path from 'node:path';
import { HOOK_PATH } from '../runtime-wrapper/constants.js';
import { hookTimeoutSeconds } from '../runtime-wrapper/context.js';
import { type EngineWriter, InstallUsageError, refuseFlags } from './engine.js';
import type { FileChange } from './file-change.js';

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
];

/** Files earlier installs wrote that this one removes (if they are ours). */
export const OLD_HOOK_FILES = ['50-slimfast-poststop.json'];

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
  return `${JSON.stringify(hookDefinition(stage, arg, opts), null, 2)}\n`;
}

export function planPodman(hooksDir: string, read: (file: string) => string | undefined, opts: PodmanOptions): FileChange[] {
  const dir = path.resolve(hooksDir);
  const write = HOOK_FILES.map(([name, stage, arg]): FileChange => {
    const file = path.join(dir, name);
    return { file, before: read(file), after: renderHookFile(stage, arg, opts) };
  });
  const remove = OLD_HOOK_FILES.flatMap((name): FileChange[] => {
    const file = path.join(dir, name);
    const before = read(file);
    return before !== undefined && isOurHookFile(before) ? [{ file, before, after: '', remove: true }] : [];
  });
  return [...write, ...remove];
}

/** Whether a hooks.d file runs slimfast-hook (and so is ours to remove). */
function isOurHookFile(text: string): boolean {
  try {
    const doc = JSON.parse(text) as { hook?: { args?: unknown[] } };
    return doc.hook?.args?.[0] === 'slimfast-hook';
  } catch {
    return false;
  }
}

export const PODMAN_HINT =
  'Podman reads hooks directories at every container start: pass --hooks-dir DIR, or set hooks_dir in containers.conf, if DIR is not one of its defaults (/usr/share/containers/oci/hooks.d, /etc/containers/oci/hooks.d)';

/** `slimfast install podman --hooks-dir DIR [--state-dir DIR] [--when-annotation KEY=REGEX]`. */
export const podmanWriter: EngineWriter<PodmanOptions> = {
  name: 'podman',
  runs: 'hook',
  options: ({ flags, paths }) => {
    refuseFlags(flags, ['config'], (f) => `--${f} is not an option of install podman`);
    const hooksDir = flags['hooks-dir'];
    if (typeof hooksDir !== 'string' || hooksDir === '') throw new InstallUsageError('install podman needs --hooks-dir DIR');
    let whenAnnotation: [string, string] | undefined;
    const when = flags['when-annotation'];
    if (typeof when === 'string') {
      const eq = when.indexOf('=');
      if (eq <= 0) throw new InstallUsageError('--when-annotation takes KEY=REGEX');
      whenAnnotation = [when.slice(0, eq), when.slice(eq + 1)];
    }
    return { target: hooksDir, opts: { hook: paths.hook, stateDir: flags['state-dir'] as string | undefined, whenAnnotation } };
  },
  plan: planPodman,
  hint: () => PODMAN_HINT,
};
