// `slimfast daemon`'s flags, for node:util parseArgs. Apart from cli/main.ts (which runs on import) so
// that tests can check a command line against them, e.g. the Kubernetes DaemonSet's.
import { SF_DEFAULT_PORT } from '../common/wire.js';

export type Opts = Record<string, { type: 'string' | 'boolean'; default?: string | boolean }>;

export const DAEMON_OPTIONS: Opts = {
  'host-ip': { type: 'string' },
  'state-dir': { type: 'string' },
  port: { type: 'string', default: String(SF_DEFAULT_PORT) },
  peers: { type: 'string' },
  subnet: { type: 'string' },
  'log-level': { type: 'string', default: 'info' },
  'pool-depth': { type: 'string', default: '4' },
  'no-steering': { type: 'boolean' },
  etcd: { type: 'string' },
  'etcd-prefix': { type: 'string' },
  'cluster-cidr': { type: 'string' },
  'subnet-len': { type: 'string' },
  'lease-ttl': { type: 'string' },
  'cluster-key': { type: 'string' },
  'insecure-host-keys': { type: 'boolean' },
  policy: { type: 'string' },
  metrics: { type: 'string' },
  'container-limits': { type: 'string' },
  'fd-limit': { type: 'string' },
};
