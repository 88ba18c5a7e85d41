// Running a container's command as an unprivileged user that can still reach the container's broker
// socket: the socket's directory (root-only, 0700 on the host side) is bind-mounted at a path that
// uid 65534 reaches, and the command runs there without capabilities.
import fs from 'node:fs';
import path from 'node:path';

/** setpriv to uid/gid 65534 with no groups and no capabilities. */
export const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--'];

/**
 * The command line that bind-mounts socket's directory at mnt (made if missing) and runs cmd as
 * nobody; socketAt is where the socket is seen through the mount. env: VAR=value words put between
 * the mount and setpriv (run with `env`).
 */
export function asNobodyWithSocket(
  socket: string,
  mnt: string,
  cmd: (socketAt: string) => string[],
  env: (socketAt: string) => string[] = () => [],
): string[] {
  fs.mkdirSync(mnt, { recursive: true });
  const socketAt = path.join(mnt, path.basename(socket));
  const vars = env(socketAt);
  return [
    'sh',
    '-ec',
    'mount --bind "$1" "$2"; shift 2; exec "$@"',
    'sh',
    path.dirname(socket),
    mnt,
    ...(vars.length ? ['env', ...vars] : []),
    ...NOBODY,
    ...cmd(socketAt),
  ];
}
