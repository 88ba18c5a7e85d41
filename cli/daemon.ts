// `slimfast daemon`: runs this host's broker in the foreground, with the runtime service beside it,
// until SIGTERM. The one command that starts the broker, and so the CLI's one way into broker/.
import path from 'node:path';
import { type ContainerLimits, Daemon, parseContainerLimits } from '../broker/daemon.js';
import { Logger } from '../broker/log.js';
import { parseMetricsAddress } from '../broker/metrics.js';
import { resolveStateDir } from '../common/config-file.js';
import { stateLayout } from '../common/state-dir.js';
import { thisInstall } from '../runtime-service/handlers.js';
import { RuntimeService } from '../runtime-service/server.js';
import { UsageError, need, parse, portOf } from './args.js';
import { DAEMON_OPTIONS } from './daemon-options.js';

export async function daemon(args: string[]): Promise<number> {
  const v = parse(args, DAEMON_OPTIONS);
  const intFlag = (name: string, lo: number, hi: number): number | undefined => {
    if (v[name] === undefined) return undefined;
    const n = Number(v[name]);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new UsageError(`--${name} must be ${lo}-${hi}, got "${String(v[name])}"`);
    return n;
  };
  for (const f of ['etcd-prefix', 'cluster-cidr', 'subnet-len', 'lease-ttl']) {
    if (v[f] !== undefined && v.etcd === undefined) throw new UsageError(`--${f} needs --etcd`);
  }
  const etcd =
    v.etcd === undefined
      ? undefined
      : {
          endpoints: (v.etcd as string)
            .split(',')
            .map((e) => e.trim())
            .filter(Boolean),
          prefix: v['etcd-prefix'] as string | undefined,
          clusterCidr: v['cluster-cidr'] as string | undefined,
          subnetLen: intFlag('subnet-len', 1, 30),
          leaseTtl: intFlag('lease-ttl', 2, 3600),
        };
  if (v['cluster-key'] !== undefined && v['insecure-host-keys'])
    throw new UsageError('--cluster-key and --insecure-host-keys exclude each other: give every broker the key, or opt out of it');
  if (etcd && etcd.endpoints.length === 0) throw new UsageError('--etcd needs at least one URL, e.g. --etcd http://10.0.0.5:2379');
  if (v.metrics !== undefined) {
    try {
      parseMetricsAddress(v.metrics as string);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  let containerLimits: ContainerLimits | undefined;
  if (v['container-limits'] !== undefined) {
    try {
      containerLimits = parseContainerLimits(v['container-limits'] as string);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const poolDepth = Number(v['pool-depth']);
  if (!Number.isInteger(poolDepth) || poolDepth < 0 || poolDepth > 64)
    throw new UsageError(`--pool-depth must be 0-64 (0: no pre-established connections), got "${v['pool-depth']}"`);
  const stateDir = resolveStateDir(v['state-dir'] as string | undefined);
  const log = new Logger(v['log-level'] as string);
  const d = new Daemon(
    {
      hostIp: need(v, 'host-ip'),
      stateDir,
      port: portOf(v.port as string),
      peersFile: v.peers as string | undefined,
      subnet: v.subnet as string | undefined,
      logLevel: v['log-level'] as string,
      poolDepth,
      steering: v['no-steering'] ? false : undefined,
      etcd,
      clusterKeyFile: v['cluster-key'] as string | undefined,
      insecureHostKeys: v['insecure-host-keys'] === true,
      policyFile: v.policy === undefined ? undefined : path.resolve(v.policy as string),
      metrics: v.metrics as string | undefined,
      containerLimits,
      fdLimit: intFlag('fd-limit', 256, 1 << 30),
    },
    log,
  );
  process.on('SIGPIPE', () => {});
  await d.start();
  // After the state dir is claimed. The front ends fall back to their Node.js programs without it.
  let runtime: RuntimeService | undefined;
  try {
    runtime = await RuntimeService.start(stateLayout(stateDir).runtimeSocket, log, { ...thisInstall(), broker: d.containerApi() });
  } catch (err) {
    log.warn(`no runtime service (${(err as Error).message}): slimfast-runc and slimfast-hook start Node.js for every container`);
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await runtime?.stop();
  await d.stop();
  return 0;
}
