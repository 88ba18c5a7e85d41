// `slimfast install podman|docker|containerd|crio|systemd`: configures an engine to run containers on
// SlimFast. Idempotent; an existing file is copied to FILE.slimfast-backup-<timestamp> before it
// changes; --dry-run prints the change as a diff and writes nothing. The engine writers are installers/,
// each behind the same interface (installers/engine.ts); this picks one from their table.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { installPaths } from '../common/paths.js';
import { InstallUsageError } from '../installers/engine.js';
import { type ApplyResult, type FileChange, InstallError, applyChange, describe, readIfExists } from '../installers/file-change.js';
import { ENGINE_WRITERS, engineWriter } from '../installers/index.js';

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

const ENGINES = ENGINE_WRITERS.map((w) => w.name);

/** Flags one engine alone takes, refused for the others before a writer reads its own (in this order). */
const ONE_ENGINE_FLAGS: [flag: string, engine: string][] = [
  ['subnet', 'docker'],
  ['unit', 'systemd'],
];

function usageError(msg: string): number {
  process.stderr.write(`slimfast install: ${msg}\n\nusage:\n${INSTALL_USAGE}`);
  return 2;
}

export async function install(args: string[]): Promise<number> {
  const [engine, ...restArgs] = args;
  let rest = restArgs;
  const writer = engine ? engineWriter(engine) : undefined;
  if (!engine || !writer) return usageError(engine ? `unknown engine "${engine}": use ${ENGINES.join(', ')}` : 'name the engine');
  let v: Record<string, string | boolean | undefined>;
  // install systemd: what follows "--" are the daemon's own flags.
  const dashes = rest.indexOf('--');
  const daemonArgs = writer.takesDaemonArgs && dashes >= 0 ? rest.slice(dashes + 1) : [];
  if (writer.takesDaemonArgs && dashes >= 0) rest = rest.slice(0, dashes);
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
  try {
    for (const [flag, owner] of ONE_ENGINE_FLAGS)
      if (engine !== owner && v[flag] !== undefined) return usageError(`--${flag} is an option of install ${owner} only`);
    const { target, opts } = writer.options({ flags: v, daemonArgs, paths, node: process.execPath });
    changes = writer.plan(target, readIfExists, opts);
    for (const c of changes) if (c.note) process.stderr.write(`slimfast install ${engine}: ${c.note}\n`);
    const program = writer.runs && paths[writer.runs];
    if (program && !fs.existsSync(program)) process.stderr.write(`slimfast install: warning: ${program} is not built yet (npm run build)\n`);
  } catch (err) {
    if (err instanceof InstallUsageError) return usageError(err.message);
    if (err instanceof InstallError) {
      process.stderr.write(`slimfast install ${engine}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const results: ApplyResult[] = changes.map((c) => applyChange(c, { dryRun }));
  for (const r of results) process.stdout.write(`${describe(r, dryRun).replace(/\n$/, '')}\n`);
  if (results.some((r) => r.changed)) process.stdout.write(dryRun ? '(dry run: nothing was written)\n' : `${writer.hint(changes)}\n`);
  return 0;
}
