// Prometheus metrics of one broker (`slimfast daemon --metrics HOST:PORT`, served at /metrics),
// on prom-client. Every value is read when scraped: counters and gauges from the native engine's
// cumulative counters, the handoff latency histograms from its fixed buckets, the rest from the
// control plane. Nothing is counted on the hot path here.
import http from 'node:http';
import net from 'node:net';
import { Counter, Gauge, Registry, type MetricValueWithName } from 'prom-client';
import type { EngineLimits, HandoffLatency } from './native-engine.js';

export interface MetricsAddress {
  host: string;
  port: number;
}

/** HOST:PORT with an IP address (IPv6 in brackets) and a port 1-65535; throws naming the flag. */
export function parseMetricsAddress(text: string): MetricsAddress {
  const bad = (why: string) => new Error(`--metrics "${text}": ${why}; expected HOST:PORT with an IP address, e.g. 127.0.0.1:9480 or [::1]:9480`);
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([^:]+)$/.exec(text);
  if (!m) throw bad('not HOST:PORT');
  const host = m[1] ?? m[2];
  if (net.isIP(host) === 0 || (m[1] !== undefined && net.isIP(host) !== 6)) throw bad(`"${host}" is not an IP address`);
  const port = Number(m[3]);
  if (!/^\d+$/.test(m[3]) || port < 1 || port > 65535) throw bad(`port "${m[3]}" is not 1-65535`);
  return { host, port };
}

/** What the metrics read, each time they are scraped; null: not known yet (the broker is starting). */
export interface MetricsSource {
  counters(): Record<string, number> | null;
  latency(): HandoffLatency | null;
  /** Peers in this host's view, and how many of them have their listener table in sync. */
  peers(): { total: number; synced: number };
  /** With etcd membership (else never called): whether it answers. */
  etcd?: () => { up: boolean } | null;
  /** The engine's limits (EngineLimits), null before it runs. */
  limits?: () => EngineLimits | null;
}

type Labels = Record<string, string>;

/** Counters whose value is a cumulative engine counter (or a sum of them), per label set. */
function engineCounter(reg: Registry, src: MetricsSource, name: string, help: string, read: (c: Record<string, number>) => [Labels, number][]) {
  const labelNames = [...new Set(read({}).flatMap(([l]) => Object.keys(l)))];
  return new Counter({
    name,
    help,
    labelNames,
    registers: [reg],
    collect() {
      const c = src.counters();
      this.reset();
      if (!c) return;
      for (const [labels, v] of read(c)) this.inc(labels, v || 0);
    },
  });
}

function engineGauge(reg: Registry, src: MetricsSource, name: string, help: string, key: string) {
  return new Gauge({
    name,
    help,
    registers: [reg],
    collect() {
      const c = src.counters();
      if (c) this.set(c[key] ?? 0);
    },
  });
}

/** A histogram whose buckets are the engine's: prom-client's Histogram cannot be set from outside,
 *  so this registers an object that renders the same way. */
class EngineHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum' as const;
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly src: MetricsSource,
  ) {}
  get(): { name: string; help: string; type: string; aggregator: 'sum'; values: MetricValueWithName<string>[] } {
    const lat = this.src.latency();
    const values: MetricValueWithName<string>[] = [];
    if (lat) {
      for (const side of ['client', 'server'] as const) {
        const h = side === 'client' ? lat.out : lat.in;
        lat.boundsSeconds.forEach((le, i) => {
          values.push({ metricName: `${this.name}_bucket`, labels: { side, le }, value: h.buckets[i] });
        });
        values.push({ metricName: `${this.name}_bucket`, labels: { side, le: '+Inf' }, value: h.count });
        values.push({ metricName: `${this.name}_sum`, labels: { side }, value: h.sumSeconds });
        values.push({ metricName: `${this.name}_count`, labels: { side }, value: h.count });
      }
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** The registry with every slimfast_* metric, read from src when scraped. */
export function buildRegistry(src: MetricsSource): Registry {
  const reg = new Registry();
  const one =
    (key: string) =>
    (c: Record<string, number>): [Labels, number][] => [[{}, c[key]]];
  engineCounter(
    reg,
    src,
    'slimfast_handoffs_total',
    'Cross-host connections handed off: side="client" handed to a connecting app (broker round trip or pool), side="server" handed to a listening app (broker or kernel steering)',
    (c) => [
      [{ side: 'client' }, c.handed_out],
      [{ side: 'server' }, c.handed_in],
    ],
  );
  engineCounter(reg, src, 'slimfast_same_host_connections_total', 'Container-to-container connections within this host', one('same_host'));
  engineCounter(
    reg,
    src,
    'slimfast_fallbacks_total',
    'Connects that took the ordinary path (no SlimFast listener there, or the host connection failed)',
    one('fallbacks'),
  );
  engineCounter(
    reg,
    src,
    'slimfast_refused_total',
    'Connections refused: reason="policy" denied by the connect policy (EACCES), reason="no_listener" reserved-port connections for an unknown listener (reset)',
    (c) => [
      [{ reason: 'policy' }, c.policy_denied],
      [{ reason: 'no_listener' }, c.refused],
    ],
  );
  engineCounter(
    reg,
    src,
    'slimfast_header_errors_total',
    'Malformed, truncated or timed-out host headers on the reserved port',
    one('header_errors'),
  );
  engineCounter(
    reg,
    src,
    'slimfast_header_refused_total',
    'Reserved-port headers refused with a cluster key (forged, stale, replayed, not from a member; broker and kernel together) or for overload',
    (c) => [
      [{ reason: 'forged' }, (c.header_forged ?? 0) + (c.steer_bad_tag ?? 0)],
      [{ reason: 'stale' }, (c.header_stale ?? 0) + (c.steer_stale ?? 0)],
      [{ reason: 'replayed' }, (c.header_replayed ?? 0) + (c.steer_replayed ?? 0)],
      [{ reason: 'not_member' }, (c.header_not_member ?? 0) + (c.steer_not_member ?? 0)],
      [{ reason: 'overload' }, c.header_overload],
      [{ reason: 'low_sport' }, c.header_low_sport],
    ],
  );
  engineCounter(
    reg,
    src,
    'slimfast_limit_refusals_total',
    'What a container was refused at one of its limits: limit="conns" broker connections (the process falls back to the container\'s own network), "pools" (its connects ask the broker each time), "listeners" listener channels (the app keeps its own socket), "pending" connects in progress (fall back); limit="fds" anything refused because the broker\'s descriptors reached the budget it keeps below RLIMIT_NOFILE',
    (c) => [
      [{ limit: 'conns' }, c.limit_conns],
      [{ limit: 'pools' }, c.limit_pools],
      [{ limit: 'listeners' }, c.limit_listeners],
      [{ limit: 'pending' }, c.limit_pending],
      [{ limit: 'fds' }, c.limit_fds],
    ],
  );
  engineCounter(
    reg,
    src,
    'slimfast_preload_outside_total',
    "Broker connections refused because the connecting process was not in the container's network namespace (it stays off SlimFast; the preload says so on its stderr)",
    one('peer_outside'),
  );
  engineCounter(
    reg,
    src,
    'slimfast_port_denied_total',
    'Ports below the container\'s ip_unprivileged_port_start named by a process without CAP_NET_BIND_SERVICE: call="connect" a source port (EACCES), call="listen" a listening port (the app keeps its own socket)',
    (c) => [
      [{ call: 'connect' }, c.sport_denied],
      [{ call: 'listen' }, c.lport_denied],
    ],
  );
  engineCounter(
    reg,
    src,
    'slimfast_connect_failures_total',
    'Cross-host connects that failed or timed out (then fell back)',
    one('connect_failures'),
  );
  engineCounter(
    reg,
    src,
    'slimfast_pool_hits_total',
    'Connects served from a pool of pre-established host connections (no broker round trip)',
    one('pool_taken'),
  );
  engineCounter(reg, src, 'slimfast_pool_stocked_total', 'Pre-established host connections pushed into pools', one('pool_stocked'));
  engineCounter(
    reg,
    src,
    'slimfast_seccomp_notifications_total',
    'Seccomp notifications of opted-in containers answered by the agent: result="handed" a host connection put in place of a connect, "accepted" a connection handed to an accept, "listener" a steered listener set up at listen, "continued" let through unchanged',
    (c) => [
      [{ result: 'handed' }, c.seccomp_handed],
      [{ result: 'accepted' }, c.seccomp_accepted],
      [{ result: 'listener' }, c.seccomp_listeners],
      [{ result: 'continued' }, c.seccomp_continued],
    ],
  );
  engineGauge(reg, src, 'slimfast_seccomp_notify_fds', 'Seccomp notify fds the agent serves (one per container process tree)', 'seccomp_fds');
  engineGauge(
    reg,
    src,
    'slimfast_seccomp_keeper_attached',
    '1 while the agent is attached to slimfast-seccomp-keeper (notify fds survive a broker restart)',
    'seccomp_keeper',
  );
  engineGauge(
    reg,
    src,
    'slimfast_confined',
    '1 while the confinement guard is attached: host sockets are handed to containers only then',
    'confined',
  );
  engineCounter(
    reg,
    src,
    'slimfast_guard_denied_total',
    'Calls the confinement guard refused on handed host sockets: call="connect" (re-connects and Fast Open sends), "bind", "reuseport" (changing the reserved port group\'s program)',
    (c) => [
      [{ call: 'connect' }, c.guard_denied_connect],
      [{ call: 'bind' }, c.guard_denied_bind],
      [{ call: 'reuseport' }, c.steer_guard_denied],
    ],
  );
  engineCounter(reg, src, 'slimfast_steered_total', 'Reserved-port connections the kernel put straight into the listening app', one('steered'));
  engineGauge(reg, src, 'slimfast_pool_size', 'Pooled host connections held for processes (not yet taken) or being connected', 'pooled');
  engineGauge(reg, src, 'slimfast_pools', 'Pools (one per process and peer)', 'pools');
  engineGauge(reg, src, 'slimfast_containers', 'Registered containers', 'containers');
  engineGauge(reg, src, 'slimfast_listeners', "Listening addresses (vIP:port) of this host's containers", 'listeners');
  engineGauge(reg, src, 'slimfast_preload_connections', 'Open connections from preloaded processes', 'preload_conns');
  const limits = src.limits;
  if (limits) {
    new Gauge({
      name: 'slimfast_container_limit',
      help: 'What each container may hold of the broker: limit="conns" broker connections, "pools", "listeners" listener channels, "pending" connects in progress',
      labelNames: ['limit'],
      registers: [reg],
      collect() {
        const l = limits();
        if (!l) return;
        for (const k of ['conns', 'pools', 'listeners', 'pending'] as const) this.set({ limit: k }, l[k]);
      },
    });
    new Gauge({
      name: 'slimfast_fd_limit',
      help: "The broker's RLIMIT_NOFILE (raised to its hard limit at start)",
      registers: [reg],
      collect() {
        const l = limits();
        if (l) this.set(l.nofile);
      },
    });
  }
  reg.registerMetric(
    new EngineHistogram(
      'slimfast_handoff_seconds',
      'Time the broker takes to hand off a connection: side="client" from the app\'s connect request to the connected host socket (pooled connects do not ask the broker), side="server" from accept on the reserved port to the listener (kernel-steered ones never reach the broker)',
      src,
    ) as never,
  );
  new Gauge({
    name: 'slimfast_peers',
    help: "Other hosts in this host's membership view",
    registers: [reg],
    collect() {
      this.set(src.peers().total);
    },
  });
  new Gauge({
    name: 'slimfast_peers_synced',
    help: 'Peers whose listener table this broker holds a live copy of',
    registers: [reg],
    collect() {
      this.set(src.peers().synced);
    },
  });
  const etcd = src.etcd;
  if (etcd) {
    new Gauge({
      name: 'slimfast_etcd_up',
      help: '1 while etcd answers (lease held, membership watched), 0 while the broker serves the last known view',
      registers: [reg],
      collect() {
        this.set(etcd()?.up ? 1 : 0);
      },
    });
  }
  return reg;
}

/** Serves reg at http://HOST:PORT/metrics. Rejects with an error naming the address when it cannot listen. */
export async function serveMetrics(addr: MetricsAddress, reg: Registry): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at /metrics\n');
      return;
    }
    reg.metrics().then(
      (text) => res.writeHead(200, { 'content-type': reg.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  const where = addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? `port ${addr.port} is in use on ${addr.host} (another process listens there)`
          : err.code === 'EADDRNOTAVAIL'
            ? `${addr.host} is not an address of this host`
            : err.code === 'EACCES'
              ? `no permission to listen on port ${addr.port}`
              : err.message;
      reject(new Error(`--metrics ${where}: cannot serve metrics: ${why}`));
    });
    server.listen({ host: addr.host, port: addr.port, exclusive: true }, () => resolve());
  });
  server.on('error', () => {});
  return server;
}
