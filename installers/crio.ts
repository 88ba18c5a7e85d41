// `slimfast install crio`: a CRI-O runtime handler "slimfast" running slimfast-runc, as a drop-in file
// (default /etc/crio/crio.conf.d/99-slimfast.conf). An existing file is edited as text, its other tables
// kept; the result is checked with a TOML parser.
import { isDeepStrictEqual } from 'node:util';
import { type EngineWriter, configFile } from './engine.js';
import type { FileChange } from './file-change.js';
import { formatValue, getPath, insertBlock, parseTomlDoc, removeTables, verifyEdit } from './toml-edit.js';

export const DEFAULT_CRIO_DROPIN = '/etc/crio/crio.conf.d/99-slimfast.conf';
const HANDLER = ['crio', 'runtime', 'runtimes', 'slimfast'];

export function crioHandler(runcBinary: string): Record<string, string> {
  // runtime_root: runc's own default, so `runc list` shows these containers too.
  return { runtime_path: runcBinary, runtime_type: 'oci', runtime_root: '/run/runc' };
}

export function planCrio(file: string, before: string | undefined, runcBinary: string): FileChange {
  const expected = crioHandler(runcBinary);
  const text = before ?? '# SlimFast runtime handler, written by "slimfast install crio". Remove this file to uninstall.\n';
  if (before !== undefined && before.trim() !== '') {
    const doc = parseTomlDoc(before, file);
    if (isDeepStrictEqual(getPath(doc, HANDLER), expected)) return { file, before, after: before };
  }
  const removed = removeTables(text, HANDLER);
  const lines = [`[${HANDLER.join('.')}]`, ...Object.entries(expected).map(([k, v]) => `${k} = ${formatValue(v)}`)];
  const after = insertBlock(removed, lines.join('\n'), ['crio', 'runtime', 'runtimes']);
  verifyEdit(before ?? '', after, file, HANDLER, expected);
  return { file, before, after };
}

export const CRIO_HINT =
  'reload CRI-O (systemctl reload crio) to load it; then use runtime handler "slimfast" (Kubernetes: a RuntimeClass with handler: slimfast)';

/** `slimfast install crio [--config FILE]`. */
export const crioWriter: EngineWriter<{ runc: string }> = {
  name: 'crio',
  defaultConfig: DEFAULT_CRIO_DROPIN,
  runs: 'runc',
  options: ({ flags, paths }) => ({ target: configFile(flags, DEFAULT_CRIO_DROPIN), opts: { runc: paths.runc } }),
  plan: (file, read, { runc }) => [planCrio(file, read(file), runc)],
  hint: () => CRIO_HINT,
};
