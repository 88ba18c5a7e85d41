// `slimfast install containerd`: a runtime class "slimfast" in containerd's config.toml, i.e. the runc
// shim (io.containerd.runc.v2) with BinaryName = slimfast-runc and the runc entry's SystemdCgroup.
// CRI passes a pod's or container's annotations on to the runtime only when the runtime lists them
// (pod_annotations, container_annotations: path.Match patterns), so the entry lists io.slimfast.*
// (io.slimfast.disable, io.slimfast.seccomp); patterns the user added there are kept.
// Config version 2 (containerd 1.x, plugin "io.containerd.grpc.v1.cri") and 3 (containerd 2.x, plugin
// "io.containerd.cri.v1.runtime") are edited as text; the result is checked with a TOML parser.
import { isDeepStrictEqual } from 'node:util';
import { type EngineWriter, configFile } from './engine.js';
import { type FileChange, InstallError } from './file-change.js';
import { formatKey, formatValue, getPath, indentOf, insertBlock, parseTomlDoc, removeTables, verifyEdit } from './toml-edit.js';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';
export const RUNTIME_NAME = 'slimfast';
/** The annotations CRI passes on to slimfast-runc. */
export const ANNOTATION_PATTERN = 'io.slimfast.*';

const CRI_PLUGIN: Record<number, string> = { 2: 'io.containerd.grpc.v1.cri', 3: 'io.containerd.cri.v1.runtime' };

export function runtimesPath(version: number): string[] {
  return ['plugins', CRI_PLUGIN[version], 'containerd', 'runtimes'];
}

export interface ContainerdPlan extends FileChange {
  version: number;
  /** SystemdCgroup copied from the runc runtime, when it sets one. */
  systemdCgroup?: boolean;
}

export function planContainerd(file: string, before: string | undefined, runcBinary: string): ContainerdPlan {
  let text = before ?? '';
  const blank = text.trim() === '';
  const doc = blank ? {} : parseTomlDoc(text, file);
  let version = doc.version;
  if (blank) {
    version = 2; // read by containerd 1.x as is and converted by containerd 2.x
    text = 'version = 2\n';
  }
  if (version === undefined) {
    throw new InstallError(
      `${file} has no "version" line, which containerd 1.x reads as config version 1; SlimFast edits versions 2 and 3 only: ` +
        `migrate it ("containerd config migrate" on containerd >= 1.7, or start from "containerd config default") and run this again`,
    );
  }
  if (version !== 2 && version !== 3) throw new InstallError(`${file} has config version ${String(version)}; SlimFast edits versions 2 and 3`);

  const runtimes = runtimesPath(version);
  const ours = [...runtimes, RUNTIME_NAME];
  const runcSystemd = getPath(doc, [...runtimes, 'runc', 'options', 'SystemdCgroup']);
  const systemdCgroup = typeof runcSystemd === 'boolean' ? runcSystemd : undefined;
  const options: Record<string, unknown> = { BinaryName: runcBinary };
  if (systemdCgroup !== undefined) options.SystemdCgroup = systemdCgroup;
  const current = getPath(doc, ours) as Record<string, unknown> | undefined;
  const patterns = (key: string): string[] => {
    const had = current?.[key];
    const kept = Array.isArray(had) && had.every((p) => typeof p === 'string') ? (had as string[]) : [];
    return kept.includes(ANNOTATION_PATTERN) ? kept : [...kept, ANNOTATION_PATTERN];
  };
  const expected = {
    runtime_type: 'io.containerd.runc.v2',
    pod_annotations: patterns('pod_annotations'),
    container_annotations: patterns('container_annotations'),
    options,
  };

  if (isDeepStrictEqual(current, expected)) return { file, before, after: before ?? '', version, systemdCgroup };

  const removed = removeTables(text, ours);
  if (getPath(parseTomlDoc(removed, file), ours) !== undefined) {
    throw new InstallError(
      `${file} defines the ${RUNTIME_NAME} runtime in a form (inline table or dotted keys) this installer does not edit; remove it and run this again`,
    );
  }
  const quote = version === 3 ? "'" : '"';
  const header = (p: string[]) => p.map((k) => formatKey(k, quote)).join('.');
  const runcIndent = indentOf(removed, [...runtimes, 'runc']);
  const step = runcIndent ? '  ' : '';
  const indent = runcIndent ?? '';
  const list = (v: string[]) => `[${v.map(formatValue).join(', ')}]`;
  const lines = [
    `${indent}[${header(ours)}]`,
    `${indent}${step}runtime_type = ${formatValue(expected.runtime_type)}`,
    `${indent}${step}pod_annotations = ${list(expected.pod_annotations)}`,
    `${indent}${step}container_annotations = ${list(expected.container_annotations)}`,
    '',
    `${indent}${step}[${header([...ours, 'options'])}]`,
  ];
  for (const [k, v] of Object.entries(options)) lines.push(`${indent}${step}${step}${k} = ${formatValue(v as string | boolean)}`);
  const after = insertBlock(removed, lines.join('\n'), [...runtimes, 'runc']);
  verifyEdit(text, after, file, ours, expected);
  return { file, before, after, version, systemdCgroup };
}

export const CONTAINERD_HINT =
  'restart containerd (systemctl restart containerd) to load it; then use runtime class "slimfast" ' +
  '(Kubernetes: a RuntimeClass with handler: slimfast, pod annotations io.slimfast.* are passed on; nerdctl: --runtime with the slimfast-runc path)';

/** `slimfast install containerd [--config FILE]`. */
export const containerdWriter: EngineWriter<{ runc: string }> = {
  name: 'containerd',
  defaultConfig: DEFAULT_CONTAINERD_CONFIG,
  runs: 'runc',
  options: ({ flags, paths }) => ({ target: configFile(flags, DEFAULT_CONTAINERD_CONFIG), opts: { runc: paths.runc } }),
  plan: (file, read, { runc }) => [planContainerd(file, read(file), runc)],
  hint: () => CONTAINERD_HINT,
};
