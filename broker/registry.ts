// Registered containers: validation, persistence in the state dir, and their native broker sockets.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { contains, type Cidr, formatCidr, parseIp } from './cidr.js';
import type { NativeEngine } from './native-engine.js';
import { nsIdentity } from './netns.js';
import { installPaths } from './paths.js';
import { type StateLayout, writeFileAtomic } from './state-dir.js';

export interface ContainerRecord {
  id: string;
  ip: string;
  netns: string;
  socket: string;
  pid: number;
  createdAt: string;
  /** "dev:ino" of the namespace at registration: a /proc/PID/ns/net path outlives its container when
   *  the pid is reused, so a restart checks the namespace, not only the path. */
  netnsId?: string;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** The directory of a container's broker socket (also bind-mounted into the container by slimfast-runc). */
export function containerSocketDir(layout: StateLayout, id: string): string {
  const h = crypto.createHash('sha256').update(id).digest('hex').slice(0, 12);
  return path.join(layout.containersDir, h);
}

export function containerEnv(rec: ContainerRecord): Record<string, string> {
  return { LD_PRELOAD: installPaths().preload, SLIMFAST_SOCKET: rec.socket };
}

export class Registry {
  private readonly byId = new Map<string, ContainerRecord>();

  constructor(
    private readonly layout: StateLayout,
    private readonly engine: NativeEngine,
    private readonly subnet: Cidr,
  ) {}

  list(): ContainerRecord[] {
    return [...this.byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  get(id: string): ContainerRecord | undefined {
    return this.byId.get(id);
  }

  /** Short per-container directory: Unix socket paths are limited to 107 bytes. */
  private socketDir(id: string): string {
    return containerSocketDir(this.layout, id);
  }

  add(input: { id: string; ip: string; netns: string; pid?: number; createdAt?: string; netnsId?: string }): ContainerRecord {
    if (!ID_RE.test(input.id)) {
      throw new Error(`container id "${input.id}" is invalid: use 1-128 characters from [A-Za-z0-9_.-], starting with a letter or digit`);
    }
    if (this.byId.has(input.id)) throw new Error(`container "${input.id}" is already registered; remove it first`);
    const ipNum = parseIp(input.ip);
    if (!contains(this.subnet, ipNum)) {
      throw new Error(`container IP ${input.ip} is outside this host's subnet ${formatCidr(this.subnet)}; fix the IP or start the daemon with the right --subnet/--peers`);
    }
    for (const other of this.byId.values()) {
      if (other.ip === input.ip) throw new Error(`IP ${input.ip} is already used by container "${other.id}"`);
    }
    const dir = this.socketDir(input.id);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.chmodSync(dir, 0o755); // whatever the umask: the container's processes of every uid pass through it
    const socket = path.join(dir, 'sf.sock');
    if (socket.length > 107) throw new Error(`socket path ${socket} is too long for a Unix socket; use a shorter --state-dir`);
    this.engine.addContainer(input.id, input.ip, socket, { netns: input.netns || undefined });
    const rec: ContainerRecord = {
      id: input.id,
      ip: input.ip,
      netns: input.netns,
      socket,
      pid: input.pid ?? 0,
      createdAt: input.createdAt ?? new Date().toISOString(),
      netnsId: input.netnsId ?? (input.netns ? nsIdentity(input.netns) : undefined),
    };
    this.byId.set(rec.id, rec);
    this.save();
    return rec;
  }

  remove(id: string): boolean {
    const rec = this.byId.get(id);
    if (!rec) return false;
    this.engine.removeContainer(id);
    this.byId.delete(id);
    fs.rmSync(path.dirname(rec.socket), { recursive: true, force: true });
    this.save();
    return true;
  }

  private save(): void {
    writeFileAtomic(this.layout.containersFile, JSON.stringify({ containers: this.list() }, null, 2) + '\n');
  }

  /** Re-registers containers recorded by an earlier daemon on this state dir whose namespaces still exist. */
  restore(log: (msg: string, fields: { container: string }) => void): void {
    let saved: ContainerRecord[] = [];
    try {
      saved = (JSON.parse(fs.readFileSync(this.layout.containersFile, 'utf8')) as { containers: ContainerRecord[] }).containers ?? [];
    } catch {
      return;
    }
    for (const rec of saved) {
      if (rec.netns && (!fs.existsSync(rec.netns) || (rec.netnsId && nsIdentity(rec.netns) !== rec.netnsId))) {
        log(`dropping container ${rec.id}: its network namespace ${rec.netns} is gone`, { container: rec.id });
        continue;
      }
      try {
        this.add(rec);
        log(`restored container ${rec.id} (${rec.ip})`, { container: rec.id });
      } catch (err) {
        log(`could not restore container ${rec.id}: ${(err as Error).message}`, { container: rec.id });
      }
    }
    this.save();
  }
}
