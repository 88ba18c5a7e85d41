// Raw host connection headers for the tests that check what a reserved port accepts: built and
// signed here (with the engine self-test's reference signer), sent from a host's namespace by
// test/apps/raw_header.py, and the receiving broker's refusal counters read before and after.
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { buildHeader, HDR_CONNECT, HDR_SYNC, KEY_HOST } from './header.js';
import { repoRoot } from '../../common/paths.js';
import type { Host, Topology } from '../../lab/topology.js';
import { PY } from './apps.js';

const RAW = path.join(repoRoot(), 'test', 'apps', 'raw_header.py');

export interface Signer {
  siphash128(key: Buffer, msg: Buffer): Buffer;
  clusterRoot(key: Buffer): Buffer;
  derivedKey(root: Buffer, ip: string): Buffer;
}

/** The reference signer of the engine's self-test (native/addon/tests/cluster_key.mjs). */
export async function loadSigner(): Promise<Signer> {
  return (await import(path.join(repoRoot(), 'native', 'addon', 'tests', 'cluster_key.mjs'))) as Signer;
}

let seq = 0n;
/** A fresh nonce ageMs old (negative: in the future), never the same twice in this process. */
function nonce(ageMs: number): bigint {
  return BigInt(Date.now() - ageMs) * 1_000_000n + (seq++ % 1_000_000n);
}

/** The tag of a header made with `key` (bytes 0..31 MAC'd), in place. */
function signWith(sign: Signer, h: Buffer, key: Buffer): Buffer {
  sign.siphash128(key, h.subarray(0, 32)).copy(h, 32);
  return h;
}

/** A CONNECT header from src to dst:dstPort, signed with `key` (none: unsigned, key_id 0), ageMs old. */
export function connectHeader(sign: Signer, o: { src: string; dst: string; dstPort: number; key?: Buffer; ageMs?: number }): Buffer {
  const h = buildHeader({
    type: HDR_CONNECT,
    dstIp: o.dst,
    dstPort: o.dstPort,
    srcIp: o.src,
    srcPort: 40000 + Number(seq % 20000n),
    keyId: o.key ? KEY_HOST : 0,
    nonce: nonce(o.ageMs ?? 0),
  });
  return o.key ? signWith(sign, h, o.key) : h;
}

/** A SYNC header signed with `key` (with a cluster key: a MAC; without one, the tag announces it). */
export function syncHeader(sign: Signer, key: Buffer, o: { announce?: boolean } = {}): Buffer {
  const h = buildHeader({ type: HDR_SYNC, keyId: KEY_HOST, nonce: nonce(0) });
  if (o.announce) {
    key.copy(h, 32);
    return h;
  }
  return signWith(sign, h, key);
}

export interface RawResult {
  data: string;
  error: string | null;
  closed: boolean;
}

/** Sends one header from `src` in host `from`'s namespace to host `to`'s reserved port. */
export async function sendHeader(topo: Topology, from: Host, to: Host, header: Buffer, src: string, mode: 'plain' | 'tfo'): Promise<RawResult> {
  const r = await topo.hostExec(from, [PY, RAW, to.ip, String(topo.port), src, header.toString('hex'), mode, '2']);
  if (r.exitCode !== 0) throw new Error(`raw_header.py failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(r.stdout) as RawResult;
}

export const REFUSALS = [
  'header_forged',
  'header_stale',
  'header_replayed',
  'header_not_member',
  'steer_bad_tag',
  'steer_stale',
  'steer_replayed',
  'steer_not_member',
];

async function refusals(topo: Topology, h: Host): Promise<Record<string, number>> {
  const k = await topo.counters(h);
  return Object.fromEntries(REFUSALS.map((n) => [n, k[n]]));
}

/** Sends the header and checks host `to` refused it (no data back, connection closed) under `counter` alone. */
export async function expectRefused(
  t: ExecutionContext,
  topo: Topology,
  from: Host,
  to: Host,
  what: string,
  header: Buffer,
  src: string,
  mode: 'plain' | 'tfo',
  counter: string,
): Promise<void> {
  const before = await refusals(topo, to);
  const r = await sendHeader(topo, from, to, header, src, mode);
  let after = before;
  await topo
    .waitFor(
      async () => {
        after = await refusals(topo, to);
        return after[counter] > before[counter];
      },
      3000,
      `${counter} to count the ${what}`,
    )
    .catch(() => {});
  t.false(r.data.includes('hello'), `${what} (${mode}): no application answered (${JSON.stringify(r)})`);
  t.true(r.closed, `${what} (${mode}): the connection was closed (${JSON.stringify(r)})`);
  const delta = Object.fromEntries(REFUSALS.map((n) => [n, after[n] - before[n]]).filter(([, d]) => d !== 0));
  t.deepEqual(delta, { [counter]: 1 }, `${what} (${mode}) counted as ${counter} only`);
}
