// `slimfast install docker`: runtimes.slimfast = {"path": slimfast-runc} in daemon.json, so that
// `docker run --runtime slimfast` works. Other keys, their order and the indentation are kept.
import { detectIndent, parseLossless, stringifyLossless } from '../json-lossless.js';
import { type FileChange, InstallError } from './common.js';

export const DEFAULT_DOCKER_CONFIG = '/etc/docker/daemon.json';

export function planDocker(file: string, before: string | undefined, runcBinary: string): FileChange {
  const text = before ?? '';
  let doc: Record<string, unknown> = {};
  if (text.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = parseLossless(text);
    } catch (err) {
      throw new InstallError(`${file} is not valid JSON (${(err as Error).message}); fix it first (it was left unchanged)`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InstallError(`${file} is not a JSON object; fix it first (it was left unchanged)`);
    doc = parsed as Record<string, unknown>;
  }
  const runtimes = (doc.runtimes ??= {});
  if (typeof runtimes !== 'object' || runtimes === null || Array.isArray(runtimes)) {
    throw new InstallError(`"runtimes" in ${file} is not a JSON object; fix it first (it was left unchanged)`);
  }
  const r = runtimes as Record<string, unknown>;
  const existing = r.slimfast;
  if (existing !== undefined && (typeof existing !== 'object' || existing === null || Array.isArray(existing))) {
    throw new InstallError(`"runtimes.slimfast" in ${file} is not a JSON object; fix it first (it was left unchanged)`);
  }
  // Keep what else an administrator put there (e.g. runtimeArgs); set the path.
  r.slimfast = { ...(existing as Record<string, unknown> | undefined), path: runcBinary };
  if (before !== undefined && (existing as { path?: unknown } | undefined)?.path === runcBinary) return { file, before, after: before };
  const after = stringifyLossless(doc, detectIndent(text) || 2) + '\n';
  return { file, before, after };
}

export const DOCKER_HINT = 'make dockerd load it (systemctl reload docker, or kill -HUP the dockerd pid); then: docker run --runtime slimfast …';
