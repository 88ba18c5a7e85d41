// Where things are in the broker's state directory: control socket, pid file, registered containers,
// per-container broker socket directories, the runtime service's and the seccomp agent's sockets. The
// broker, the CLI, the OCI hook and slimfast-runc all find them here (the broker's own hold on the
// directory, claiming it at start and writing its files, is broker/state-dir.ts).
import crypto from 'node:crypto';
import path from 'node:path';

export interface StateLayout {
  dir: string;
  controlSocket: string;
  pidFile: string;
  /** What brokers before registrations/ kept their registrations in (read once, then removed). */
  containersFile: string;
  /** One file per registration (ID.json): made when a container registers, removed when it goes. */
  registrationsDir: string;
  /** Last membership seen in etcd (a start while etcd is unreachable serves it). */
  membershipFile: string;
  /** Last policy read from etcd (a start while etcd is unreachable enforces it). */
  policyFile: string;
  /** The cluster key shared through etcd, as last read there (mode 600; a start while etcd is
   *  unreachable signs with it). */
  clusterKeyFile: string;
  containersDir: string;
  /** The seccomp agent's socket: runc sends containers' seccomp notify fds there (linux.seccomp.listenerPath). */
  seccompSocket: string;
  /** slimfast-seccomp-keeper's socket for the broker (the keeper owns seccompSocket when it runs). */
  seccompKeeperSocket: string;
  /** The runtime service: slimfast-runc and slimfast-hook hand it their work (runtime-service/). */
  runtimeSocket: string;
}

export function stateLayout(dir: string): StateLayout {
  const abs = path.resolve(dir);
  return {
    dir: abs,
    controlSocket: path.join(abs, 'slimfast.sock'),
    pidFile: path.join(abs, 'slimfast.pid'),
    containersFile: path.join(abs, 'containers.json'),
    registrationsDir: path.join(abs, 'registrations'),
    membershipFile: path.join(abs, 'membership.json'),
    policyFile: path.join(abs, 'policy.json'),
    clusterKeyFile: path.join(abs, 'cluster-key.json'),
    containersDir: path.join(abs, 'containers'),
    seccompSocket: path.join(abs, 'seccomp.sock'),
    seccompKeeperSocket: path.join(abs, 'seccomp-keeper.sock'),
    runtimeSocket: path.join(abs, 'runtime.sock'),
  };
}

/** True when a process with this pid exists (EPERM: exists, not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The directory of a container's broker socket (also bind-mounted into the container by slimfast-runc). */
export function containerSocketDir(layout: StateLayout, id: string): string {
  const h = crypto.createHash('sha256').update(id).digest('hex').slice(0, 12);
  return path.join(layout.containersDir, h);
}
