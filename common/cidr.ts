// IPv4 addresses and prefixes: parsing, containment and longest-prefix match.

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
}

export function parseIp(text: string): number {
  const parts = text.trim().split('.');
  if (parts.length !== 4) throw new Error(`"${text}" is not an IPv4 address (expected a.b.c.d)`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) {
      throw new Error(`"${text}" is not an IPv4 address (each part must be 0-255)`);
    }
    value = value * 256 + Number(part);
  }
  return value >>> 0;
}

export function formatIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function parseCidr(text: string): Cidr {
  const [addr, len, extra] = text.trim().split('/');
  if (extra !== undefined || len === undefined || !/^\d{1,2}$/.test(len) || Number(len) > 32) {
    throw new Error(`"${text}" is not an IPv4 prefix (expected a.b.c.d/len with len 0-32)`);
  }
  const prefix = Number(len);
  const ip = parseIp(addr);
  const network = (ip & mask(prefix)) >>> 0;
  if (network !== ip) {
    throw new Error(`"${text}" has host bits set; did you mean ${formatIp(network)}/${prefix}?`);
  }
  return { network, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.network)}/${c.prefix}`;
}

export function contains(c: Cidr, ip: number): boolean {
  return (ip & mask(c.prefix)) >>> 0 === c.network;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  return (a.network & mask(prefix)) >>> 0 === (b.network & mask(prefix)) >>> 0;
}

/** The entry whose prefix contains ip with the longest prefix length, if any. */
export function longestPrefixMatch<T extends { cidr: Cidr }>(entries: readonly T[], ip: number): T | undefined {
  let best: T | undefined;
  for (const e of entries) {
    if (contains(e.cidr, ip) && (!best || e.cidr.prefix > best.cidr.prefix)) best = e;
  }
  return best;
}

/** The smallest prefix covering every given prefix (the overlay network when none is configured). */
export function coveringCidr(list: readonly Cidr[]): Cidr {
  if (list.length === 0) throw new Error('cannot cover an empty list of prefixes');
  let prefix = Math.min(...list.map((c) => c.prefix));
  const first = list[0].network;
  while (prefix > 0 && !list.every((c) => (c.network & mask(prefix)) >>> 0 === (first & mask(prefix)) >>> 0)) {
    prefix--;
  }
  return { network: (first & mask(prefix)) >>> 0, prefix };
}
