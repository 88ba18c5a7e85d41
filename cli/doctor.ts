// `slimfast doctor`: checks what SlimFast needs on this host and says what to fix. One check per
// concern; each gathers its facts and hands them to a pure function that decides (those are what
// the unit tests call). Every check is bounded in time, so an unreachable etcd or a hung broker
// costs seconds, never a hang. Exit 0 when nothing failed (warnings allowed), 1 otherwise.
// It asks what the broker would meet, the broker's way: its addon's probes (broker/native-engine.ts)
// and its etcd key names (broker/etcd-membership.ts) are the two things it takes from broker/.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { execa } from 'execa';
import { checkEtcdEndpoint, DEFAULT_ETCD_PREFIX, SHARED_KEY } from '../broker/etcd-membership.js';
import { loadAddon } from '../broker/native-engine.js';
import type { HealthMsg } from '../common/api-types.js';
import { DEFAULT_KEY_FILE, keyFingerprint, loadClusterKey, makeKeyHint, parseHexClusterKey } from '../common/cluster-key.js';
import { CONFIG_FILE, DEFAULT_STATE_DIR, readConfigFile, resolveStateDir } from '../common/config-file.js';
import { ControlClient } from '../common/control-client.js';
import { installPaths } from '../common/paths.js';
import { pidAlive, stateLayout } from '../common/state-dir.js';
import { resolveRunc } from '../runtime-wrapper/runc.js';
import { printTable } from './table.js';

export const DOCTOR_USAGE = `  doctor [--state-dir DIR] [--host-ip IP] [--port 4800] [--etcd URL[,URL] [--etcd-prefix /slimfast/v1]]
         [--cluster-key FILE] [--json]
                       check what SlimFast needs on this host (kernel, privileges, TCP Fast Open, BPF,
                       the built files, runc, the reserved port, the state dir, the broker's
                       descriptors, etcd, the key) and say
                       what to fix; exit 1 if a check failed. Port and host IP default to those of
                       the running broker of the state dir
`;

export type Status = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  status: Status;
  detail: string;
  fix?: string;
}

const ok = (name: string, detail: string): CheckResult => ({ name, status: 'ok', detail });
const skip = (name: string, detail: string): CheckResult => ({ name, status: 'skip', detail });
const warn = (name: string, detail: string, fix?: string): CheckResult => ({ name, status: 'warn', detail, fix });
const fail = (name: string, detail: string, fix?: string): CheckResult => ({ name, status: 'fail', detail, fix });

const errMsg = (err: unknown) => (err as Error)?.message ?? String(err);

// ---------------------------------------------------------------------------------------------
// Pure parts: facts in, verdict out.

/** "6.1.0-18-amd64" -> [6, 1, 0]; undefined when it does not start with a version. */
export function parseKernelRelease(release: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

/** Whether version a is at least b (missing parts count as 0). */
export function versionAtLeast(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

export const NODE_MIN = [20, 8] as const;
export const KERNEL_MIN = [5, 10] as const;
/** sf_steer_auth, the steering program loaded with a cluster key, calls bpf_ktime_get_tai_ns(). */
export const KERNEL_AUTH_MIN = [6, 1] as const;

export function nodeCheck(version: string): CheckResult {
  const v = parseKernelRelease(version.replace(/^v/, ''));
  if (!v) return warn('node', `cannot read the version "${version}"`);
  if (versionAtLeast(v, NODE_MIN)) return ok('node', `${version} (needs >= ${NODE_MIN.join('.')})`);
  return fail(
    'node',
    `${version} is older than ${NODE_MIN.join('.')}`,
    `install Node.js ${NODE_MIN.join('.')} or newer (the launchers use SLIMFAST_NODE, else the node they were built with, else node on PATH)`,
  );
}

export function kernelCheck(release: string, facts: { netns: boolean; clusterKey: boolean }): CheckResult {
  const name = 'kernel';
  if (!facts.netns) return fail(name, `${release}: no network namespaces (/proc/self/ns/net is missing)`, 'run a kernel built with CONFIG_NET_NS=y');
  const v = parseKernelRelease(release);
  if (!v) return warn(name, `cannot read the kernel version "${release}"`);
  const auth = versionAtLeast(v, KERNEL_AUTH_MIN);
  if (!versionAtLeast(v, KERNEL_MIN)) {
    return warn(
      name,
      `${release} is older than ${KERNEL_MIN.join('.')}, the oldest SlimFast is meant for: SK_REUSEPORT programs and TCP_FASTOPEN_NO_COOKIE need 4.19, ` +
        'and without them nothing is steered in the kernel (the broker hands every connection over itself)',
      `upgrade to Linux ${KERNEL_MIN.join('.')} or newer (${KERNEL_AUTH_MIN.join('.')} for a cluster key)`,
    );
  }
  if (facts.clusterKey && !auth) {
    return warn(
      name,
      `${release}: the cluster-key steering program (sf_steer_auth) needs Linux ${KERNEL_AUTH_MIN.join('.')} for bpf_ktime_get_tai_ns(); ` +
        'with a cluster key (--cluster-key, or the one brokers share through etcd) nothing is steered in the kernel here, the broker checks and hands over every connection itself (connections work, set-up is slower)',
      `upgrade to Linux ${KERNEL_AUTH_MIN.join('.')} or newer`,
    );
  }
  return ok(
    name,
    `${release}: network namespaces, SO_REUSEPORT with SK_REUSEPORT programs, TCP_DEFER_ACCEPT, TCP_FASTOPEN_NO_COOKIE` +
      (auth
        ? `, and bpf_ktime_get_tai_ns() for a cluster key (>= ${KERNEL_AUTH_MIN.join('.')})`
        : `; a cluster key would need ${KERNEL_AUTH_MIN.join('.')} for kernel steering`),
  );
}

export const CAP_NET_ADMIN = 12;
export const CAP_SYS_ADMIN = 21;
export const CAP_BPF = 39;

/** The CapEff mask of a /proc/PID/status text (0 when absent). */
export function parseCapEff(statusText: string): bigint {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(statusText);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const hasCap = (mask: bigint, cap: number) => ((mask >> BigInt(cap)) & 1n) === 1n;

export function privilegesCheck(uid: number, capEff: bigint): CheckResult {
  const name = 'privileges';
  const who = uid === 0 ? 'root' : `uid ${uid}`;
  const fix = 'run the broker (and slimfast doctor) as root';
  const missing: string[] = [];
  if (!hasCap(capEff, CAP_SYS_ADMIN)) missing.push('CAP_SYS_ADMIN (entering container network namespaces: setns)');
  if (!hasCap(capEff, CAP_NET_ADMIN)) missing.push('CAP_NET_ADMIN (the TCP Fast Open sysctl, networking BPF programs)');
  if (missing.length) return fail(name, `${who} lacks ${missing.join(' and ')}`, fix);
  if (!hasCap(capEff, CAP_BPF) && !hasCap(capEff, CAP_SYS_ADMIN)) {
    return warn(name, `${who} lacks CAP_BPF: the broker cannot load the steering program and hands every connection over itself`, fix);
  }
  if (uid !== 0) {
    return warn(name, `${who} has CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF, but the default state dir and sysctls expect root`, fix);
  }
  return ok(name, 'root with CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF');
}

export const TFO_SYSCTL = '/proc/sys/net/ipv4/tcp_fastopen';

/** What the broker's change to the sysctl means for the host after it stops. */
const TFO_LEFT_SET = "leaves it set after it stops (the host's listeners that ask for TCP_FASTOPEN then accept Fast Open)";

/** The sysctl's text ("3\n", "0x203") -> its value, or undefined. */
export function parseTfo(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(t)) return undefined;
  return Number(t);
}

/**
 * net.ipv4.tcp_fastopen: bit 0x1 lets sockets send data in the SYN (pooled and cross-host
 * connections send their header there), bit 0x2 lets listeners take it (the reserved port and
 * steered listeners). Cookies are not needed: every SlimFast socket sets TCP_FASTOPEN_NO_COOKIE.
 * The broker sets 0x2 itself at start when it may write the sysctl, and leaves it set when it stops
 * (another broker, or a restarted one, still needs it): doctor says so, the host's admin should know.
 */
export function tfoCheck(text: string | undefined, canWrite: boolean): CheckResult {
  const name = 'tcp-fastopen';
  const v = parseTfo(text);
  if (v === undefined) {
    return warn(
      name,
      `cannot read ${TFO_SYSCTL}${text === undefined ? '' : ` ("${text.trim()}")`}: without TCP Fast Open headers wait for the handshake and nothing is steered in the kernel`,
      'use a kernel with TCP Fast Open (every kernel since 3.13 has it)',
    );
  }
  const shown = `net.ipv4.tcp_fastopen = ${v} (0x${v.toString(16)})`;
  const want = v | 3;
  const fix = `sysctl -w net.ipv4.tcp_fastopen=${want}, and put net.ipv4.tcp_fastopen=${want} in /etc/sysctl.d/ to keep it`;
  const notes: string[] = [];
  let status: Status = 'ok';
  if (!(v & 1)) {
    status = 'warn';
    notes.push(
      "no client bit (0x1): pooled and cross-host connections cannot carry their header in the SYN, so they wait for the handshake and the peer's kernel steers none of them",
    );
  }
  if (!(v & 2)) {
    if (canWrite) notes.push(`no server bit (0x2) yet: the broker sets it at start, keeping the other bits, and ${TFO_LEFT_SET}`);
    else {
      status = 'warn';
      notes.push(
        'no server bit (0x2) and the broker could not set it without root: the reserved port takes no data in the SYN and nothing is steered in the kernel',
      );
    }
  }
  if (status === 'ok' && !notes.length) notes.push(`client and server bits set (a broker that finds 0x2 missing sets it and ${TFO_LEFT_SET})`);
  notes.push('no cookies needed (SlimFast sockets set TCP_FASTOPEN_NO_COOKIE)');
  const detail = `${shown}: ${notes.join('; ')}`;
  return status === 'ok' ? ok(name, detail) : warn(name, detail, fix);
}

/**
 * The confinement guard (native/bpf/guard.bpf.c): without it the broker hands no host socket to
 * any container. `running` is what a serving broker reports ("" = attached), `probe` what
 * attaching it from here said (undefined: not probed).
 */
export function confinementCheck(probe: string | undefined, running?: string): CheckResult {
  const name = 'confinement';
  const off = "no host socket is handed to any container: every connection takes the container's own network";
  const fix =
    'run the broker as root on a kernel with cgroup v2 and cgroup BPF programs (CONFIG_CGROUP_BPF, Linux 5.2 or newer), with 127.0.0.1 up in its namespace';
  if (running !== undefined) {
    return running === ''
      ? ok(
          name,
          "the running broker's guard is attached: handed host sockets cannot be re-connected, bound or re-pointed (cgroup connect4/6, bind4/6, setsockopt)",
        )
      : fail(name, `the running broker has no confinement guard (${running}); ${off}`, fix);
  }
  if (probe === undefined) return skip(name, 'not probed: the addon does not load (see addon)');
  if (probe !== '') return fail(name, `the confinement guard cannot be attached here (${probe}); a broker would hand out nothing: ${off}`, fix);
  return ok(name, 'the confinement guard attaches and holds on probe sockets (cgroup connect4/6, bind4/6, setsockopt)');
}

export function steeringCheck(plain: string | undefined, auth: string | undefined, clusterKey: boolean): CheckResult {
  const name = 'bpf-steering';
  if (plain === undefined) return skip(name, 'not probed: the addon does not load (see addon)');
  const off =
    'kernel steering is off: the broker hands every connection over itself (connections work, set-up costs a broker wakeup and an fd passing more)';
  const fix = 'run the broker as root (CAP_BPF and CAP_NET_ADMIN) on Linux 5.10 or newer with CONFIG_BPF_SYSCALL';
  if (plain !== '') return warn(name, `the steering program sf_steer does not load (${plain}); ${off}`, fix);
  if (auth === '') return ok(name, 'the steering programs load: sf_steer, and sf_steer_auth for a cluster key');
  if (clusterKey) {
    return warn(
      name,
      `sf_steer loads, but sf_steer_auth, the one a cluster key needs, does not (${auth}); with a cluster key ${off}`,
      `Linux ${KERNEL_AUTH_MIN.join('.')} or newer (bpf_ktime_get_tai_ns)`,
    );
  }
  return ok(name, `the steering program sf_steer loads; sf_steer_auth (for a cluster key) does not: ${auth}`);
}

export interface PathFacts {
  exists: boolean;
  isDir?: boolean;
  isSocket?: boolean;
  uid?: number;
  mode?: number;
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

/** The state dir: root's, not writable by group or others, nor its containers/ dir; the control
 *  socket not open to others. A missing dir is fine when the daemon can create it. Both dirs must let
 *  others through (x): non-root processes of `slimfast container add` namespaces reach their
 *  sockets by path (the broker refuses whoever is not in the container's network namespace). */
export function stateDirCheck(
  dir: string,
  facts: { dir: PathFacts; containers: PathFacts; socket: PathFacts; creatable?: string; writable: boolean },
): CheckResult {
  const name = 'state-dir';
  const d = facts.dir;
  if (!d.exists) {
    if (facts.creatable === undefined) return ok(name, `${dir} does not exist yet; the daemon creates it (mode 755)`);
    return fail(
      name,
      `${dir} does not exist and cannot be created: ${facts.creatable}`,
      `create it as root (install -d -m 755 ${dir}) or pass another --state-dir`,
    );
  }
  if (!d.isDir) return fail(name, `${dir} is not a directory`, `remove it or pass another --state-dir`);
  const problems: string[] = [];
  const fixes: string[] = [];
  if (d.uid !== 0) {
    problems.push(`owned by uid ${d.uid}, not root: its owner can replace the control socket and the containers' sockets`);
    fixes.push(`chown root:root ${dir}`);
  }
  if ((d.mode ?? 0) & 0o022) {
    problems.push(
      `mode ${octal(d.mode!)} is writable by ${d.mode! & 0o002 ? 'anyone' : 'its group'}: the control socket or a container's socket could be replaced`,
    );
    fixes.push(`chmod go-w ${dir}`);
  }
  const c = facts.containers;
  if (c.exists && c.isDir && (c.uid !== 0 || (c.mode ?? 0) & 0o022)) {
    problems.push(`${dir}/containers (the containers' sockets) is ${c.uid !== 0 ? `owned by uid ${c.uid}` : `mode ${octal(c.mode!)}`}`);
    fixes.push(`chown root:root ${dir}/containers; chmod 711 ${dir}/containers`);
  }
  const s = facts.socket;
  if (s.exists && s.isSocket && (s.mode ?? 0) & 0o007) {
    problems.push(`the control socket ${dir}/slimfast.sock is mode ${octal(s.mode!)}: any local user could register containers`);
    fixes.push(`chmod 660 ${dir}/slimfast.sock (the broker sets 660 at start)`);
  }
  if (!facts.writable && !problems.length) {
    problems.push('not writable by this user');
    fixes.push('run the broker as root');
  }
  if (problems.length) return fail(name, `${dir}: ${problems.join('; ')}`, fixes.join('; '));
  const closed = [d.mode!, ...(c.exists && c.isDir ? [c.mode!] : [])].some((m) => !(m & 0o001));
  if (closed) {
    const which = !(d.mode! & 0o001) ? `${dir} is mode ${octal(d.mode!)}` : `${dir}/containers is mode ${octal(c.mode!)}`;
    return warn(
      name,
      `${which}: non-root processes of namespaces registered with \`slimfast container add\` cannot reach their broker sockets and stay off SlimFast (engine containers get a bind mount and are not affected)`,
      `chmod o+x ${dir} ${dir}/containers (the broker sets containers/ to 711 when it starts)`,
    );
  }
  const sock = s.exists ? (s.isSocket ? `; control socket mode ${octal(s.mode!)}` : '; slimfast.sock is not a socket (the daemon replaces it)') : '';
  return ok(name, `${dir}: root's, mode ${octal(d.mode!)}${sock}`);
}

/** "Max open files" of a /proc/PID/limits text: [soft, hard] (Infinity for "unlimited"), or undefined. */
export function parseNofile(limitsText: string): [number, number] | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limitsText);
  if (!m) return undefined;
  const n = (x: string) => (x === 'unlimited' ? Infinity : Number(x));
  return [n(m[1]), n(m[2])];
}

/** Below this the broker scales its per-container limits down (broker/daemon.ts LOW_NOFILE). */
export const NOFILE_WANTED = 65536;
/** Open descriptors past this share of the limit: the engine is near its budget (an eighth is kept for the control plane). */
export const NOFILE_BUSY = 0.8;
export const CAP_SYS_RESOURCE = 24;

/** Every capability the broker uses, by the name capabilities(7) gives it: the privileges check's three
 *  and CAP_SYS_RESOURCE, which raises RLIMIT_NOFILE (the descriptors check). deploy/kubernetes grants these. */
export const BROKER_CAPABILITIES: Record<string, number> = { CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF, CAP_SYS_RESOURCE };

export interface DescriptorFacts {
  /** The running broker's, from /proc/PID/limits and /proc/PID/fd (error: why they could not be read). */
  broker?: { pid: number; open?: number; soft?: number; hard?: number; error?: string };
  /** Without a broker: this shell's hard limit, fs.nr_open, and whether a broker started from here could raise the hard limit. */
  hard?: number;
  nrOpen?: number;
  canRaise?: boolean;
}

/** The broker's descriptors: its RLIMIT_NOFILE (it raises the soft limit to the hard one at start, as
 *  root the hard one to min(fs.nr_open, 1048576)) and how many it has open. */
export function descriptorsCheck(f: DescriptorFacts): CheckResult {
  const name = 'descriptors';
  const fix =
    'run the broker with a higher limit: LimitNOFILE=1048576 in its systemd unit (slimfast install systemd writes it), or ulimit -Hn 1048576 as root before slimfast daemon';
  const b = f.broker;
  if (b) {
    if (b.error || b.soft === undefined)
      return warn(
        name,
        `cannot read the descriptors of the broker, pid ${b.pid}: ${b.error ?? 'no "Max open files" line'}`,
        'run slimfast doctor as root',
      );
    const open = b.open ?? 0;
    const pct = Math.round((open / b.soft) * 100);
    const detail = `pid ${b.pid}: ${open} of ${b.soft} descriptors open (${pct} %)`;
    if (b.soft < NOFILE_WANTED) {
      return warn(
        name,
        `${detail}; a limit below ${NOFILE_WANTED} makes the broker scale its per-container limits down (fewer broker connections, pools, listeners per container)`,
        fix,
      );
    }
    if (open > b.soft * NOFILE_BUSY) {
      return warn(
        name,
        `${detail}: near the limit; at the budget it keeps below the limit for its control plane the broker refuses new broker connections, pools, listeners and connects of every container (limit_fds)`,
        'see which container holds them (slimfast status: preload_conns, pools, listeners; the limit_* counters), or raise the limit',
      );
    }
    return ok(name, detail);
  }
  if (f.hard === undefined) return skip(name, "no broker runs, and this shell's limit cannot be read");
  const cap = Math.min(f.nrOpen ?? 1048576, 1048576);
  const would = f.canRaise ? Math.max(f.hard, cap) : f.hard;
  const detail = `no broker runs; one started from here would raise RLIMIT_NOFILE to ${would}${f.canRaise && would > f.hard ? ` (the hard limit ${f.hard} raised to fs.nr_open or 1048576)` : ' (its hard limit)'}`;
  return would < NOFILE_WANTED
    ? warn(name, `${detail}, below ${NOFILE_WANTED}: its per-container limits would be scaled down`, fix)
    : ok(name, detail);
}

export interface BrokerFacts {
  dir: string;
  pidFilePid?: number;
  pidAlive?: boolean;
  socketExists: boolean;
  health?: HealthMsg;
  error?: string;
}

export function brokerCheck(b: BrokerFacts): CheckResult {
  const name = 'broker';
  if (b.health) {
    const h = b.health;
    return ok(
      name,
      `pid ${h.pid} serves ${b.dir}: host ${h.hostIp}:${h.port}, subnet ${h.subnet}, membership ${h.membership}` +
        `${h.membership === 'etcd' ? ` (${h.etcdState}${h.etcdError ? `: ${h.etcdError}` : ''})` : ''}, headers ${h.headerAuth}, up ${Math.round(h.uptimeSeconds)} s`,
    );
  }
  if (b.socketExists && b.pidAlive) {
    return fail(
      name,
      `pid ${b.pidFilePid} holds ${b.dir} but its control socket does not answer (${b.error ?? 'no answer'})`,
      `look at that broker's log; restart it (kill ${b.pidFilePid}, then slimfast daemon … --state-dir ${b.dir})`,
    );
  }
  if (b.pidAlive) {
    return warn(
      name,
      `pid ${b.pidFilePid} holds ${b.dir} but serves no control socket (still starting, or not a broker)`,
      `wait for it, or stop pid ${b.pidFilePid} and start slimfast daemon --state-dir ${b.dir}`,
    );
  }
  if (b.pidFilePid !== undefined)
    return skip(name, `none runs for ${b.dir} (pid ${b.pidFilePid} left its pid file; the next daemon takes the dir over)`);
  return skip(name, `none runs for ${b.dir}`);
}

export interface Holder {
  local: string;
  pid?: number;
  command?: string;
}

/** `ss -Hltnp` lines -> the listeners and, when ss can tell, their processes. */
export function parseSsListeners(out: string): Holder[] {
  const res: Holder[] = [];
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[0] !== 'LISTEN') continue;
    const m = /users:\(\("([^"]*)",pid=(\d+)/.exec(line);
    res.push({ local: f[3], pid: m ? Number(m[2]) : undefined, command: m ? m[1] : undefined });
  }
  return res;
}

export interface PortFacts {
  hostIp?: string;
  port: number;
  /** Result of binding the address: undefined = it could be bound (free), else the errno code. */
  bindError?: string;
  holders: Holder[];
  broker?: HealthMsg;
  /** The pid in the state dir's pid file, if that process is alive. */
  stateDirPid?: number;
  addresses: string[];
}

export function portCheck(p: PortFacts): CheckResult {
  const name = 'reserved-port';
  const where = `${p.hostIp ?? '0.0.0.0'}:${p.port}`;
  const b = p.broker;
  const brokerHere = b && b.port === p.port && (p.hostIp === undefined || b.hostIp === p.hostIp);
  if (brokerHere && (p.bindError === undefined || p.bindError === 'EADDRNOTAVAIL')) {
    const here = p.bindError === undefined ? `${where} is free` : `${p.hostIp ?? b.hostIp} is no address`;
    return warn(
      name,
      `the broker (pid ${b.pid}) says it serves ${b.hostIp}:${b.port}, but ${here} in this network namespace`,
      "run slimfast doctor in the broker's network namespace",
    );
  }
  if (p.bindError === undefined) {
    return ok(name, `${where} is free${b ? ` (the broker of the state dir serves ${b.hostIp}:${b.port})` : ''}`);
  }
  if (p.bindError === 'EADDRNOTAVAIL') {
    return fail(
      name,
      `${p.hostIp} is not an address of this host (network namespace)`,
      `pass --host-ip with one of its addresses: ${p.addresses.join(', ') || '(none)'}`,
    );
  }
  if (p.bindError !== 'EADDRINUSE')
    return fail(name, `cannot bind ${where}: ${p.bindError}`, p.bindError === 'EACCES' ? 'run the broker as root' : undefined);
  if (brokerHere) return ok(name, `${b.hostIp}:${b.port} is served by the SlimFast broker of the state dir, pid ${b.pid}`);
  const pids = [...new Set(p.holders.map((h) => h.pid).filter((x): x is number => x !== undefined))];
  const who = p.holders
    .filter((h) => h.pid !== undefined)
    .map((h) => `pid ${h.pid} (${h.command})`)
    .filter((x, i, a) => a.indexOf(x) === i);
  if (p.stateDirPid !== undefined && pids.includes(p.stateDirPid)) {
    return fail(
      name,
      `${where} is held by pid ${p.stateDirPid}, the broker of the state dir, which does not answer its control socket`,
      `restart that broker (kill ${p.stateDirPid})`,
    );
  }
  const by = who.length ? `by ${who.join(', ')}` : 'by a process ss cannot name';
  return fail(
    name,
    `${where} is in use ${by}${p.holders.length ? ` (listening on ${[...new Set(p.holders.map((h) => h.local))].join(', ')})` : ''}`,
    `${pids.length ? `stop ${pids.map((x) => `pid ${x}`).join(', ')}` : 'free the port'}, or run the broker on another --port (the same on every host)`,
  );
}

/** What <prefix>/cluster-key in etcd holds (doctor --etcd): a key's fingerprint, nothing, or
 *  something that is no key; error: it could not be read. */
export interface EtcdKeyFacts {
  name: string;
  fingerprint?: string;
  absent?: boolean;
  bad?: string;
  error?: string;
}

/**
 * The cluster key: the --cluster-key file (size, mode); else what the running broker of the state
 * dir signs with (a warning when it runs with --insecure-host-keys); else, with --etcd, the key
 * the brokers share there.
 */
export function clusterKeyCheck(file: string | undefined, facts: { running?: HealthMsg; etcd?: EtcdKeyFacts } = {}): CheckResult {
  const name = 'cluster-key';
  const r = facts.running;
  const e = facts.etcd;
  const make = (f: string) => `${makeKeyHint(f)}, then copy the same file to every host`;
  if (file !== undefined) {
    let k: ReturnType<typeof loadClusterKey>;
    try {
      k = loadClusterKey(file);
    } catch (err) {
      return fail(name, errMsg(err), make(file));
    }
    if (k.warning) return warn(name, `${k.key.length} bytes; ${k.warning}`, `chmod 600 ${file}`);
    const fp = keyFingerprint(k.key);
    if (r?.clusterKeyFingerprint && r.clusterKeyFingerprint !== fp) {
      return warn(
        name,
        `${file} (fingerprint ${fp}) is not the key the running broker signs with (${r.clusterKeySource}, fingerprint ${r.clusterKeyFingerprint})`,
        'give every broker of the cluster the same key',
      );
    }
    if (e?.fingerprint && e.fingerprint !== fp) {
      return warn(
        name,
        `${file} (fingerprint ${fp}) is not the key in etcd at ${e.name} (fingerprint ${e.fingerprint}), which brokers started without --cluster-key use: they and brokers with this file refuse each other`,
        `give every broker the same key: this file everywhere, or none (etcd's; etcdctl get --print-value-only ${e.name} > ${file} makes the file hold it)`,
      );
    }
    return ok(name, `${file}: ${k.key.length} bytes, readable by its owner only, fingerprint ${fp}`);
  }
  if (r?.headerAuth === 'insecure host keys') {
    return warn(
      name,
      'the running broker has no cluster key (--insecure-host-keys): its peers take the host keys it announces in the clear, and so would they ' +
        "from anything that reaches their reserved port from this host's address (a container whose traffic the host masquerades, say), which can then pose as this host",
      `${make(DEFAULT_KEY_FILE)}; start every broker with --cluster-key ${DEFAULT_KEY_FILE} instead of --insecure-host-keys (with --etcd, leave the flag out: they share a key through etcd)`,
    );
  }
  if (r?.headerAuth === 'cluster key') {
    const used = `the running broker signs and checks every header with the cluster key from ${r.clusterKeySource} (fingerprint ${r.clusterKeyFingerprint})`;
    if (e?.fingerprint && r.clusterKeySource.startsWith(`etcd ${e.name}`) && e.fingerprint !== r.clusterKeyFingerprint) {
      return warn(
        name,
        `${used}, but ${e.name} in etcd now holds another (fingerprint ${e.fingerprint}): brokers started now would take that one and refuse this one`,
        `put the broker's key back at ${e.name}, or stop every broker and start them all again`,
      );
    }
    return ok(name, used);
  }
  if (r) return ok(name, 'the running broker serves a lone host (no peers): no cluster key needed');
  if (e) {
    if (e.error) return skip(name, `${e.name} not read (${e.error}); see etcd`);
    if (e.bad) {
      return fail(
        name,
        `${e.name} in etcd holds no cluster key (${e.bad}): brokers started without --cluster-key refuse to start`,
        `if no broker uses it, etcdctl del ${e.name} (the next broker makes one); else put the cluster's key back there`,
      );
    }
    if (e.absent) return ok(name, `no key at ${e.name} yet: the first broker started without --cluster-key creates one, and every other one uses it`);
    return ok(name, `${e.name} in etcd holds the cluster key (fingerprint ${e.fingerprint}): brokers started without --cluster-key sign with it`);
  }
  return skip(
    name,
    'no --cluster-key given (brokers with --peers naming other hosts need one, or --insecure-host-keys; with --etcd they share one there)',
  );
}

// ---------------------------------------------------------------------------------------------
// Gathering facts (each bounded in time).

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function pathFacts(p: string): PathFacts {
  try {
    const st = fs.lstatSync(p);
    return { exists: true, isDir: st.isDirectory(), isSocket: st.isSocket(), uid: st.uid, mode: st.mode };
  } catch {
    return { exists: false };
  }
}

/** undefined when the directory can be created, else why not. */
function whyNotCreatable(dir: string): string | undefined {
  let p = path.resolve(dir);
  while (!fs.existsSync(p)) {
    const up = path.dirname(p);
    if (up === p) break;
    p = up;
  }
  try {
    if (!fs.statSync(p).isDirectory()) return `${p} is not a directory`;
    fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
    return undefined;
  } catch (err) {
    return `${p} is not writable by this user (${(err as NodeJS.ErrnoException).code ?? errMsg(err)})`;
  }
}

function onPath(prog: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, prog);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function probeBroker(dir: string): Promise<BrokerFacts> {
  const layout = stateLayout(dir);
  const facts: BrokerFacts = { dir: layout.dir, socketExists: fs.existsSync(layout.controlSocket) };
  const pid = Number(readText(layout.pidFile)?.trim());
  if (Number.isInteger(pid) && pid > 0) {
    facts.pidFilePid = pid;
    facts.pidAlive = pidAlive(pid);
  }
  if (!facts.socketExists) return facts;
  const client = new ControlClient(dir, 2000);
  try {
    facts.health = await withDeadline(client.health(), 3000, 'the control socket');
  } catch (err) {
    facts.error = errMsg(err);
  } finally {
    client.close();
  }
  return facts;
}

/** Binds ip:port for a moment: undefined when that works, else the errno code. */
function tryBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    const timer = setTimeout(() => {
      srv.close();
      resolve('ETIMEDOUT');
    }, 2000);
    srv.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
    srv.listen({ host, port, exclusive: true }, () => {
      clearTimeout(timer);
      srv.close(() => resolve(undefined));
    });
  });
}

async function listenersOn(port: number): Promise<Holder[]> {
  const r = await execa('ss', ['-Hltnp', `sport = :${port}`], { reject: false, timeout: 3000 });
  return r.exitCode === 0 ? parseSsListeners(String(r.stdout)) : [];
}

function ipv4Addresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => !!a && a.family === 'IPv4')
    .map((a) => a.address);
}

async function portFacts(hostIp: string | undefined, port: number, broker: BrokerFacts): Promise<PortFacts> {
  const bindError = await tryBind(hostIp ?? '0.0.0.0', port);
  const holders =
    bindError === 'EADDRINUSE'
      ? (await listenersOn(port)).filter((h) => {
          const ip = h.local
            .replace(/:\d+$/, '')
            .replace(/^\[|\]$/g, '')
            .replace(/%.*$/, '');
          return hostIp === undefined || ip === hostIp || ip === '0.0.0.0' || ip === '*' || ip === '::';
        })
      : [];
  return {
    hostIp,
    port,
    bindError,
    holders,
    broker: broker.health,
    stateDirPid: broker.pidAlive ? broker.pidFilePid : undefined,
    addresses: ipv4Addresses(),
  };
}

function descriptorFacts(pid: number | undefined): DescriptorFacts {
  if (pid) {
    try {
      const lim = parseNofile(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
      const open = fs.readdirSync(`/proc/${pid}/fd`).length;
      return { broker: { pid, open, soft: lim?.[0], hard: lim?.[1] } };
    } catch (err) {
      return { broker: { pid, error: errMsg(err) } };
    }
  }
  const self = parseNofile(readText('/proc/self/limits') ?? '');
  const nr = Number(readText('/proc/sys/fs/nr_open')?.trim());
  return {
    hard: self?.[1],
    nrOpen: Number.isFinite(nr) && nr > 0 ? nr : undefined,
    canRaise: hasCap(parseCapEff(readText('/proc/self/status') ?? ''), CAP_SYS_RESOURCE),
  };
}

async function runcCheck(env: NodeJS.ProcessEnv): Promise<CheckResult> {
  const name = 'runc';
  let runc: string;
  try {
    runc = resolveRunc(env);
  } catch (err) {
    return fail(
      name,
      `the real runc slimfast-runc would run: ${errMsg(err)}`,
      `install runc (apt-get install runc), or point SLIMFAST_RUNC or "runc" in ${CONFIG_FILE} at the real runc`,
    );
  }
  const how = env.SLIMFAST_RUNC
    ? 'from SLIMFAST_RUNC'
    : runc === (readConfigFile() as { runc?: string }).runc
      ? `from ${CONFIG_FILE}`
      : 'found on PATH';
  const r = await execa(runc, ['--version'], { reject: false, timeout: 5000, stdin: 'ignore' });
  if (r.exitCode !== 0) {
    return fail(
      name,
      `${runc} (${how}) --version ${r.timedOut ? 'gave no answer in 5 s' : `exits ${r.exitCode ?? r.signal}`}: ${String(r.stderr).trim().split('\n')[0] ?? ''}`,
      `repair or replace ${runc}`,
    );
  }
  return ok(name, `${runc} (${how}): ${String(r.stdout).split('\n')[0].trim()}`);
}

/** runcOk: the runc check passed (else the pass-through is not tried: that failure is runc's). */
async function launcherCheck(runcOk: boolean): Promise<CheckResult> {
  const name = 'slimfast-runc';
  const file = installPaths().runc;
  const build = 'build it: make -C native/launcher (or npm run build:native)';
  try {
    if (!fs.statSync(file).isFile()) return fail(name, `${file} is not a file`, build);
    fs.accessSync(file, fs.constants.X_OK);
  } catch (err) {
    return fail(name, `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing (or a dangling link)' : errMsg(err)}`, build);
  }
  if (!runcOk) return ok(name, `${file} is executable (passing commands through not tried: see runc)`);
  const r = await execa(file, ['--version'], { reject: false, timeout: 5000, stdin: 'ignore' });
  if (r.exitCode !== 0 || !/^runc version/m.test(String(r.stdout))) {
    return fail(
      name,
      `${file} --version ${r.timedOut ? 'gave no answer in 5 s' : `exits ${r.exitCode ?? r.signal}`}: ${String(r.stderr).trim().split('\n')[0] ?? ''}`,
      build,
    );
  }
  return ok(name, `${file} passes runc's commands through`);
}

/** The seccomp keeper (native/keeper): without it a broker restart leaves seccomp containers
 *  without connect(); whether one serves this state dir (its socket answers). */
async function keeperCheck(layout: { seccompKeeperSocket: string }): Promise<CheckResult> {
  const name = 'seccomp-keeper';
  const file = installPaths().seccompKeeper;
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch (err) {
    return warn(
      name,
      `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : errMsg(err)}: containers on the seccomp path (io.slimfast.seccomp=true) lose connect() when their broker restarts`,
      'build it: make -C native/keeper (or npm run build:native)',
    );
  }
  const r = await execa(file, [], { reject: false, timeout: 5000, stdin: 'ignore' });
  if (r.exitCode !== 2 || !/^usage: slimfast-seccomp-keeper /m.test(String(r.stderr))) {
    return fail(
      name,
      `${file} does not run here (${r.timedOut ? 'no answer in 5 s' : `exit ${r.exitCode ?? r.signal}`})`,
      'rebuild it for this machine: make -C native/keeper',
    );
  }
  const serving = fs.existsSync(layout.seccompKeeperSocket);
  return ok(name, `${file} runs${serving ? `; one serves ${layout.seccompKeeperSocket}` : ' (the broker starts it)'}`);
}

async function preloadCheck(): Promise<CheckResult> {
  const name = 'preload';
  const file = installPaths().preload;
  if (!fs.existsSync(file)) return fail(name, `${file} is missing`, 'build it: make -C native/preload (or npm run build:native)');
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: file };
  delete env.SLIMFAST_SOCKET;
  const r = await execa('/bin/true', [], { reject: false, timeout: 5000, env, extendEnv: false, stdin: 'ignore' });
  const said = String(r.stderr).trim();
  if (r.exitCode !== 0 || said) {
    return fail(
      name,
      `/bin/true with LD_PRELOAD=${file} ${r.exitCode !== 0 ? `exits ${r.exitCode ?? r.signal}` : 'complains'}${said ? `: ${said.split('\n')[0]}` : ''}`,
      'rebuild it for this machine: make -C native/preload',
    );
  }
  return ok(name, `${file} loads into programs (LD_PRELOAD)`);
}

function addonCheck(): { result: CheckResult; plain?: string; auth?: string; confinement?: () => string } {
  const name = 'addon';
  let addon: ReturnType<typeof loadAddon>;
  try {
    addon = loadAddon();
  } catch (err) {
    return { result: fail(name, errMsg(err), 'npm run build:native') };
  }
  if (typeof addon.probeSteering !== 'function') {
    return { result: warn(name, 'the addon loads but is older than this command (no probeSteering)', 'npm run build:native') };
  }
  return {
    result: ok(name, 'build/Release/slimfast_addon.node loads'),
    plain: addon.probeSteering(false),
    auth: addon.probeSteering(true),
    confinement: typeof addon.probeConfinement === 'function' ? () => addon.probeConfinement() : undefined,
  };
}

function toolsCheck(env: NodeJS.ProcessEnv): CheckResult {
  const name = 'tools';
  const need = ['nsenter', 'ip'];
  const found = need.map((p) => [p, onPath(p, env)] as const);
  const missing = found.filter(([, p]) => !p).map(([n]) => n);
  if (missing.length) {
    return fail(
      name,
      `not on PATH: ${missing.join(', ')} (the broker reads a container's address with nsenter --net=… ip addr)`,
      'apt-get install util-linux iproute2',
    );
  }
  return ok(name, found.map(([, p]) => p).join(', '));
}

function configCheck(): CheckResult {
  const name = 'config';
  if (!fs.existsSync(CONFIG_FILE)) return ok(name, `no ${CONFIG_FILE}: defaults (state dir ${DEFAULT_STATE_DIR}, runc from PATH)`);
  try {
    const c = readConfigFile() as Record<string, unknown>;
    const keys = Object.entries(c).map(([k, v]) => `${k} ${JSON.stringify(v)}`);
    return ok(name, `${CONFIG_FILE}: ${keys.length ? keys.join(', ') : 'empty object (defaults)'}`);
  } catch (err) {
    return fail(name, errMsg(err), `fix or remove ${CONFIG_FILE}`);
  }
}

async function etcdCheck(endpoints: string[] | undefined, prefixFlag: string | undefined): Promise<CheckResult> {
  const name = 'etcd';
  if (!endpoints) return skip(name, 'no --etcd given');
  try {
    for (const e of endpoints) checkEtcdEndpoint(e);
  } catch (err) {
    return fail(name, errMsg(err), 'give --etcd as http://HOST:PORT[,http://HOST:PORT]');
  }
  const prefix = (prefixFlag ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '');
  const clients = endpoints.map((e) => new Etcd3({ hosts: [e], dialTimeout: 3000 }));
  try {
    const answers = await Promise.all(
      clients.map((c) =>
        withDeadline(c.maintenance.status(), 3000, 'status').then(
          (s) => ({ version: s.version }),
          (err: unknown) => ({
            error: errMsg(err)
              .replace(/\.?\s*Resolution note:.*$/s, '')
              .trim(),
          }),
        ),
      ),
    );
    const up = answers.flatMap((a, i) => ('version' in a ? [i] : []));
    const down = answers.map((a, i) => ('error' in a ? `${endpoints[i]} (${a.error})` : '')).filter(Boolean);
    if (!up.length) {
      return fail(name, `no answer from ${down.join(', ')}`, 'start etcd there, or fix --etcd (and the firewall between this host and etcd)');
    }
    const c = clients[up[0]];
    const key = `${prefix}/config`;
    let config: string | null;
    let hosts: number;
    try {
      [config, hosts] = await withDeadline(
        Promise.all([
          c.get(key).string(),
          c
            .getAll()
            .prefix(`${prefix}/subnets/`)
            .keys()
            .then((k) => k.length),
        ]),
        3000,
        `reading ${prefix}`,
      );
    } catch (err) {
      return fail(
        name,
        `${endpoints[up[0]]} answers but reading ${prefix} fails: ${errMsg(err)}`,
        "check etcd's health and its authentication settings",
      );
    }
    const reached = `${up.map((i) => `${endpoints[i]} (etcd ${(answers[i] as { version: string }).version})`).join(', ')} answer${up.length === 1 ? 's' : ''}`;
    const notes = down.length ? `; no answer from ${down.join(', ')}` : '';
    if (config === null) {
      return warn(
        name,
        `${reached}${notes}; no SlimFast network at ${key} yet`,
        `give the first daemon --cluster-cidr CIDR (e.g. 10.200.0.0/16), or put {"network":"10.200.0.0/16","subnetLen":24} at ${key}`,
      );
    }
    const detail = `${reached}${notes}; ${key} = ${config}; ${hosts} host(s) hold a subnet`;
    return down.length ? warn(name, detail, `start etcd at ${down.map((d) => d.split(' ')[0]).join(', ')} or drop it from --etcd`) : ok(name, detail);
  } finally {
    for (const c of clients) c.close();
  }
}

/** What <prefix>/cluster-key holds, read from the first endpoint that answers (bounded). */
async function etcdKeyFacts(endpoints: string[], prefixFlag: string | undefined): Promise<EtcdKeyFacts> {
  const name = `${(prefixFlag ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, '')}/${SHARED_KEY}`;
  try {
    for (const e of endpoints) checkEtcdEndpoint(e);
  } catch (err) {
    return { name, error: errMsg(err) };
  }
  const c = new Etcd3({ hosts: endpoints, dialTimeout: 3000 });
  try {
    const text = await withDeadline(c.get(name).string(), 3000, `reading ${name}`);
    if (text === null) return { name, absent: true };
    const key = parseHexClusterKey(text);
    return key ? { name, fingerprint: keyFingerprint(key) } : { name, bad: `not 16-64 bytes as hex digits: ${text.trim().length} characters` };
  } catch (err) {
    return {
      name,
      error: errMsg(err)
        .replace(/\.?\s*Resolution note:.*$/s, '')
        .trim(),
    };
  } finally {
    c.close();
  }
}

// ---------------------------------------------------------------------------------------------

export interface DoctorOptions {
  stateDir: string;
  hostIp?: string;
  port?: number;
  etcd?: string[];
  etcdPrefix?: string;
  clusterKey?: string;
  env?: NodeJS.ProcessEnv;
}

const CHECK_MS = 10_000;

async function bounded(name: string, fn: () => Promise<CheckResult> | CheckResult): Promise<CheckResult & { ms: number }> {
  const start = Date.now();
  let r: CheckResult;
  try {
    r = await withDeadline(Promise.resolve().then(fn), CHECK_MS, name);
  } catch (err) {
    r = fail(name, `the check itself failed: ${errMsg(err)}`);
  }
  return { ...r, name, ms: Date.now() - start };
}

/** Runs every check (concurrently) and returns them in a fixed order. */
export async function runDoctor(o: DoctorOptions): Promise<(CheckResult & { ms: number })[]> {
  const env = o.env ?? process.env;
  const broker = await probeBroker(o.stateDir);
  const port = o.port ?? broker.health?.port ?? 4800;
  const hostIp = o.hostIp ?? (o.port === undefined ? broker.health?.hostIp : undefined);
  const layout = stateLayout(o.stateDir);
  const addon = addonCheck();
  const uid = process.getuid?.() ?? -1;
  const runc = bounded('runc', () => runcCheck(env));
  // A cluster key: given, shared through etcd, or what the running broker signs with.
  const keyed =
    o.clusterKey !== undefined ||
    (o.etcd !== undefined && broker.health?.headerAuth !== 'insecure host keys') ||
    broker.health?.headerAuth === 'cluster key';
  return Promise.all([
    bounded('node', () => nodeCheck(process.version)),
    bounded('privileges', () => privilegesCheck(uid, parseCapEff(readText('/proc/self/status') ?? ''))),
    bounded('kernel', () => kernelCheck(os.release(), { netns: fs.existsSync('/proc/self/ns/net'), clusterKey: keyed })),
    bounded('tcp-fastopen', () => {
      let canWrite = false;
      try {
        fs.accessSync(TFO_SYSCTL, fs.constants.W_OK);
        canWrite = true;
      } catch {
        // read-only for this user
      }
      return tfoCheck(readText(TFO_SYSCTL), canWrite);
    }),
    bounded('addon', () => addon.result),
    bounded('bpf-steering', () => steeringCheck(addon.plain, addon.auth, keyed)),
    bounded('confinement', () =>
      broker.health ? confinementCheck(undefined, broker.health.unconfined ?? '') : confinementCheck(addon.confinement?.()),
    ),
    bounded('preload', preloadCheck),
    bounded('tools', () => toolsCheck(env)),
    bounded('config', configCheck),
    runc,
    bounded('slimfast-runc', async () => launcherCheck((await runc).status === 'ok')),
    bounded('seccomp-keeper', () => keeperCheck(layout)),
    bounded('state-dir', () =>
      stateDirCheck(layout.dir, {
        dir: pathFacts(layout.dir),
        containers: pathFacts(layout.containersDir),
        socket: pathFacts(layout.controlSocket),
        creatable: whyNotCreatable(layout.dir),
        writable: (() => {
          try {
            fs.accessSync(layout.dir, fs.constants.W_OK);
            return true;
          } catch {
            return false;
          }
        })(),
      }),
    ),
    bounded('broker', () => brokerCheck(broker)),
    bounded('descriptors', () => descriptorsCheck(descriptorFacts(broker.health?.pid))),
    bounded('reserved-port', async () => portCheck(await portFacts(hostIp, port, broker))),
    bounded('etcd', () => etcdCheck(o.etcd, o.etcdPrefix)),
    bounded('cluster-key', async () =>
      clusterKeyCheck(o.clusterKey, {
        running: broker.health,
        etcd: o.etcd ? await etcdKeyFacts(o.etcd, o.etcdPrefix) : undefined,
      }),
    ),
  ]);
}

function usageError(msg: string): number {
  process.stderr.write(`slimfast doctor: ${msg}\n\nusage:\n${DOCTOR_USAGE}`);
  return 2;
}

export async function doctor(args: string[]): Promise<number> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args,
      options: {
        'state-dir': { type: 'string' },
        'host-ip': { type: 'string' },
        port: { type: 'string' },
        etcd: { type: 'string' },
        'etcd-prefix': { type: 'string' },
        'cluster-key': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return usageError(errMsg(err));
  }
  let port: number | undefined;
  if (v.port !== undefined) {
    port = Number(v.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) return usageError(`--port must be 1-65535, got "${String(v.port)}"`);
  }
  if (v['host-ip'] !== undefined && net.isIPv4(v['host-ip'] as string) === false)
    return usageError(`--host-ip must be an IPv4 address, got "${String(v['host-ip'])}"`);
  if (v['etcd-prefix'] !== undefined && v.etcd === undefined) return usageError('--etcd-prefix needs --etcd');
  const etcd =
    v.etcd === undefined
      ? undefined
      : (v.etcd as string)
          .split(',')
          .map((e) => e.trim())
          .filter(Boolean);
  if (etcd && etcd.length === 0) return usageError('--etcd needs at least one URL, e.g. --etcd http://10.0.0.5:2379');
  let stateDir: string;
  try {
    stateDir = resolveStateDir(v['state-dir'] as string | undefined);
  } catch {
    stateDir = DEFAULT_STATE_DIR; // the config check says what is wrong with the file
  }
  const checks = await runDoctor({
    stateDir,
    hostIp: v['host-ip'] as string | undefined,
    port,
    etcd,
    etcdPrefix: v['etcd-prefix'] as string | undefined,
    clusterKey: v['cluster-key'] as string | undefined,
  });
  const failed = checks.filter((c) => c.status === 'fail');
  const warned = checks.filter((c) => c.status === 'warn');
  if (v.json) {
    console.log(JSON.stringify({ ok: failed.length === 0, stateDir: path.resolve(stateDir), checks }, null, 2));
    return failed.length ? 1 : 0;
  }
  printTable(
    undefined,
    ['check', 'status', 'detail'],
    checks.map((c) => [c.name, c.status, c.detail]),
  );
  const fixes = checks.filter((c) => c.fix && (c.status === 'fail' || c.status === 'warn'));
  if (fixes.length) {
    console.log('\nto fix:');
    for (const c of fixes) console.log(`  ${c.name}: ${c.fix}`);
  }
  console.log(
    failed.length
      ? `\n${failed.length} check(s) failed${warned.length ? `, ${warned.length} warning(s)` : ''}: fix the failures before running SlimFast here`
      : `\nready${warned.length ? `, with ${warned.length} warning(s)` : ''}`,
  );
  return failed.length ? 1 : 0;
}
