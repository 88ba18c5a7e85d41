// Cluster membership on etcd v3. Each host holds one subnet record under a TTL lease that the
// broker keeps alive; every broker watches the records, so hosts that join later become peers
// without a restart and a host whose broker died drops out when its lease expires. While etcd is
// unreachable the last view stays in force (and is cached in the state dir, so a broker restarted
// during an etcd outage still serves); it catches up when etcd answers again.
//
// Brokers started without --cluster-key share one through etcd: <prefix>/cluster-key, 32 random
// bytes as hex, created by the first broker in a create-if-absent transaction and read by every
// other (etcd access is what makes a host a member already). It is cached in the state dir (mode
// 600) for a start while etcd is unreachable.
import fs from 'node:fs';
import { keyFingerprint, newClusterKeyHex, parseHexClusterKey } from '../common/cluster-key.js';
import { Etcd3, type Lease, type Watcher } from 'etcd3';
import { type Cidr, formatCidr, parseCidr } from '../common/cidr.js';
import type { HostEntry } from './peers.js';
import { writeFileAtomic } from './state-dir.js';
import {
  chooseSubnet,
  type ClusterConfig,
  formatClusterConfig,
  hostsOf,
  parseClusterConfig,
  parseSubnetRecord,
  type SubnetLease,
  subnetKeyName,
  subnetRecordValue,
} from './subnet-leases.js';

export const DEFAULT_ETCD_PREFIX = '/slimfast/v1';
export const DEFAULT_LEASE_TTL = 10;
/** The cluster key brokers without --cluster-key share, under the prefix. */
export const SHARED_KEY = 'cluster-key';
const CALL_MS = 5000;
const RESYNC_MS = 30_000;

export interface EtcdMembershipOptions {
  endpoints: string[];
  prefix?: string;
  hostIp: string;
  port: number;
  /** --subnet: the subnet this host asks for. */
  subnet?: string;
  /** --cluster-cidr: the network to create in etcd when none is there yet (must match if one is). */
  clusterCidr?: string;
  /** Host share size when creating the network (default /24). */
  subnetLen?: number;
  ttlSeconds?: number;
  /** State-dir file holding the last view, for a start while etcd is unreachable. */
  cacheFile: string;
  /** Share the cluster key through etcd (<prefix>/cluster-key), cached in this state-dir file. */
  sharedKeyCache?: string;
  log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;
}

export interface MembershipView {
  self: HostEntry;
  others: HostEntry[];
  overlay: string;
}

export interface SharedClusterKey {
  key: Buffer;
  /** Where it came from: "etcd /slimfast/v1/cluster-key", with "(cached …)" when etcd did not answer. */
  source: string;
}

interface CachedKey {
  /** The etcd key it was read from: a cache of another prefix is not this cluster's. */
  name: string;
  key: string;
}

export interface EtcdStatus {
  endpoints: string[];
  /** connected: lease held and records watched; unreachable: serving the last known view. */
  state: 'connected' | 'unreachable';
  leaseId?: string;
  lastError?: string;
}

interface CachedView {
  subnet: string;
  overlay: string;
  hosts: { ip: string; subnet: string; port: number }[];
}

/** A refusal that retrying cannot fix (conflict, bad config): the daemon must not start. */
export class MembershipError extends Error {}

/** grpc's messages carry resolver notes nobody needs. */
function reason(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).replace(/\.?\s*Resolution note:.*$/s, '').trim();
}

function deadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${CALL_MS / 1000} s`)), CALL_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** An --etcd entry: http(s)://host:port, nothing after it. */
export function checkEtcdEndpoint(e: string): void {
  if (!/^https?:\/\/[^/]+$/.test(e)) throw new MembershipError(`--etcd ${e}: expected a URL like http://10.0.0.5:2379`);
}

export class EtcdMembership {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly ttl: number;
  private readonly records = new Map<string, SubnetLease>();
  private lease?: Lease;
  private leaseId?: string;
  private watcher?: Watcher;
  private readonly keyWatchers: Watcher[] = [];
  private readonly keyTimers = new Set<NodeJS.Timeout>();
  private subnet?: Cidr;
  private overlay?: string;
  private state: EtcdStatus['state'] = 'unreachable';
  private lastError?: string;
  private retryTimer?: NodeJS.Timeout;
  private resyncTimer?: NodeJS.Timeout;
  private closed = false;
  private lastOthers = '';
  private onChange: (others: HostEntry[]) => void = () => {};

  constructor(private readonly opts: EtcdMembershipOptions) {
    for (const e of opts.endpoints) checkEtcdEndpoint(e);
    this.prefix = (opts.prefix ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
    this.ttl = opts.ttlSeconds ?? DEFAULT_LEASE_TTL;
    if (!Number.isInteger(this.ttl) || this.ttl < 2 || this.ttl > 3600)
      throw new MembershipError(`--lease-ttl must be 2-3600 seconds, got ${this.ttl}`);
    this.client = new Etcd3({ hosts: opts.endpoints, dialTimeout: 3000 });
  }

  private get subnetsPrefix(): string {
    return `${this.prefix}/subnets/`;
  }

  /** Claims this host's subnet and starts watching; resolves with the first view (and, with
   *  sharedKeyCache, the cluster key every broker shares through etcd). */
  async start(onChange: (others: HostEntry[]) => void): Promise<MembershipView & { clusterKey?: SharedClusterKey }> {
    let clusterKey: SharedClusterKey | undefined;
    try {
      // The key first: a broker that cannot have it claims nothing.
      if (this.opts.sharedKeyCache) clusterKey = await this.readSharedKey(this.opts.sharedKeyCache);
      await this.claim();
    } catch (err) {
      if (err instanceof MembershipError) {
        await this.close();
        throw err;
      }
      const where = `etcd at ${this.opts.endpoints.join(',')}`;
      const cached = this.readCache();
      if (!cached) {
        await this.close();
        throw new Error(
          `cannot reach ${where} (${reason(err)}) and there is no cached membership in ${this.opts.cacheFile} to serve from; start etcd or fix --etcd`,
        );
      }
      if (this.opts.sharedKeyCache && !clusterKey) {
        const name = this.keyName(SHARED_KEY);
        const key = this.readKeyCache(this.opts.sharedKeyCache);
        if (!key) {
          await this.close();
          throw new Error(
            `cannot reach ${where} (${reason(err)}) to read the cluster key ${name}, and there is no copy of it cached in ${this.opts.sharedKeyCache}; ` +
              "this broker will not serve other hosts without it. Start etcd or fix --etcd; or copy the cluster's key into a file " +
              `(where etcd answers: etcdctl get --print-value-only ${name} > cluster.key && chmod 600 cluster.key) and pass --cluster-key FILE`,
          );
        }
        clusterKey = { key, source: `etcd ${name} (the copy cached in ${this.opts.sharedKeyCache}: etcd did not answer)` };
      }
      this.lastError = reason(err);
      this.opts.log(
        'warn',
        `${where} is unreachable (${this.lastError}); serving the membership cached in ${this.opts.cacheFile}${clusterKey ? ' and signing with the cached cluster key' : ''} until it answers`,
      );
      this.scheduleRetry();
    }
    const view = this.view();
    this.lastOthers = JSON.stringify(view.others);
    this.onChange = onChange;
    return { ...view, clusterKey };
  }

  /**
   * <prefix>/cluster-key: read it, or create it when absent (one transaction: only if no broker
   * did first), then read what won. A new one is 32 random bytes, unless this state dir still
   * holds the copy of a key this cluster shared before (an etcd that lost its data): then that one,
   * so running brokers and restarted ones keep one key.
   */
  private async readSharedKey(cacheFile: string): Promise<SharedClusterKey> {
    const name = this.keyName(SHARED_KEY);
    let text = await deadline(this.client.get(name).string(), `reading ${name}`);
    if (text === null) {
      const cached = this.readKeyCache(cacheFile);
      const value = cached ? cached.toString('hex') : newClusterKeyHex();
      const res = await deadline(this.client.if(name, 'Create', '==', 0).then(this.client.put(name).value(value)).commit(), `creating ${name}`);
      if (res.succeeded) {
        this.opts.log(
          'info',
          cached
            ? `etcd held no cluster key: put the one cached in ${cacheFile} back at ${name}`
            : `etcd held no cluster key: created one at ${name} (every broker without --cluster-key uses it)`,
        );
      }
      text = await deadline(this.client.get(name).string(), `reading ${name}`);
      if (text === null) throw new Error(`${name} vanished right after it was created`);
    }
    const key = parseHexClusterKey(text);
    if (!key) {
      throw new MembershipError(
        `the etcd key ${name} holds no cluster key (it needs 16-64 bytes as hex digits; it has ${text.trim().length} characters): ` +
          `if no broker uses it yet, delete it (etcdctl del ${name}) and the next broker makes one; else put the cluster's key back there`,
      );
    }
    this.writeKeyCache(cacheFile, key);
    return { key, source: `etcd ${name}` };
  }

  private readKeyCache(file: string): Buffer | undefined {
    try {
      const c = JSON.parse(fs.readFileSync(file, 'utf8')) as CachedKey;
      return c.name === this.keyName(SHARED_KEY) ? parseHexClusterKey(c.key) : undefined;
    } catch {
      return undefined;
    }
  }

  private writeKeyCache(file: string, key: Buffer): void {
    const doc: CachedKey = { name: this.keyName(SHARED_KEY), key: key.toString('hex') };
    try {
      writeFileAtomic(file, `${JSON.stringify(doc)}\n`, 0o600);
    } catch (err) {
      this.opts.log(
        'warn',
        `cannot cache the cluster key in ${file}: ${(err as Error).message}; a start while etcd is unreachable will then be refused`,
      );
    }
  }

  /**
   * Keeps <prefix>/cluster-key what this broker signs with: deleted, it is put back (create if
   * absent: brokers racing to do so put the same key); replaced by another key, that is logged
   * as an error, since brokers started from now on would take it and refuse this one. (Rotating the
   * key means stopping every broker first: docs/security.md, "Signed headers and the cluster key".)
   */
  async followSharedKey(key: Buffer): Promise<void> {
    const name = this.keyName(SHARED_KEY);
    const ours = keyFingerprint(key);
    let reported = '';
    await this.watchKey(SHARED_KEY, (text) => {
      if (text === null) {
        this.opts.log(
          'warn',
          `the cluster key ${name} was deleted from etcd; putting this broker's back (to change the key, stop every broker first)`,
        );
        void deadline(
          this.client
            .if(name, 'Create', '==', 0)
            .then(this.client.put(name).value(key.toString('hex')))
            .commit(),
          `restoring ${name}`,
        ).catch((err: unknown) => this.opts.log('warn', `cannot put the cluster key back at ${name}: ${reason(err)}`));
        return;
      }
      const other = parseHexClusterKey(text);
      const fp = other ? keyFingerprint(other) : 'none: not 16-64 bytes as hex';
      if (fp === ours) {
        reported = '';
        return;
      }
      if (fp === reported) return;
      reported = fp;
      this.opts.log(
        'error',
        `the cluster key ${name} in etcd changed (fingerprint ${fp}); this broker keeps signing with the one it started with (${ours}), ` +
          "and brokers that start now take the new one and refuse this one's headers: put the old key back, or stop every broker and start them all again",
      );
    });
  }

  /** The full name of a key under the prefix, e.g. "policy" -> "/slimfast/v1/policy". */
  keyName(name: string): string {
    return `${this.prefix}/${name}`;
  }

  /**
   * Watches one key under the prefix: onValue gets its value (null: no such key) once it is read,
   * on every change, and after each reconnect. Resolves true once the first read succeeded, false
   * if it did not (etcd unreachable): then it keeps trying in the background.
   */
  async watchKey(name: string, onValue: (value: string | null) => void): Promise<boolean> {
    const key = this.keyName(name);
    let events = 0; // a read that a watch event overtook must not undo it
    const read = async () => {
      const seen = events;
      const value = await deadline(this.client.get(key).string(), `reading ${key}`);
      if (seen === events) onValue(value);
    };
    let w: Watcher | undefined;
    const attempt = async (): Promise<boolean> => {
      try {
        if (!w) {
          const created = await deadline(this.client.watch().key(key).create(), `watching ${key}`);
          if (this.closed) {
            await created.cancel().catch(() => {});
            return false;
          }
          w = created;
          this.keyWatchers.push(w);
          w.on('put', (kv) => {
            events++;
            onValue(kv.value.toString());
          });
          w.on('delete', () => {
            events++;
            onValue(null);
          });
          w.on('connected', () => void read().catch(() => {}));
          w.on('error', () => {});
        }
        await read();
        return true;
      } catch (err) {
        if (this.closed) return false;
        this.opts.log('debug', `etcd: ${key} not read yet (${reason(err)}); trying again`);
        const t = setTimeout(() => {
          this.keyTimers.delete(t);
          void attempt();
        }, 2000);
        this.keyTimers.add(t);
        return false;
      }
    };
    return attempt();
  }

  status(): EtcdStatus {
    return { endpoints: this.opts.endpoints, state: this.state, leaseId: this.leaseId, lastError: this.lastError };
  }

  /** Stops watching and keeping the lease alive. The record expires with its TTL, so a broker
   *  restarted within it takes its subnet straight back. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.resyncTimer);
    this.lease?.release();
    for (const t of this.keyTimers) clearTimeout(t);
    for (const w of this.keyWatchers) await w.cancel().catch(() => {});
    await this.watcher?.cancel().catch(() => {});
    this.client.close();
  }

  private view(): MembershipView {
    const self: HostEntry = { ip: this.opts.hostIp, subnet: formatCidr(this.subnet!), port: this.opts.port, cidr: this.subnet! };
    const others = hostsOf([...this.records.values()]).filter((h) => h.ip !== this.opts.hostIp);
    return { self, others, overlay: this.overlay! };
  }

  private readCache(): boolean {
    let c: CachedView;
    try {
      c = JSON.parse(fs.readFileSync(this.opts.cacheFile, 'utf8')) as CachedView;
      const subnet = parseCidr(c.subnet);
      parseCidr(c.overlay);
      if (this.opts.subnet && formatCidr(parseCidr(this.opts.subnet)) !== c.subnet) return false;
      this.subnet = subnet;
      this.overlay = c.overlay;
      for (const h of c.hosts) {
        const cidr = parseCidr(h.subnet);
        this.records.set(subnetKeyName(cidr), { subnet: cidr, hostIp: h.ip, port: h.port, modRevision: '0' });
      }
      return true;
    } catch {
      return false;
    }
  }

  private writeCache(): void {
    if (!this.subnet || !this.overlay) return;
    const v = this.view();
    const doc: CachedView = { subnet: v.self.subnet, overlay: v.overlay, hosts: v.others.map(({ ip, subnet, port }) => ({ ip, subnet, port })) };
    try {
      writeFileAtomic(this.opts.cacheFile, JSON.stringify(doc, null, 2));
    } catch (err) {
      this.opts.log('warn', `cannot cache the membership in ${this.opts.cacheFile}: ${(err as Error).message}`);
    }
  }

  private async loadConfig(): Promise<ClusterConfig> {
    const key = `${this.prefix}/config`;
    let text = await deadline(this.client.get(key).string(), `reading ${key}`);
    if (text === null) {
      if (!this.opts.clusterCidr) {
        throw new MembershipError(
          `etcd holds no SlimFast network at ${key}; give the first daemon --cluster-cidr CIDR (e.g. 10.200.0.0/16), or put {"network":"10.200.0.0/16","subnetLen":24} there with etcdctl`,
        );
      }
      const network = parseCidr(this.opts.clusterCidr);
      const want = formatClusterConfig({ network, subnetLen: this.opts.subnetLen ?? Math.max(network.prefix, 24) });
      parseClusterConfig(want, '--cluster-cidr');
      await deadline(this.client.if(key, 'Create', '==', 0).then(this.client.put(key).value(want)).commit(), `creating ${key}`);
      text = await deadline(this.client.get(key).string(), `reading ${key}`);
      if (text === null) throw new Error(`${key} vanished right after it was created`);
    }
    let cfg: ClusterConfig;
    try {
      cfg = parseClusterConfig(text, `etcd key ${key}`);
    } catch (err) {
      throw new MembershipError((err as Error).message);
    }
    if (this.opts.clusterCidr && formatCidr(parseCidr(this.opts.clusterCidr)) !== formatCidr(cfg.network)) {
      throw new MembershipError(
        `--cluster-cidr ${this.opts.clusterCidr} disagrees with the network ${formatCidr(cfg.network)} already in etcd at ${key}; leave --cluster-cidr out or change the key`,
      );
    }
    return cfg;
  }

  private async readRecords(): Promise<{ leases: SubnetLease[]; revision: string }> {
    const res = await deadline(this.client.getAll().prefix(this.subnetsPrefix).exec(), `listing ${this.subnetsPrefix}`);
    const leases: SubnetLease[] = [];
    for (const kv of res.kvs) {
      const name = kv.key.toString().slice(this.subnetsPrefix.length);
      try {
        leases.push(parseSubnetRecord(name, kv.value.toString(), kv.mod_revision));
      } catch (err) {
        this.opts.log('warn', `ignoring ${kv.key.toString()}: ${(err as Error).message}`);
      }
    }
    return { leases, revision: res.header.revision };
  }

  /** Takes (or takes back) this host's subnet under a fresh lease and (re)starts the watch. */
  private async claim(): Promise<void> {
    const cfg = await this.loadConfig();
    const overlay = formatCidr(cfg.network);
    if (this.overlay && this.overlay !== overlay) {
      throw new MembershipError(`the cluster network in etcd changed from ${this.overlay} to ${overlay} while this broker ran; restart it`);
    }
    const lease = this.client.lease(this.ttl, { autoKeepAlive: true });
    const leaseId = await deadline(lease.grant(), 'granting a lease');
    const remembered = this.readRemembered();
    for (let attempt = 0; ; attempt++) {
      const { leases } = await this.readRecords();
      // Once running, the subnet is fixed: containers hold addresses from it.
      const requested = this.subnet ?? (this.opts.subnet ? parseCidr(this.opts.subnet) : undefined);
      const choice = chooseSubnet(cfg, leases, this.opts.hostIp, { requested, remembered });
      if ('error' in choice) {
        lease.release();
        throw new MembershipError(choice.error);
      }
      const key = this.subnetsPrefix + subnetKeyName(choice.subnet);
      const txn = choice.takeover ? this.client.if(key, 'Mod', '==', Number(choice.takeover.modRevision)) : this.client.if(key, 'Create', '==', 0);
      const res = await deadline(txn.then(lease.put(key).value(subnetRecordValue(this.opts.hostIp, this.opts.port))).commit(), `claiming ${key}`);
      if (res.succeeded) {
        // Records of this host's for other subnets (an older --subnet) go.
        for (const l of leases) {
          if (l.hostIp === this.opts.hostIp && subnetKeyName(l.subnet) !== subnetKeyName(choice.subnet)) {
            await deadline(
              this.client
                .delete()
                .key(this.subnetsPrefix + subnetKeyName(l.subnet))
                .exec(),
              'removing an old record',
            ).catch(() => {});
          }
        }
        this.subnet = choice.subnet;
        break;
      }
      if (attempt >= 8) {
        lease.release();
        throw new Error(`could not claim a subnet after ${attempt + 1} tries: other hosts keep taking them`);
      }
    }
    this.overlay = overlay;
    this.lease?.release();
    this.lease = lease;
    this.leaseId = leaseId;
    lease.on('lost', (err) => this.onLeaseLost(err));
    await this.watch();
    this.state = 'connected';
    this.lastError = undefined;
    this.opts.log('info', `etcd: holding ${formatCidr(this.subnet!)} in ${overlay} under lease ${leaseId} (TTL ${this.ttl} s)`);
  }

  private readRemembered(): Cidr | undefined {
    try {
      return parseCidr((JSON.parse(fs.readFileSync(this.opts.cacheFile, 'utf8')) as CachedView).subnet);
    } catch {
      return undefined;
    }
  }

  private async watch(): Promise<void> {
    await this.watcher?.cancel().catch(() => {});
    const w = await deadline(this.client.watch().prefix(this.subnetsPrefix).create(), 'watching the subnet records');
    this.watcher = w;
    w.on('put', (kv) => {
      const name = kv.key.toString().slice(this.subnetsPrefix.length);
      try {
        this.records.set(name, parseSubnetRecord(name, kv.value.toString(), kv.mod_revision));
      } catch (err) {
        this.opts.log('warn', `ignoring ${kv.key.toString()}: ${(err as Error).message}`);
        this.records.delete(name);
      }
      this.changed();
    });
    w.on('delete', (kv) => {
      const name = kv.key.toString().slice(this.subnetsPrefix.length);
      if (this.records.delete(name)) this.changed();
      if (this.subnet && name === subnetKeyName(this.subnet) && !this.closed) {
        this.opts.log('warn', `this host's record ${name} was deleted in etcd; claiming it again`);
        this.scheduleRetry(0);
      }
    });
    w.on('disconnected', (err) => {
      if (this.closed) return;
      if (this.state === 'connected') this.opts.log('warn', `etcd watch lost (${reason(err)}); keeping the last known membership`);
      this.state = 'unreachable';
      this.lastError = reason(err);
    });
    w.on('connected', () => void this.resync());
    w.on('error', (err) => {
      this.lastError = reason(err);
      this.scheduleRetry();
    });
    // The watch started after the records were read; a full read now closes that gap.
    await this.resync(true);
    clearInterval(this.resyncTimer);
    this.resyncTimer = setInterval(() => void this.resync(), RESYNC_MS);
  }

  /** Replaces the view with a full read (after a reconnect, and now and then as a safety net). */
  private async resync(strict = false): Promise<void> {
    try {
      const { leases } = await this.readRecords();
      this.records.clear();
      for (const l of leases) this.records.set(subnetKeyName(l.subnet), l);
      this.changed();
      if (!strict && this.lease && !this.retryTimer && this.state !== 'connected') {
        this.state = 'connected';
        this.lastError = undefined;
        this.opts.log('info', 'etcd answers again; membership caught up');
      }
    } catch (err) {
      if (strict) throw err;
      this.lastError = reason(err);
    }
  }

  private changed(): void {
    const others = this.view().others;
    const text = JSON.stringify(others);
    this.writeCache();
    if (text === this.lastOthers) return;
    this.lastOthers = text;
    this.onChange(others);
  }

  private onLeaseLost(err: Error): void {
    if (this.closed) return;
    this.state = 'unreachable';
    this.lease = undefined;
    this.lastError = reason(err);
    this.opts.log(
      'warn',
      `etcd lease ${this.leaseId} lost (${this.lastError}); serving the last known membership and claiming ${formatCidr(this.subnet!)} again`,
    );
    this.scheduleRetry();
  }

  private scheduleRetry(delayMs = 1000): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.claim().then(
        () => this.opts.log('info', 'etcd reachable again; membership caught up'),
        (err: Error) => {
          this.lastError = reason(err);
          this.state = 'unreachable';
          if (err instanceof MembershipError) this.opts.log('error', `etcd: ${err.message}`);
          else this.opts.log('debug', `etcd still unreachable: ${err.message}`);
          this.scheduleRetry(Math.min(delayMs * 2 || 1000, 5000));
        },
      );
    }, delayMs);
  }
}
