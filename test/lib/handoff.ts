// What the engine end-to-end tests check after a client on host 1 talked to a server on host 2:
// every connection handed out by host 1's broker and in by host 2's, and no packet on either VXLAN
// device (the traffic went host to host, not over the overlay).
import type { ExecutionContext } from 'ava';
import type { Topology } from '../../lab/topology.js';
import { type ConnrateResult, parseConnrate } from '../../bench/measure.js';

export interface HandoffSnapshot {
  o1: { tx: number; rx: number };
  o2: { tx: number; rx: number };
  k1: Record<string, number>;
  k2: Record<string, number>;
}

export async function handoffSnapshot(topo: Topology): Promise<HandoffSnapshot> {
  const [h1, h2] = topo.hosts;
  return { o1: await topo.overlayPackets(h1), o2: await topo.overlayPackets(h2), k1: await topo.counters(h1), k2: await topo.counters(h2) };
}

export async function checkHandedOff(t: ExecutionContext, topo: Topology, before: HandoffSnapshot, conns: number): Promise<void> {
  const after = await handoffSnapshot(topo);
  const delta = (k: 'k1' | 'k2', names: string[]) => names.map((n) => `${n} +${after[k][n] - before[k][n]}`).join(', ');
  t.is(
    after.k1.handed_out - before.k1.handed_out,
    conns,
    `every client connection was handed out by host 1's broker (${delta('k1', ['handed_out', 'pool_taken', 'pool_stocked', 'fallbacks', 'connect_failures', 'same_host', 'bad_msgs'])}; overlay tx +${after.o1.tx - before.o1.tx})`,
  );
  t.is(after.k2.handed_in - before.k2.handed_in, conns, "and handed in by host 2's");
  t.deepEqual(after.o1, before.o1, 'VXLAN device on host 1 carried no packets');
  t.deepEqual(after.o2, before.o2, 'VXLAN device on host 2 carried no packets');
}

/** connrate's output, checked: no error, and conns connections when given. */
export function connrateOk(t: ExecutionContext, text: string, conns?: number): ConnrateResult {
  const run = parseConnrate(text);
  t.is(run.errors, 0, run.first_error);
  if (conns !== undefined) t.is(run.conns, conns);
  return run;
}
