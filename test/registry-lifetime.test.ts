// A registration lives as long as the container's init process: the registry watches it (a pidfd on
// Node's event loop, native/addon/pid_watch.cc) and unregisters the container when it exits; a
// container joining a registered namespace shares that registration through a hard link; a restart
// drops records whose process is gone and socket directories nobody names. Real processes in network
// namespaces of their own stand in for containers; the engine is a recorder.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parseCidr } from '../common/cidr.js';
import type { NativeEngine } from '../broker/native-engine.js';
import { type ExitWatcher, PidfdExitWatcher } from '../broker/process-exit.js';
import { Registry } from '../broker/registry.js';
import { containerSocketDir, type StateLayout, stateLayout } from '../common/state-dir.js';

const cleanups: (() => void)[] = [];
test.after.always(() => {
  for (const c of cleanups.reverse()) c();
});

/** A process in a network namespace of its own (a container's init), killed at the end. */
async function initProcess(): Promise<ChildProcess> {
  const p = spawn('unshare', ['--net', 'sleep', '60'], { stdio: 'ignore' });
  cleanups.push(() => p.kill('SIGKILL'));
  // unshare execs sleep once the namespace is made: wait until the pid's namespace is not ours.
  const ours = fs.readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 100; i++) {
    try {
      if (fs.readlinkSync(`/proc/${p.pid}/ns/net`) !== ours) return p;
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('unshare --net did not start');
}

function lab(watcher?: ExitWatcher) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-lifetime-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const layout: StateLayout = stateLayout(path.join(dir, 'state'));
  fs.mkdirSync(layout.containersDir, { recursive: true });
  // Like the real engine, it makes the container's socket file and unlinks it on removal.
  const sockets = new Map<string, string>();
  const engine = {
    added: [] as string[],
    removed: [] as string[],
    addContainer(id: string, _ip: string, socket: string) {
      this.added.push(id);
      fs.rmSync(socket, { force: true });
      fs.writeFileSync(socket, '');
      sockets.set(id, socket);
    },
    removeContainer(id: string) {
      this.removed.push(id);
      fs.rmSync(sockets.get(id) ?? '', { force: true });
    },
  };
  const exited: string[] = [];
  const reg = new Registry(
    layout,
    engine as unknown as NativeEngine,
    parseCidr('10.9.0.0/24'),
    watcher ? { watcher, exited: (id, shared) => exited.push(`${id}${shared ? ' (share)' : ''}`) } : undefined,
  );
  return { reg, layout, engine, exited, dir: (id: string) => containerSocketDir(layout, id) };
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test.serial('the init process exits: the container is unregistered and its socket directory removed', async (t) => {
  const l = lab(new PidfdExitWatcher());
  const init = await initProcess();
  const rec = l.reg.add({ id: 'c1', ip: '10.9.0.2', netns: `/proc/${init.pid}/ns/net`, pid: init.pid });
  t.true(fs.existsSync(l.dir('c1')));
  const other = await initProcess();
  l.reg.add({ id: 'c2', ip: '10.9.0.3', netns: `/proc/${other.pid}/ns/net`, pid: other.pid });
  init.kill('SIGKILL');
  await until('c1 to be unregistered', () => !l.reg.get('c1'));
  t.deepEqual(l.exited, ['c1']);
  t.deepEqual(l.engine.removed, ['c1']);
  t.false(fs.existsSync(path.dirname(rec.socket)));
  t.deepEqual(
    l.reg.list().map((c) => c.id),
    ['c2'],
    'the other container stays',
  );
  t.deepEqual(fs.readdirSync(l.layout.registrationsDir), ['c2.json'], "one file per registration: c1's went with it");
  // Removed before its exit (a poststop hook, `slimfast container rm`): the watch goes with it.
  t.true(l.reg.remove('c2'));
  other.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(l.exited, ['c1'], 'no exit reported for a container no longer registered');
  t.throws(() => l.reg.add({ id: 'c3', ip: '10.9.0.4', netns: '/proc/self/ns/net', pid: init.pid }), {
    message: /process \d+ of container "c3" has exited/,
  });
  t.false(fs.existsSync(l.dir('c3')), 'nothing left of a refused registration');
});

test.serial('an exit handled after a new start of the same id touched the socket directory leaves the directory', async (t) => {
  const l = lab(new PidfdExitWatcher());
  const init = await initProcess();
  const rec = l.reg.add({ id: 'web', ip: '10.9.0.2', netns: `/proc/${init.pid}/ns/net`, pid: init.pid });
  // The next start's spec edit (runtime-wrapper/spec.ts prepareHostPaths) claims the directory first.
  await new Promise((r) => setTimeout(r, 20));
  const later = new Date();
  fs.utimesSync(path.dirname(rec.socket), later, later);
  init.kill('SIGKILL');
  await until('web to be unregistered', () => !l.reg.get('web'));
  t.true(fs.existsSync(path.dirname(rec.socket)), 'the new start keeps its mount source');
  t.false(fs.existsSync(rec.socket), "the old registration's socket is gone");
  // The same id registered again while the old record is still there (its exit not handled yet):
  // the directory is kept for the new registration.
  const never: ExitWatcher = { watch: () => () => {} };
  const m = lab(never);
  const first = m.reg.add({ id: 'web', ip: '10.9.0.2', netns: '/proc/self/ns/net', pid: 1, netnsId: 'gone:3' });
  const ino = fs.statSync(path.dirname(first.socket)).ino;
  const second = m.reg.add({ id: 'web', ip: '10.9.0.2', netns: '/proc/self/ns/net', pid: process.pid });
  t.is(fs.statSync(path.dirname(second.socket)).ino, ino, 'the same directory (a container may have it mounted already)');
});

test.serial('a container in a registered namespace shares its registration; its exit removes only the share', async (t) => {
  const l = lab(new PidfdExitWatcher());
  const sandbox = await initProcess();
  const owner = l.reg.add({ id: 'sandbox', ip: '10.9.0.2', netns: `/proc/${sandbox.pid}/ns/net`, pid: sandbox.pid });
  fs.rmSync(owner.socket, { force: true });
  const server = net.createServer((c) => c.end('broker\n'));
  await new Promise<void>((r) => server.listen(owner.socket, r));
  cleanups.push(() => server.close());
  // The app container: another process in the sandbox's namespace.
  const app = spawn('nsenter', [`--net=/proc/${sandbox.pid}/ns/net`, 'sleep', '60'], { stdio: 'ignore' });
  cleanups.push(() => app.kill('SIGKILL'));
  await until('nsenter to enter', () => {
    try {
      return (
        fs.readlinkSync(`/proc/${app.pid}/ns/net`) === fs.readlinkSync(`/proc/${sandbox.pid}/ns/net`) &&
        fs.readlinkSync(`/proc/${app.pid}/exe`).endsWith('sleep')
      );
    } catch {
      return false;
    }
  });
  const share = l.reg.share({ id: 'app', netns: `/proc/${app.pid}/ns/net`, pid: app.pid });
  t.truthy(share);
  t.is(share!.owner, 'sandbox');
  t.is(fs.statSync(share!.socket).ino, fs.statSync(owner.socket).ino, "a hard link to the owner's socket");
  const reply = await new Promise<string>((resolve) => {
    let got = '';
    net
      .connect(share!.socket)
      .on('data', (b) => (got += b))
      .on('close', () => resolve(got));
  });
  t.is(reply, 'broker\n', "connecting through the link reaches the owner's socket");
  t.deepEqual(
    l.reg.list().map((c) => c.id),
    ['sandbox'],
    'still one registration',
  );
  t.deepEqual(l.engine.added, ['sandbox']);
  const stranger = await initProcess();
  t.is(l.reg.share({ id: 'other', netns: `/proc/${stranger.pid}/ns/net`, pid: stranger.pid }), undefined, 'no registration has that namespace');
  t.throws(() => l.reg.share({ id: 'app', netns: `/proc/${app.pid}/ns/net`, pid: app.pid }), { message: /"app" is already registered/ });
  app.kill('SIGKILL');
  await until('the share to go', () => l.reg.shared().length === 0);
  t.deepEqual(l.exited, ['app (share)']);
  t.false(fs.existsSync(l.dir('app')));
  t.true(fs.existsSync(owner.socket), 'the owner keeps its socket');
  t.deepEqual(l.engine.removed, []);
});

test.serial('a restart under the same id, or another id with the same IP, before the exit is handled replaces the old record', (t) => {
  const never: ExitWatcher = { watch: () => () => {} }; // the exit event has not arrived yet
  const l = lab(never);
  // pid 1's namespace identity does not match the recorded one: the init it names is gone.
  l.reg.add({ id: 'c1', ip: '10.9.0.2', netns: '/proc/self/ns/net', pid: 1, netnsId: 'gone:1' });
  const rec = l.reg.add({ id: 'c1', ip: '10.9.0.2', netns: '/proc/self/ns/net', pid: process.pid });
  t.is(rec.pid, process.pid);
  t.deepEqual(l.engine.removed, ['c1']);
  t.throws(
    () => l.reg.add({ id: 'c1', ip: '10.9.0.3', netns: '/proc/self/ns/net', pid: process.pid }),
    { message: /"c1" is already registered/ },
    'a live one is not replaced',
  );
  // Another id with the IP of a container whose init is gone (its exit not handled yet): the IP is free.
  l.reg.add({ id: 'old', ip: '10.9.0.7', netns: '/proc/self/ns/net', pid: 1, netnsId: 'gone:2' });
  l.reg.add({ id: 'new', ip: '10.9.0.7', netns: '/proc/self/ns/net', pid: process.pid });
  t.deepEqual(
    l.reg.list().map((c) => c.id),
    ['c1', 'new'],
  );
  t.throws(() => l.reg.add({ id: 'newer', ip: '10.9.0.7', netns: '/proc/self/ns/net', pid: process.pid }), {
    message: /IP 10\.9\.0\.7 is already used by container "new"/,
  });
});

test.serial('restore drops records whose init has exited and socket directories nobody names', async (t) => {
  const l = lab(new PidfdExitWatcher());
  const live = await initProcess();
  const dead = await initProcess();
  const deadPid = dead.pid!;
  const deadNs = `/proc/${deadPid}/ns/net`;
  const deadId = fs.statSync(deadNs);
  dead.kill('SIGKILL');
  await until('the process to go', () => !fs.existsSync(`/proc/${deadPid}/ns`));
  const rec = (id: string, ip: string, pid: number, netnsId: string) => ({
    id,
    ip,
    netns: `/proc/${pid}/ns/net`,
    netnsId,
    pid,
    socket: path.join(l.dir(id), 'sf.sock'),
    createdAt: '2026-12-07T00:00:00Z',
  });
  const st = fs.statSync(`/proc/${live.pid}/ns/net`);
  const records = [
    rec('live', '10.9.0.2', live.pid!, `${st.dev}:${st.ino}`),
    rec('dead', '10.9.0.3', deadPid, `${deadId.dev}:${deadId.ino}`),
    {
      id: 'orphaned-share',
      owner: 'dead',
      netns: deadNs,
      pid: deadPid,
      socket: path.join(l.dir('orphaned-share'), 'sf.sock'),
      createdAt: '2026-12-07T00:00:00Z',
    },
  ];
  fs.mkdirSync(l.layout.registrationsDir);
  for (const r of records) fs.writeFileSync(path.join(l.layout.registrationsDir, `${r.id}.json`), JSON.stringify(r));
  fs.writeFileSync(path.join(l.layout.registrationsDir, 'torn.json'), '{"id": "to');
  for (const id of ['live', 'dead', 'orphaned-share', 'old-orphan', 'young-orphan']) fs.mkdirSync(l.dir(id), { recursive: true });
  const old = new Date(Date.now() - 120_000);
  fs.utimesSync(l.dir('old-orphan'), old, old);
  const logs: string[] = [];
  l.reg.restore((m) => logs.push(m));
  t.deepEqual(
    l.reg.list().map((c) => c.id),
    ['live'],
  );
  t.deepEqual(l.reg.shared(), []);
  for (const id of ['dead', 'orphaned-share', 'old-orphan']) t.false(fs.existsSync(l.dir(id)), `${id}'s directory removed`);
  t.true(fs.existsSync(l.dir('live')));
  t.true(fs.existsSync(l.dir('young-orphan')), 'a directory made in the last minute may be a container starting');
  t.true(
    logs.some((m) => /dropping container dead/.test(m)),
    logs.join('\n'),
  );
  t.true(
    logs.some((m) => /dropping unreadable registration .*torn\.json/.test(m)),
    logs.join('\n'),
  );
  t.deepEqual(fs.readdirSync(l.layout.registrationsDir), ['live.json'], 'the records of what was dropped are gone');
  t.true(
    logs.some((m) => /dropping container orphaned-share: container dead, whose registration it shared, is gone/.test(m)),
    logs.join('\n'),
  );
  // The restored one is watched again.
  live.kill('SIGKILL');
  await until('live to be unregistered', () => l.reg.list().length === 0);
  t.deepEqual(l.exited, ['live']);
});
