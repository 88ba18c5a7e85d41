// Registered containers: what depends on the registered set (ids and IPs in use; the rules one
// registration must meet are registration.ts's), persistence in the state dir, their native broker
// sockets, and their lifetime: the registry watches each container's init process and unregisters
// the container when it exits (no poststop hook needed). Containers that join a registered
// container's network namespace share its registration (ShareRecord).
import fs from 'node:fs';
import path from 'node:path';
import { ApiError } from '../common/api-errors.js';
import type { Cidr } from '../common/cidr.js';
import { nsIdentity } from '../common/netns.js';
import { installPaths } from '../common/paths.js';
import { containerSocketDir, type StateLayout } from '../common/state-dir.js';
import type { NativeEngine } from './native-engine.js';
import type { ExitWatcher } from './process-exit.js';
import { checkId, checkIp, checkSocketPath, isValidId } from './registration.js';
import { writeFileAtomic } from './state-dir.js';

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

/**
 * A container in a registered container's network namespace (a pod's app container, Docker's
 * --network container:X): its socket directory holds a hard link to the owner's broker socket, so its
 * processes reach the broker as the owner, which has the same IP.
 */
export interface ShareRecord {
  id: string;
  /** The registered container whose namespace and registration this one shares. */
  owner: string;
  netns: string;
  netnsId?: string;
  pid: number;
  socket: string;
  createdAt: string;
}

/** A socket directory nobody names is removed at start once it is this old: younger ones may be a
 *  container's whose start is under way (the spec edit makes the directory before registration). */
const ORPHAN_AGE_MS = 60_000;

/** Whether the process a record was taken from still runs in the recorded namespace. */
function initGone(rec: { pid: number; netnsId?: string }): boolean {
  return rec.pid > 0 && rec.netnsId !== undefined && nsIdentity(`/proc/${rec.pid}/ns/net`) !== rec.netnsId;
}

export function containerEnv(rec: ContainerRecord): Record<string, string> {
  return { LD_PRELOAD: installPaths().preload, SLIMFAST_SOCKET: rec.socket };
}

export class Registry {
  private readonly byId = new Map<string, ContainerRecord>();
  private readonly shares = new Map<string, ShareRecord>();
  /** Cancels the exit watch of a registered or sharing container's init process. */
  private readonly unwatch = new Map<string, () => void>();
  /** The socket directory's mtime once registration made its socket: a later one means a new start
   *  of the same id claimed the directory (the spec edit touches it), which an exit must not remove. */
  private readonly dirStamp = new Map<string, number>();

  /** exits: watch init processes (pid > 0) and call exited once a container was unregistered
   *  because of its init's exit. Unset: records live until removed. */
  constructor(
    private readonly layout: StateLayout,
    private readonly engine: NativeEngine,
    private readonly subnet: Cidr,
    private readonly exits?: { watcher: ExitWatcher; exited(id: string, shared: boolean): void },
  ) {}

  list(): ContainerRecord[] {
    return [...this.byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Containers sharing another's registration. */
  shared(): ShareRecord[] {
    return [...this.shares.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  get(id: string): ContainerRecord | undefined {
    return this.byId.get(id);
  }

  /** Short per-container directory: Unix socket paths are limited to 107 bytes. */
  private socketDir(id: string): string {
    return containerSocketDir(this.layout, id);
  }

  /** Refuses an id in use, unless its init has exited and the exit is not handled yet (a restart
   *  under the same id can come first): then that record goes now. */
  private claimId(id: string): void {
    checkId(id);
    const old = this.byId.get(id) ?? this.shares.get(id);
    if (!old) return;
    if (!initGone(old)) throw new ApiError('ALREADY_REGISTERED', `container "${id}" is already registered; remove it first`);
    this.release(id, 'keep'); // the same directory serves the new registration
  }

  /** Watches pid for exit (none: pid 0 or no watcher); throws when it has exited already. */
  private watchInit(id: string, pid: number): void {
    if (!this.exits || pid <= 0) return;
    const cancel = this.exits.watcher.watch(pid, () => {
      this.unwatch.delete(id);
      const shared = this.shares.has(id);
      if (this.release(id, 'unclaimed')) this.exits?.exited(id, shared);
    });
    if (!cancel) throw new ApiError('INIT_EXITED', `process ${pid} of container "${id}" has exited`);
    this.unwatch.set(id, cancel);
  }

  private cancelWatch(id: string): void {
    this.unwatch.get(id)?.();
    this.unwatch.delete(id);
  }

  add(input: { id: string; ip: string; netns: string; pid?: number; createdAt?: string; netnsId?: string }): ContainerRecord {
    this.claimId(input.id);
    checkIp(input.ip, this.subnet);
    for (const other of [...this.byId.values()]) {
      if (other.ip !== input.ip) continue;
      // A container whose init has exited (its exit not handled yet) no longer holds its IP.
      if (initGone(other)) this.release(other.id, 'unclaimed');
      else throw new ApiError('IP_IN_USE', `IP ${input.ip} is already used by container "${other.id}"`);
    }
    const dir = this.socketDir(input.id);
    const socket = path.join(dir, 'sf.sock');
    checkSocketPath(socket);
    this.watchInit(input.id, input.pid ?? 0);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      fs.chmodSync(dir, 0o755); // whatever the umask: the container's processes of every uid pass through it
      this.engine.addContainer(input.id, input.ip, socket, { netns: input.netns || undefined });
    } catch (err) {
      this.cancelWatch(input.id);
      throw err;
    }
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
    this.stampDir(rec.id, dir);
    this.writeRecord(rec);
    return rec;
  }

  private stampDir(id: string, dir: string): void {
    try {
      this.dirStamp.set(id, fs.statSync(dir).mtimeMs);
    } catch {
      this.dirStamp.delete(id);
    }
  }

  /** The registered container whose network namespace netns is, if any. */
  ownerOf(netns: string): ContainerRecord | undefined {
    const mine = nsIdentity(netns);
    if (!mine) return undefined;
    for (const c of this.byId.values()) if ((c.netnsId ?? nsIdentity(c.netns)) === mine) return c;
    return undefined;
  }

  /**
   * Makes container id share the registration of the container whose network namespace netns is:
   * links that container's socket into id's socket directory. Undefined when no registered container
   * has that namespace.
   */
  share(input: { id: string; netns: string; pid?: number }): ShareRecord | undefined {
    const owner = this.ownerOf(input.netns);
    if (!owner) return undefined;
    this.claimId(input.id);
    return this.addShare({
      id: input.id,
      owner: owner.id,
      netns: input.netns,
      netnsId: nsIdentity(input.netns),
      pid: input.pid ?? 0,
      socket: path.join(this.socketDir(input.id), path.basename(owner.socket)),
      createdAt: new Date().toISOString(),
    });
  }

  private addShare(rec: ShareRecord): ShareRecord {
    const owner = this.byId.get(rec.owner);
    if (!owner) throw new Error(`container "${rec.owner}" whose registration "${rec.id}" shares is not registered`);
    this.watchInit(rec.id, rec.pid);
    try {
      const dir = this.socketDir(rec.id);
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      fs.chmodSync(dir, 0o755); // bind-mounted: every uid in the container passes through it
      const link = path.join(dir, path.basename(owner.socket));
      fs.rmSync(link, { force: true });
      fs.linkSync(owner.socket, link); // same file system: both are in the state dir
      rec = { ...rec, socket: link };
    } catch (err) {
      this.cancelWatch(rec.id);
      throw err;
    }
    this.shares.set(rec.id, rec);
    this.stampDir(rec.id, path.dirname(rec.socket));
    this.writeRecord(rec);
    return rec;
  }

  /** Unregisters id and removes its socket directory (`slimfast container rm`, a poststop hook). */
  remove(id: string): boolean {
    return this.release(id, 'always');
  }

  /**
   * Unregisters id. Its socket directory goes 'always', never ('keep': a new registration of the same id
   * takes it over), or when 'unclaimed': only its socket (or link) goes, and the directory too unless a
   * new start of the same id has touched it since (its exit may be handled after that start's spec edit).
   */
  private release(id: string, dir: 'always' | 'keep' | 'unclaimed'): boolean {
    this.cancelWatch(id);
    const share = this.shares.get(id);
    const rec = share ?? this.byId.get(id);
    if (!rec) return false;
    const socketDir = path.dirname(rec.socket);
    const stamp = this.dirStamp.get(id);
    this.dirStamp.delete(id);
    let claimed = false; // read before the engine removes the socket, which changes the mtime
    if (dir === 'unclaimed') {
      try {
        claimed = stamp === undefined || fs.statSync(socketDir).mtimeMs !== stamp;
      } catch {
        // gone already
      }
    }
    if (share) this.shares.delete(id);
    else {
      this.engine.removeContainer(id);
      this.byId.delete(id);
    }
    if (dir === 'always') fs.rmSync(socketDir, { recursive: true, force: true });
    else if (dir === 'unclaimed') {
      fs.rmSync(rec.socket, { force: true });
      if (!claimed) fs.rmSync(socketDir, { recursive: true, force: true });
    }
    this.dropRecord(id);
    return true;
  }

  private recordFile(id: string): string {
    return path.join(this.layout.registrationsDir, `${id}.json`);
  }

  /**
   * One file per registration, made under a new name (never renamed over another file: ext4 writes a
   * file out before such a rename, about 2 ms of the broker's time per registration on this machine
   * kind's disks), so a register or an exit costs one small file, not a rewrite of every record.
   */
  private writeRecord(rec: ContainerRecord | ShareRecord): void {
    const file = this.recordFile(rec.id);
    const text = `${JSON.stringify(rec)}\n`;
    try {
      if (fs.readFileSync(file, 'utf8') === text) return; // a restore re-adding what is there
    } catch {
      // not there yet
    }
    fs.mkdirSync(this.layout.registrationsDir, { recursive: true, mode: 0o700 });
    writeFileAtomic(file, text);
  }

  private dropRecord(id: string): void {
    fs.rmSync(this.recordFile(id), { force: true });
  }

  /** What an earlier broker recorded: registrations/*.json, and a containers.json of older brokers. */
  private readSaved(log: (msg: string, fields: { container: string }) => void): { containers: ContainerRecord[]; shared: ShareRecord[] } {
    const out: { containers: ContainerRecord[]; shared: ShareRecord[] } = { containers: [], shared: [] };
    try {
      const old = JSON.parse(fs.readFileSync(this.layout.containersFile, 'utf8')) as { containers?: ContainerRecord[]; shared?: ShareRecord[] };
      out.containers.push(...(old.containers ?? []));
      out.shared.push(...(old.shared ?? []));
    } catch {
      // none (or unreadable)
    }
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.layout.registrationsDir).filter((n) => n.endsWith('.json'));
    } catch {
      // none yet
    }
    for (const name of names) {
      const file = path.join(this.layout.registrationsDir, name);
      try {
        const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as ContainerRecord | ShareRecord;
        if ('owner' in rec) out.shared.push(rec);
        else out.containers.push(rec);
      } catch (err) {
        log(`dropping unreadable registration ${file}: ${(err as Error).message}`, { container: name.replace(/\.json$/, '') });
        fs.rmSync(file, { force: true });
      }
    }
    return out;
  }

  /**
   * Re-registers containers recorded by an earlier daemon on this state dir whose namespaces (and,
   * with a watcher, init processes) still exist; drops the others with their socket directories, and
   * removes socket directories no record names (older than a minute): a container that exited while
   * no broker ran is unregistered here.
   */
  restore(log: (msg: string, fields: { container: string }) => void): void {
    const saved = this.readSaved(log);
    const drop = (id: string, why: string) => {
      log(`dropping container ${id}: ${why}`, { container: id });
      if (!isValidId(id)) return; // never a path outside the socket directories
      fs.rmSync(this.socketDir(id), { recursive: true, force: true });
      this.dropRecord(id);
    };
    const sameNs = (rec: { netns: string; netnsId?: string }) =>
      !rec.netns || (fs.existsSync(rec.netns) && (!rec.netnsId || nsIdentity(rec.netns) === rec.netnsId));
    for (const rec of saved.containers ?? []) {
      if (!sameNs(rec)) {
        drop(rec.id, `its network namespace ${rec.netns} is gone`);
        continue;
      }
      try {
        this.add(rec);
        log(`restored container ${rec.id} (${rec.ip})`, { container: rec.id });
      } catch (err) {
        log(`could not restore container ${rec.id}: ${(err as Error).message}`, { container: rec.id });
        if (!this.byId.has(rec.id)) drop(rec.id, 'not restored');
      }
    }
    for (const rec of saved.shared ?? []) {
      if (!this.byId.has(rec.owner)) drop(rec.id, `container ${rec.owner}, whose registration it shared, is gone`);
      else if (!sameNs(rec)) drop(rec.id, `its network namespace ${rec.netns} is gone`);
      else {
        try {
          this.claimId(rec.id);
          this.addShare(rec);
          log(`restored container ${rec.id} (sharing ${rec.owner})`, { container: rec.id });
        } catch (err) {
          drop(rec.id, (err as Error).message);
        }
      }
    }
    this.sweepOrphans(log);
    fs.rmSync(this.layout.containersFile, { force: true }); // its records are in registrations/ now
  }

  private sweepOrphans(log: (msg: string, fields: { container: string }) => void): void {
    const named = new Set([...this.byId.keys(), ...this.shares.keys()].map((id) => path.basename(this.socketDir(id))));
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(this.layout.containersDir);
    } catch {
      return;
    }
    const now = Date.now();
    for (const name of entries) {
      if (named.has(name)) continue;
      const dir = path.join(this.layout.containersDir, name);
      try {
        if (now - fs.lstatSync(dir).mtimeMs < ORPHAN_AGE_MS) continue;
        fs.rmSync(dir, { recursive: true, force: true });
        log(`removed socket directory ${dir}: no container is registered there`, { container: '' });
      } catch {
        // gone meanwhile
      }
    }
  }
}
