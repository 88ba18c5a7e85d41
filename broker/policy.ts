// Network policy documents: an ordered allow/deny list by (source, destination, port), from a
// file (--policy) or the etcd key <prefix>/policy. Parsed here into the engine's form
// (NativeEngine.setPolicy); the engine checks it on every connect (docs/protocol.md "Policy").
//
//   {"default": "allow",
//    "rules": [{"action": "deny", "from": "10.200.1.0/24", "to": "10.200.2.5/32", "ports": "6379"}]}
//
// The first rule that matches decides; none: the default. `from`/`to` are prefixes (a bare
// address is a /32; "*" or left out: anywhere), `ports` is "*" (or left out: every port) or a
// comma list of ports and ranges, "80,443,8000-8100".
import { contains, type Cidr, formatCidr, parseCidr, parseIp } from '../common/cidr.js';

export type Action = 'allow' | 'deny';

/** One rule as the engine takes it (a document rule with a port list becomes several). */
export interface EngineRule {
  action: Action;
  from: string;
  to: string;
  portLo: number;
  portHi: number;
}

export interface EnginePolicy {
  default: Action;
  rules: EngineRule[];
}

export interface Policy {
  /** The engine's form. */
  engine: EnginePolicy;
  /** Rules in the document (before port lists are expanded). */
  ruleCount: number;
}

const RULE_KEYS = new Set(['action', 'from', 'to', 'ports']);
const EXAMPLE = '{"default":"allow","rules":[{"action":"deny","from":"10.200.1.0/24","to":"10.200.2.5/32","ports":"6379"}]}';

class PolicyError extends Error {}

function action(v: unknown, where: string): Action {
  if (v !== 'allow' && v !== 'deny') throw new PolicyError(`${where} must be "allow" or "deny", got ${JSON.stringify(v)}`);
  return v;
}

function prefix(v: unknown, where: string): Cidr {
  if (v === undefined || v === '*') return { network: 0, prefix: 0 };
  if (typeof v !== 'string') throw new PolicyError(`${where} must be a string like "10.200.1.0/24", got ${JSON.stringify(v)}`);
  try {
    return v.includes('/') ? parseCidr(v) : { network: parseIp(v), prefix: 32 };
  } catch (err) {
    throw new PolicyError(`${where}: ${(err as Error).message}`);
  }
}

function ports(v: unknown, where: string): [number, number][] {
  if (v === undefined || v === '*') return [[0, 65535]];
  if (typeof v === 'number') v = String(v);
  if (typeof v !== 'string') throw new PolicyError(`${where} must be a string like "80,443,8000-8100" or "*", got ${JSON.stringify(v)}`);
  const text = v;
  const bad = () => new PolicyError(`${where}: "${text}" is not a port list (use "*", "6379", "80,443" or "8000-8100"; ports 0-65535)`);
  const num = (s: string | undefined): number => {
    if (s === undefined || !/^\d{1,5}$/.test(s) || Number(s) > 65535) throw bad();
    return Number(s);
  };
  return text.split(',').map((part): [number, number] => {
    const ends = part.trim().split('-');
    if (ends.length > 2) throw bad();
    const [a, b] = [num(ends[0]), num(ends[ends.length - 1])];
    if (a > b) throw new PolicyError(`${where}: the range "${part.trim()}" runs backwards; write ${b}-${a}`);
    return [a, b];
  });
}

/** Parses a policy document; errors name the source, the rule and the field, and what to write. */
export function parsePolicy(text: string, source: string): Policy {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source}: not valid JSON (${(err as Error).message}); a policy looks like ${EXAMPLE}`);
  }
  try {
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new PolicyError(`expected an object like ${EXAMPLE}`);
    const d = doc as Record<string, unknown>;
    for (const k of Object.keys(d)) {
      if (k !== 'default' && k !== 'rules') throw new PolicyError(`unknown field "${k}" (a policy has "default" and "rules")`);
    }
    const def = d.default === undefined ? 'allow' : action(d.default, '"default"');
    const list = d.rules ?? [];
    if (!Array.isArray(list)) throw new PolicyError(`"rules" must be an array of {"action","from","to","ports"}`);
    const rules: EngineRule[] = [];
    list.forEach((r: unknown, i) => {
      const where = `rules[${i}]`;
      if (typeof r !== 'object' || r === null || Array.isArray(r))
        throw new PolicyError(`${where} must be an object like {"action":"deny","to":"10.200.2.5","ports":"6379"}`);
      const o = r as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        if (!RULE_KEYS.has(k)) throw new PolicyError(`${where}: unknown field "${k}" (a rule has "action", "from", "to" and "ports")`);
      }
      const a = action(o.action, `${where}.action`);
      const from = formatCidr(prefix(o.from, `${where}.from`));
      const to = formatCidr(prefix(o.to, `${where}.to`));
      for (const [portLo, portHi] of ports(o.ports, `${where}.ports`)) rules.push({ action: a, from, to, portLo, portHi });
    });
    return { engine: { default: def, rules }, ruleCount: list.length };
  } catch (err) {
    if (err instanceof PolicyError) throw new Error(`${source}: ${err.message}`);
    throw err;
  }
}

/** What the engine decides for a connect from src to dst:port (the same first-match rule). */
export function allows(p: EnginePolicy, src: string, dst: string, port: number): boolean {
  const s = parseIp(src);
  const d = parseIp(dst);
  for (const r of p.rules) {
    if (contains(parseCidr(r.from), s) && contains(parseCidr(r.to), d) && port >= r.portLo && port <= r.portHi) return r.action === 'allow';
  }
  return p.default === 'allow';
}

/** "3 rules, default deny" */
export function describePolicy(p: Policy): string {
  return `${p.ruleCount} rule${p.ruleCount === 1 ? '' : 's'}, default ${p.engine.default}`;
}
