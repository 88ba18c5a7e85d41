// Where this install's files are, independent of the working directory.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (or unpacked release) root: dist/common/paths.js -> ../.. */
export function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '..', '..');
}

export function installPaths() {
  const root = repoRoot();
  return {
    preload: path.join(root, 'native', 'preload', 'libslimfast.so'),
    addon: path.join(root, 'build', 'Release', 'slimfast_addon.node'),
    runc: path.join(root, 'bin', 'slimfast-runc'),
    hook: path.join(root, 'bin', 'slimfast-hook'),
    cli: path.join(root, 'bin', 'slimfast'),
    seccompKeeper: path.join(root, 'native', 'keeper', 'slimfast-seccomp-keeper'),
  };
}
