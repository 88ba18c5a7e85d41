// slimfast-seccomp-keeper on its own (native/keeper/keeper.c): one keeper per state dir, bad input
// on runc's socket dropped without harm, a broker attaching gets the in-flight table first
// (SFK_HELLO with a memfd), a second broker is refused while one is attached, and the keeper
// exits by itself (removing its sockets) once nothing uses it. Its work with real notify fds and a
// real broker restart is test/seccomp.test.ts.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { installPaths } from '../common/paths.js';

const run = promisify(execFile);
const KEEPER = installPaths().seccompKeeper;
// The same program built with ASan + UBSan (make -C native/keeper sanitize); reports go to files.
const KEEPER_SAN = `${KEEPER}-san`;

// A broker's side of the link, in Python (Node has no SOCK_SEQPACKET): connect, read one
// datagram, print its type and whether a memfd came with it, then wait for `hold` seconds.
const BROKER_PY = `
import socket, struct, sys, os, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.settimeout(5)
try:
    msg, anc, flags, addr = s.recvmsg(64, socket.CMSG_SPACE(16))
except Exception as e:
    print("error", type(e).__name__); sys.exit(0)
if not msg:
    print("closed"); sys.exit(0)
magic, typ = struct.unpack_from("<IH", msg)
fds = []
for level, kind, data in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds += list(struct.unpack("%di" % (len(data) // 4), data[: len(data) - len(data) % 4]))
link = os.readlink("/proc/self/fd/%d" % fds[0]) if fds else ""
size = os.fstat(fds[0]).st_size if fds else 0
print("type=%d magic=%x fd=%s size=%d" % (typ, magic, "memfd" if "memfd:slimfast-inflight" in link else link or "none", size), flush=True)
time.sleep(float(sys.argv[2]))
`;
import { noSanitizerReports } from './lib/sanitizer.js';

function tmpDir(t: { teardown: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-keeper-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function keeperPids(dir: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return (
          fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`${dir}/seccomp-keeper.sock`) &&
          fs.readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('slimfast-seccom')
        );
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('usage errors and a path too long for a socket: a message and a non-zero exit, nothing left behind', async (t) => {
  t.true(fs.existsSync(KEEPER), `${KEEPER} is missing: npm run build:native`);
  const u = await run(KEEPER, []).then(
    () => null,
    (e) => e,
  );
  t.is(u?.code, 2);
  t.regex(u?.stderr ?? '', /usage: slimfast-seccomp-keeper RUNC_SOCKET BROKER_SOCKET/);
  const dir = tmpDir(t);
  const long = path.join(dir, 'x'.repeat(120));
  const e = await run(KEEPER, [long, path.join(dir, 'b.sock'), '--foreground']).then(
    () => null,
    (err) => err,
  );
  t.is(e?.code, 1);
  t.regex(e?.stderr ?? '', /cannot listen on .*File name too long/);
  t.deepEqual(
    fs.readdirSync(dir).filter((f) => f.endsWith('.sock')),
    [],
    'no socket left',
  );
});

const lifecycle = test.macro(async (t, keeper: string) => {
  t.timeout(60_000);
  t.true(fs.existsSync(keeper), `${keeper} is missing: make -C native/keeper all sanitize`);
  const dir = tmpDir(t);
  const sanLog = path.join(dir, 'san');
  const run = (file: string, args: string[]) =>
    promisify(execFile)(file, args, {
      env: { ...process.env, ASAN_OPTIONS: `log_path=${sanLog}:detect_leaks=1`, UBSAN_OPTIONS: `log_path=${sanLog}:print_stacktrace=1` },
    });
  const KEEPER = keeper;
  const runcSock = path.join(dir, 'seccomp.sock');
  const brokerSock = path.join(dir, 'seccomp-keeper.sock');
  const logFile = path.join(dir, 'keeper.log');
  t.teardown(() => {
    for (const p of keeperPids(dir)) process.kill(p, 'SIGKILL');
  });
  const first = await run(KEEPER, [runcSock, brokerSock, '--log', logFile]);
  t.regex(first.stdout, /running \(pid (\d+)\)/);
  const pid = Number(/pid (\d+)/.exec(first.stdout)![1]);
  const second = await run(KEEPER, [runcSock, brokerSock, '--log', logFile]);
  t.regex(second.stdout, /already running/, 'a second start finds the first');
  t.deepEqual(keeperPids(dir), [pid]);
  t.is(fs.statSync(runcSock).mode & 0o777, 0o600, 'root only: whoever sends a notify fd picks its container');

  // Not runc: no fd, not JSON, too much.
  for (const payload of [
    Buffer.from('{"pid": 1, "metadata": "x", "fds": ["seccompFd"]}'),
    Buffer.from('\x00\x01garbage'),
    Buffer.alloc(1.5 * 1024 * 1024, 0x7b),
  ]) {
    await new Promise<void>((resolve) => {
      const c = net.connect(runcSock, () => c.end(payload));
      c.on('error', () => resolve());
      c.on('close', () => resolve());
      c.resume();
    });
  }
  await waitFor(
    () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '').includes('without a seccomp notify fd'),
    5000,
    'the keeper to drop the states',
  );
  const log = fs.readFileSync(logFile, 'utf8');
  t.regex(log, /a container state without a seccomp notify fd: dropped/);
  t.regex(log, /a container state larger than 1048576 bytes: dropped/);
  t.deepEqual(keeperPids(dir), [pid], 'still running');

  // A broker attaches: the first datagram is SFK_HELLO with the memfd of 1024 slots of 144 bytes.
  const b1 = spawn('python3', ['-c', BROKER_PY, brokerSock, '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out1 = '';
  b1.stdout.on('data', (d) => (out1 += d));
  await waitFor(() => out1.includes('\n'), 5000, 'the first broker to get its hello');
  t.is(out1.trim(), `type=1 magic=53464b31 fd=memfd size=${1024 * 144}`);
  // A second broker while the first is attached: closed without a hello.
  const b2 = await run('python3', ['-c', BROKER_PY, brokerSock, '0']);
  t.is(b2.stdout.trim(), 'closed');
  await new Promise((r) => b1.on('exit', r));
  await waitFor(() => fs.readFileSync(logFile, 'utf8').includes('broker detached'), 5000, 'the keeper to see the broker go');

  // Nothing attached, no container: gone within the idle time (10 s), sockets removed.
  await waitFor(() => keeperPids(dir).length === 0, 15_000, 'the keeper to exit');
  t.false(fs.existsSync(runcSock));
  t.false(fs.existsSync(brokerSock));
  t.regex(fs.readFileSync(logFile, 'utf8'), /exiting: nothing to keep/);
  noSanitizerReports(t, dir, 'san');
});

test(
  'one keeper per state dir; garbage from "runc" is dropped; a broker gets the in-flight table first and a second one is refused; idle, it exits and removes its sockets',
  lifecycle,
  KEEPER,
);
test('the same under ASan and UBSan, with no report', lifecycle, KEEPER_SAN);

test('SIGTERM with no container state held: it exits at once', async (t) => {
  const dir = tmpDir(t);
  t.teardown(() => {
    for (const p of keeperPids(dir)) process.kill(p, 'SIGKILL');
  });
  const child = spawn(KEEPER, [path.join(dir, 's.sock'), path.join(dir, 'seccomp-keeper.sock'), '--foreground'], { stdio: 'ignore' });
  await waitFor(() => fs.existsSync(path.join(dir, 'seccomp-keeper.sock')), 5000, 'the keeper to serve');
  const t0 = Date.now();
  child.kill('SIGTERM');
  const code = await new Promise((r) => child.on('exit', (c) => r(c)));
  t.is(code, 0);
  t.true(Date.now() - t0 < 2000, 'within a tick or two');
  t.false(fs.existsSync(path.join(dir, 's.sock')));
});
