// Host membership from a static peers file: {"hosts":[{"ip":"192.168.77.1","subnet":"10.200.1.0/24"}, …]}.
import fs from 'node:fs';
import { type Cidr, coveringCidr, formatCidr, overlaps, parseCidr, parseIp } from '../common/cidr.js';

export interface HostEntry {
  ip: string;
  subnet: string;
  port: number;
  cidr: Cidr;
}

export interface Membership {
  /** Every host, this one included. */
  hosts: HostEntry[];
  /** The overlay network: the file's "overlay" field, or the smallest prefix covering all subnets. */
  overlay: string;
}

export function parsePeers(text: string, source: string, defaultPort: number): Membership {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid JSON (${(err as Error).message}); expected {"hosts":[{"ip":…,"subnet":…}]}`);
  }
  const hostsRaw = (doc as { hosts?: unknown })?.hosts;
  if (!Array.isArray(hostsRaw) || hostsRaw.length === 0) {
    throw new Error(`${source}: needs a non-empty "hosts" array of {"ip":"…","subnet":"…"}`);
  }
  const hosts: HostEntry[] = hostsRaw.map((h: unknown, i: number) => {
    const entry = h as { ip?: unknown; subnet?: unknown; port?: unknown };
    if (typeof entry?.ip !== 'string' || typeof entry?.subnet !== 'string') {
      throw new Error(`${source}: hosts[${i}] needs string fields "ip" and "subnet"`);
    }
    const port = entry.port === undefined ? defaultPort : Number(entry.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`${source}: hosts[${i}].port must be 1-65535`);
    }
    try {
      parseIp(entry.ip);
      return { ip: entry.ip, subnet: entry.subnet, port, cidr: parseCidr(entry.subnet) };
    } catch (err) {
      throw new Error(`${source}: hosts[${i}]: ${(err as Error).message}`);
    }
  });
  for (let i = 0; i < hosts.length; i++) {
    for (let j = i + 1; j < hosts.length; j++) {
      if (hosts[i].ip === hosts[j].ip) throw new Error(`${source}: host ${hosts[i].ip} is listed twice`);
      if (overlaps(hosts[i].cidr, hosts[j].cidr)) {
        throw new Error(`${source}: subnets ${hosts[i].subnet} (${hosts[i].ip}) and ${hosts[j].subnet} (${hosts[j].ip}) overlap`);
      }
    }
  }
  const overlayField = (doc as { overlay?: unknown }).overlay;
  let overlay: string;
  if (overlayField === undefined) {
    overlay = formatCidr(coveringCidr(hosts.map((h) => h.cidr)));
  } else if (typeof overlayField === 'string') {
    const o = parseCidr(overlayField);
    for (const h of hosts) {
      if (!overlaps(o, h.cidr) || o.prefix > h.cidr.prefix) {
        throw new Error(`${source}: subnet ${h.subnet} is not inside the overlay ${overlayField}`);
      }
    }
    overlay = formatCidr(o);
  } else {
    throw new Error(`${source}: "overlay" must be a string like "10.200.0.0/16"`);
  }
  return { hosts, overlay };
}

export function loadPeersFile(file: string, defaultPort: number): Membership {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read peers file ${file}: ${(err as Error).message}`);
  }
  return parsePeers(text, file, defaultPort);
}
