// `node dist/lab/up.js [containers-per-host…]`: brings up the emulated hosts with brokers and
// registered containers, prints how to run programs in them, and tears everything down on Ctrl-C.
import { Topology } from './topology.js';

const perHost = process.argv.slice(2).map(Number);
const topo = await Topology.create({ containers: perHost.length ? perHost : [1, 1] });
for (const h of topo.hosts) console.log(`host ${h.ns} ${h.ip} subnet ${h.subnet} state ${h.stateDir}`);
for (const c of topo.containers) {
  console.log(`container ${c.name} ${c.ip}: ip ${topo.argv(c, ['CMD']).join(' ')}`);
}
console.log('ready; Ctrl-C to tear down');
const stop = () => {
  topo.destroy().finally(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
setInterval(() => {}, 1 << 30);
