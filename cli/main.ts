// The `slimfast` command line (contract in the design doc: keep these commands and flags stable).
import type { HealthMsg } from '../common/api-types.js';
import { resolveStateDir } from '../common/config-file.js';
import { BrokerUnreachable, ControlClient } from '../common/control-client.js';
import { installPaths } from '../common/paths.js';
import { UsageError, need, parse } from './args.js';
import { daemon } from './daemon.js';
import { DOCTOR_USAGE, doctor } from './doctor.js';
import { INSTALL_USAGE, install } from './install.js';
import { printTable } from './table.js';

const USAGE = `usage: slimfast <command> [options]

commands:
  daemon --host-ip IP [--state-dir DIR] [--port 4800] [--peers FILE | --subnet CIDR] [--log-level info] [--pool-depth 4] [--no-steering]
         [--etcd URL[,URL] [--etcd-prefix /slimfast/v1] [--cluster-cidr CIDR [--subnet-len 24]] [--lease-ttl 10]]
         [--cluster-key FILE | --insecure-host-keys] [--policy FILE] [--metrics HOST:PORT]
         [--container-limits conns=N,pools=N,listeners=N,pending=N] [--fd-limit N]
                       run this host's broker in the foreground until SIGTERM; with --etcd, membership
                       (subnet leases, peers) comes from etcd v3 and --subnet asks for a subnet; with
                       --cluster-key (16-64 secret bytes, the same file on every host) every header is
                       signed and checked, and hosts outside the membership are refused. Without it,
                       --etcd brokers share a key through etcd (<prefix>/cluster-key, made by the
                       first), and a --peers file naming other hosts is refused unless
                       --insecure-host-keys (per-start host keys announced in the clear: whatever
                       reaches a peer's reserved port from a host's address can pose as it); with
                       --policy (JSON allow/deny rules by source, destination, port; reloaded when it
                       changes and on SIGHUP) denied connects fail with EACCES; with --etcd and no --policy
                       the policy is the etcd key <prefix>/policy; with --metrics (e.g. 127.0.0.1:9480)
                       Prometheus metrics are served at http://HOST:PORT/metrics; --no-steering: the
                       broker hands every incoming connection over itself (no kernel steering
                       program); --container-limits: what one container may hold of the broker
                       (default 1024 broker connections, 4096 pools, 1024 listener channels, 1024
                       connects in progress, scaled down under a small RLIMIT_NOFILE); --fd-limit:
                       the broker's RLIMIT_NOFILE (default: raised to the highest the system
                       allows). Logs go to
                       stderr: JSON lines (level, time, msg, container…), plain text on a terminal
  status [--state-dir DIR] [--json]            exit 0 once the broker serves; show host, etcd state, peers,
                                               containers, listeners, counters
  container add --id ID --netns PATH [--ip IP] [--state-dir DIR]
                                               register a container; prints JSON with the env to run under
  container rm --id ID [--state-dir DIR]       unregister a container
  container ls [--state-dir DIR] [--json]      list registered containers
  paths --json                                 absolute paths of this install
${DOCTOR_USAGE}${INSTALL_USAGE}`;

async function withClient<T>(stateDirFlag: unknown, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const client = new ControlClient(resolveStateDir(stateDirFlag as string | undefined));
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

async function status(args: string[]): Promise<number> {
  const v = parse(args, { 'state-dir': { type: 'string' }, json: { type: 'boolean' } });
  return withClient(v['state-dir'], async (c) => {
    const [health, peers, containers, listeners, counters] = await Promise.all([c.health(), c.peers(), c.containers(), c.listeners(), c.counters()]);
    if (v.json) {
      console.log(JSON.stringify({ health, peers, containers, listeners, counters }, null, 2));
      return 0;
    }
    console.log(
      `host ${health.hostIp}:${health.port}  subnet ${health.subnet}  overlay ${health.overlay}  pid ${health.pid}  up ${health.uptimeSeconds.toFixed(0)} s`,
    );
    console.log(`headers: ${headerAuthText(health)}`);
    const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
    console.log(
      `broker: ${health.openFds} open descriptors${health.fdLimit ? ` of ${health.fdLimit}` : ''}, RSS ${mb(health.rssBytes)} (V8 heap ${mb(health.heapUsedBytes)} used of ${mb(health.heapTotalBytes)})`,
    );
    if (health.containerConnsMax) {
      console.log(
        `limits per container: ${health.containerConnsMax} broker connections, ${health.containerPoolsMax} pools, ${health.containerListenersMax} listener channels, ` +
          `${health.containerPendingMax} connects in progress; ${health.fdReserve} descriptors kept for the control plane`,
      );
    }
    const peerCount = `${peers.length} peer(s), ${peers.filter((p) => p.synced).length} in sync`;
    if (health.membership === 'etcd')
      console.log(`membership etcd: ${health.etcdState}${health.etcdError ? ` (${health.etcdError})` : ''}; ${peerCount}`);
    else console.log(`membership static: ${peerCount}`);
    console.log(`policy: ${health.policy || 'none'}`);
    console.log(
      health.unconfined
        ? `confinement: OFF (${health.unconfined}); no host socket is handed to a container, every connection takes the container's own network`
        : 'confinement: kernel guard attached (handed host sockets cannot be re-pointed)',
    );
    printTable(
      'peers',
      ['ip', 'subnet', 'port', 'synced', 'listeners'],
      peers.map((p) => [p.ip, p.subnet, p.port, p.synced ? 'yes' : 'no', p.listeners]),
    );
    printTable(
      'containers',
      ['id', 'ip'],
      containers.map((x) => [x.id, x.ip]),
    );
    printTable(
      'listeners',
      ['address', 'container', 'channels'],
      listeners.map((l) => [`${l.ip}:${l.port}`, l.containerId, l.channels]),
    );
    printTable(
      'counters',
      ['name', 'value'],
      Object.entries(counters)
        .sort()
        .map(([k, n]) => [k, n]),
    );
    return 0;
  });
}

function headerAuthText(h: HealthMsg): string {
  if (h.headerAuth === 'cluster key')
    return `signed with the cluster key (${h.clusterKeySource}, fingerprint ${h.clusterKeyFingerprint}); members only`;
  if (h.headerAuth === 'insecure host keys') {
    return (
      "INSECURE: host keys announced in the clear (--insecure-host-keys); whatever reaches a peer's reserved port from a member's address can pose as that member. " +
      'Give every broker --cluster-key FILE (or, with --etcd, leave the flag out)'
    );
  }
  return "this host's own key (a lone host: no peers)";
}

async function container(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'add') {
    const v = parse(rest, { id: { type: 'string' }, netns: { type: 'string' }, ip: { type: 'string' }, 'state-dir': { type: 'string' } });
    const id = need(v, 'id');
    const netns = need(v, 'netns');
    return withClient(v['state-dir'], async (c) => {
      const rec = await c.register({ id, netns, ip: v.ip as string | undefined });
      console.log(JSON.stringify({ id: rec.id, ip: rec.ip, socket: rec.socket, env: rec.env }));
      return 0;
    });
  }
  if (sub === 'rm') {
    const v = parse(rest, { id: { type: 'string' }, 'state-dir': { type: 'string' } });
    const id = need(v, 'id');
    return withClient(v['state-dir'], async (c) => {
      if (!(await c.unregister(id))) {
        console.error(`slimfast: no container "${id}" is registered`);
        return 1;
      }
      return 0;
    });
  }
  if (sub === 'ls') {
    const v = parse(rest, { json: { type: 'boolean' }, 'state-dir': { type: 'string' } });
    return withClient(v['state-dir'], async (c) => {
      const list = await c.containers();
      if (v.json) console.log(JSON.stringify(list.map(({ id, ip, netns, socket, pid, createdAt }) => ({ id, ip, netns, socket, pid, createdAt }))));
      else
        printTable(
          undefined,
          ['id', 'ip', 'netns', 'since'],
          list.map((x) => [x.id, x.ip, x.netns, x.createdAt]),
        );
      return 0;
    });
  }
  throw new UsageError(`unknown "container ${sub ?? ''}": use add, rm or ls`);
}

async function paths(args: string[]): Promise<number> {
  parse(args, { json: { type: 'boolean' } });
  console.log(JSON.stringify(installPaths()));
  return 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { daemon, status, container, paths, doctor, install };

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  const fn = COMMANDS[cmd];
  try {
    if (!fn) throw new UsageError(`unknown command "${cmd}"`);
    if (rest.includes('--help')) {
      process.stdout.write(USAGE);
      return 0;
    }
    return await fn(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`slimfast: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`slimfast: ${(err as Error).message}`);
    return err instanceof BrokerUnreachable ? 3 : 1;
  }
}

// `slimfast … | head` closes our stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    if (process.argv[2] !== 'daemon') setImmediate(() => process.exit(code));
  },
  (err) => {
    console.error(`slimfast: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
