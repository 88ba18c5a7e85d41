// What a registration must be, in one place: the control API's RegisterContainer, the runtime
// service's hooks (in process) and a restart's records read back from the state dir all pass these
// checks. What depends on the registered set (an id or IP in use, a shared namespace) is the
// registry's; the native engine only keeps its tables consistent (it never sees a request that
// fails here).
import fs from 'node:fs';
import { ApiError } from '../common/api-errors.js';
import type { RegisterRequest } from '../common/api-types.js';
import { type Cidr, contains, formatCidr, parseIp } from '../common/cidr.js';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** sockaddr_un.sun_path holds 107 bytes and the terminating zero. */
export const SOCKET_PATH_MAX = 107;

/** A request that passed checkRequest: an id and a namespace that exists; ip still to be placed. */
export interface CheckedRequest {
  id: string;
  netns: string;
  /** As given ("" : read from the namespace). */
  ip: string;
  pid: number;
  share: boolean;
}

/** Whether id is a valid container id (a directory may be named after it). */
export function isValidId(id: string): boolean {
  return ID_RE.test(id);
}

export function checkId(id: string | undefined): string {
  if (!id) throw new ApiError('ID_INVALID', 'a container id is required');
  if (!ID_RE.test(id)) {
    throw new ApiError('ID_INVALID', `container id "${id}" is invalid: use 1-128 characters from [A-Za-z0-9_.-], starting with a letter or digit`);
  }
  return id;
}

/** The request's own fields: a valid id, an existing namespace path, a pid if any. */
export function checkRequest(req: RegisterRequest): CheckedRequest {
  const id = checkId(req.id);
  if (!req.netns) throw new ApiError('NETNS_REQUIRED', 'a network namespace path is required (--netns)');
  if (!fs.existsSync(req.netns)) throw new ApiError('NETNS_MISSING', `network namespace ${req.netns} does not exist`);
  const pid = req.pid ?? 0;
  if (!Number.isInteger(pid) || pid < 0) throw new ApiError('PID_INVALID', `process id ${pid} of container "${id}" is not a process id`);
  return { id, netns: req.netns, ip: req.ip ?? '', pid, share: req.share ?? false };
}

/** The container's IP, given or read from its namespace: an IPv4 address in this host's subnet. */
export function checkIp(ip: string, subnet: Cidr): number {
  let n: number;
  try {
    n = parseIp(ip);
  } catch (err) {
    throw new ApiError('IP_INVALID', `container IP: ${(err as Error).message}`);
  }
  if (!contains(subnet, n)) {
    throw new ApiError(
      'IP_OUTSIDE_SUBNET',
      `container IP ${ip} is outside this host's subnet ${formatCidr(subnet)}; fix the IP or start the daemon with the right --subnet/--peers`,
    );
  }
  return n;
}

/** The container's broker socket must fit a Unix socket address. */
export function checkSocketPath(socket: string): void {
  if (Buffer.byteLength(socket) > SOCKET_PATH_MAX) {
    throw new ApiError('SOCKET_PATH_TOO_LONG', `socket path ${socket} is too long for a Unix socket; use a shorter --state-dir`);
  }
}
