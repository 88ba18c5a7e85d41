// Reading a container's overlay IP from its network namespace.
import { execa } from 'execa';

interface IpAddrJson {
  ifname: string;
  addr_info?: { family: string; local: string; scope: string }[];
}

/** First global-scope IPv4 address in the namespace, ignoring loopback. */
export async function readNetnsIp(netnsPath: string): Promise<string> {
  const r = await execa('nsenter', [`--net=${netnsPath}`, 'ip', '-j', '-4', 'addr', 'show'], { reject: false, timeout: 5000 });
  if (r.exitCode !== 0) {
    throw new Error(`cannot enter network namespace ${netnsPath}: ${r.stderr.trim() || r.shortMessage}; pass --ip or check the path`);
  }
  const links = JSON.parse(r.stdout || '[]') as IpAddrJson[];
  for (const link of links) {
    if (link.ifname === 'lo') continue;
    for (const a of link.addr_info ?? []) {
      if (a.family === 'inet' && a.scope === 'global') return a.local;
    }
  }
  throw new Error(`network namespace ${netnsPath} has no global IPv4 address yet; pass --ip`);
}
