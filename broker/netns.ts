// Reading a container's overlay IP from its network namespace, through the addon (loaded in one place,
// native-engine.ts). Telling namespaces apart without entering them is common/netns.ts.
import { ApiError } from '../common/api-errors.js';
import { loadAddon } from './native-engine.js';

/**
 * First global-scope IPv4 address in the namespace (not loopback, not link-local). The addon reads it
 * from a thread that enters the namespace: no nsenter and ip processes on a container's start path.
 */
export async function readNetnsIp(netnsPath: string): Promise<string> {
  const r = loadAddon().netnsIpv4(netnsPath);
  if (r.error !== undefined)
    throw new ApiError('NETNS_UNREADABLE', `cannot enter network namespace ${netnsPath}: ${r.error}; pass --ip or check the path`);
  if (!r.ip) throw new ApiError('NETNS_NO_IPV4', `network namespace ${netnsPath} has no global IPv4 address yet; pass --ip`);
  return r.ip;
}
