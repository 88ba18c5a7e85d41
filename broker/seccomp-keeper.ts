// Starts slimfast-seccomp-keeper (native/keeper/) for a state dir: the small process that owns
// runc's seccomp listenerPath and keeps containers' notify fds while the broker restarts
// (native/include/slimfast_keeper.h). It stays when the broker stops and exits by itself once no
// container uses it; a start while one runs for the same state dir finds it and does nothing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { installPaths } from '../common/paths.js';
import type { StateLayout } from '../common/state-dir.js';

export interface KeeperStart {
  /** The keeper's broker socket when it runs; undefined when it could not be started. */
  socket?: string;
  /** What happened, for the log. */
  note: string;
}

/** SLIMFAST_SECCOMP_KEEPER names another build of the keeper (the tests run its sanitizer build). */
export function startSeccompKeeper(layout: StateLayout, binary = process.env.SLIMFAST_SECCOMP_KEEPER || installPaths().seccompKeeper): KeeperStart {
  if (!fs.existsSync(binary)) {
    return {
      note: `seccomp keeper ${binary} is missing (run \`npm run build:native\`): seccomp containers lose SlimFast until they restart if this broker restarts`,
    };
  }
  const r = spawnSync(binary, [layout.seccompSocket, layout.seccompKeeperSocket, '--log', path.join(layout.dir, 'seccomp-keeper.log')], {
    encoding: 'utf8',
    timeout: 5000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr || `exit status ${r.status}`).trim();
    return { note: `seccomp keeper did not start (${why}): seccomp containers lose SlimFast until they restart if this broker restarts` };
  }
  return { socket: layout.seccompKeeperSocket, note: r.stdout.trim() };
}
