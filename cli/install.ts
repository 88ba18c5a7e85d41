// `slimfast install podman|docker|containerd|crio`: configures an engine to run containers on SlimFast.
// Idempotent; an existing file is copied to FILE.slimfast-backup-<timestamp> before it changes;
// --dry-run prints the change as a diff and writes nothing. The writers live in runtime-wrapper/install/.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { installPaths } from '../common/paths.js';
import { type ApplyResult, type FileChange, InstallError, applyChange, describe, readIfExists } from '../runtime-wrapper/install/common.js';
import { CONTAINERD_HINT, DEFAULT_CONTAINERD_CONFIG, planContainerd } from '../runtime-wrapper/install/containerd.js';
import { CRIO_HINT, DEFAULT_CRIO_DROPIN, planCrio } from '../runtime-wrapper/install/crio.js';
import { DEFAULT_DOCKER_CONFIG, DOCKER_HINT, DOCKER_RESTART_HINT, planDocker } from '../runtime-wrapper/install/docker.js';
import { PODMAN_HINT, planPodman } from '../runtime-wrapper/install/podman.js';
import { DEFAULT_SYSTEMD_UNIT, SYSTEMD_HINT, planSystemd } from '../runtime-wrapper/install/systemd.js';

export const INSTALL_USAGE = `  install podman --hooks-dir DIR [--state-dir DIR] [--when-annotation KEY=REGEX] [--dry-run]
                                               write SlimFast's OCI hooks (precreate, createRuntime) there
  install docker [--config /etc/docker/daemon.json] [--subnet CIDR] [--dry-run]
                                               add the "slimfast" runtime (docker run --runtime slimfast);
                                               --subnet (this host's SlimFast subnet) also sets "bip" to it
  install containerd [--config /etc/containerd/config.toml] [--dry-run]
                                               add the "slimfast" runtime class (runc shim running slimfast-runc)
  install crio [--config /etc/crio/crio.conf.d/99-slimfast.conf] [--dry-run]
                                               add the "slimfast" runtime handler
  install systemd [--unit /etc/systemd/system/slimfast.service] [--dry-run] -- --host-ip IP [DAEMON FLAGS…]
                                               a service running the broker (restart on failure, state in /run/slimfast)
`;

const ENGINES = ['podman', 'docker', 'containerd', 'crio', 'systemd'];

function usageError(msg: string): number {
  process.stderr.write(`slimfast install: ${msg}\n\nusage:\n${INSTALL_USAGE}`);
  return 2;
}

export async function install(args: string[]): Promise<number> {
  const [engine, ...restArgs] = args;
  let rest = restArgs;
  if (!engine || !ENGINES.includes(engine)) return usageError(engine ? `unknown engine "${engine}": use ${ENGINES.join(', ')}` : 'name the engine');
  let v: Record<string, string | boolean | undefined>;
  // install systemd: what follows "--" are the daemon's own flags.
  const dashes = rest.indexOf('--');
  const daemonArgs = engine === 'systemd' && dashes >= 0 ? rest.slice(dashes + 1) : [];
  if (engine === 'systemd' && dashes >= 0) rest = rest.slice(0, dashes);
  try {
    v = parseArgs({
      args: rest,
      options: {
        config: { type: 'string' },
        unit: { type: 'string' },
        'hooks-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        'when-annotation': { type: 'string' },
        subnet: { type: 'string' },
        'dry-run': { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return usageError((err as Error).message);
  }
  if (v.help) {
    process.stdout.write(`usage:\n${INSTALL_USAGE}`);
    return 0;
  }
  const dryRun = v['dry-run'] === true;
  const paths = installPaths();
  let changes: FileChange[];
  let hint: string;
  try {
    if (engine !== 'docker' && v.subnet !== undefined) return usageError('--subnet is an option of install docker only');
    if (engine !== 'systemd' && v.unit !== undefined) return usageError('--unit is an option of install systemd only');
    if (engine === 'systemd') {
      for (const bad of ['config', 'hooks-dir', 'state-dir', 'when-annotation']) if (v[bad] !== undefined) return usageError(`--${bad} is not an option of install systemd`);
      const file = (v.unit as string | undefined) ?? DEFAULT_SYSTEMD_UNIT;
      changes = [planSystemd(file, readIfExists(file), { node: process.execPath, cli: paths.cli, daemonArgs })];
      hint = SYSTEMD_HINT;
    } else if (engine === 'podman') {
      for (const bad of ['config']) if (v[bad] !== undefined) return usageError(`--${bad} is not an option of install podman`);
      const hooksDir = v['hooks-dir'];
      if (typeof hooksDir !== 'string' || hooksDir === '') return usageError('install podman needs --hooks-dir DIR');
      let whenAnnotation: [string, string] | undefined;
      if (typeof v['when-annotation'] === 'string') {
        const eq = v['when-annotation'].indexOf('=');
        if (eq <= 0) return usageError('--when-annotation takes KEY=REGEX');
        whenAnnotation = [v['when-annotation'].slice(0, eq), v['when-annotation'].slice(eq + 1)];
      }
      changes = planPodman(hooksDir, readIfExists, { hook: paths.hook, stateDir: v['state-dir'] as string | undefined, whenAnnotation });
      hint = PODMAN_HINT;
      if (!fs.existsSync(paths.hook)) process.stderr.write(`slimfast install: warning: ${paths.hook} is not built yet (npm run build)\n`);
    } else {
      for (const bad of ['hooks-dir', 'state-dir', 'when-annotation']) if (v[bad] !== undefined) return usageError(`--${bad} is an option of install podman only`);
      const file =
        (v.config as string | undefined) ?? (engine === 'docker' ? DEFAULT_DOCKER_CONFIG : engine === 'containerd' ? DEFAULT_CONTAINERD_CONFIG : DEFAULT_CRIO_DROPIN);
      const before = readIfExists(file);
      if (engine === 'docker') {
        const change = planDocker(file, before, paths.runc, { subnet: v.subnet as string | undefined });
        changes = [change];
        hint = change.restart ? DOCKER_RESTART_HINT : DOCKER_HINT;
        if (change.note) process.stderr.write(`slimfast install docker: ${change.note}\n`);
      } else if (engine === 'containerd') {
        changes = [planContainerd(file, before, paths.runc)];
        hint = CONTAINERD_HINT;
      } else {
        changes = [planCrio(file, before, paths.runc)];
        hint = CRIO_HINT;
      }
      if (!fs.existsSync(paths.runc)) process.stderr.write(`slimfast install: warning: ${paths.runc} is not built yet (npm run build)\n`);
    }
  } catch (err) {
    if (err instanceof InstallError) {
      process.stderr.write(`slimfast install ${engine}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const results: ApplyResult[] = changes.map((c) => applyChange(c, { dryRun }));
  for (const r of results) process.stdout.write(`${describe(r, dryRun).replace(/\n$/, '')}\n`);
  if (results.some((r) => r.changed)) process.stdout.write(dryRun ? '(dry run: nothing was written)\n' : `${hint}\n`);
  return 0;
}
