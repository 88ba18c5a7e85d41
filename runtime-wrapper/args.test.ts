// runc command lines as engines really write them.
import test from 'ava';
import { RuncArgsError, parseRuncArgs } from './args.js';

const ID = 'f3a5c0de94e1b1f0a7d1c52c1b1e6a4b0e0d7c3a2b1c0d9e8f7a6b5c4d3e2f1a';
const TASK = `/run/containerd/io.containerd.runtime.v2.task/moby/${ID}`;
const split = (line: string) => line.trim().split(/\s+/);

test('containerd-shim (Docker) create: global flags, bundle, pid file, id', (t) => {
  const argv = split(
    `--root /run/docker/runtime-runc/moby --log ${TASK}/log.json --log-format json --systemd-cgroup create --bundle ${TASK} --pid-file ${TASK}/init.pid ${ID}`,
  );
  const a = parseRuncArgs(argv, '/somewhere');
  t.is(a.command, 'create');
  t.deepEqual(a.global, {
    root: '/run/docker/runtime-runc/moby',
    log: `${TASK}/log.json`,
    logFormat: 'json',
    systemdCgroup: true,
    debug: false,
    help: false,
    version: false,
  });
  t.is(a.bundle, TASK);
  t.is(a.containerId, ID);
  t.is(a.flags['pid-file'], `${TASK}/init.pid`);
  t.deepEqual(a.argv, argv, 'argv is kept unchanged for runc');
  t.deepEqual(a.commandArgs, argv.slice(argv.indexOf('create') + 1));
});

test('containerd-shim create with a console socket and no --bundle takes the working directory', (t) => {
  const a = parseRuncArgs(
    split(
      `--root /run/containerd/runc/k8s.io --log ${TASK}/log.json --log-format json create --pid-file ${TASK}/init.pid --console-socket /tmp/pty4242/pty.sock ${ID}`,
    ),
    TASK,
  );
  t.is(a.bundle, TASK);
  t.is(a.containerId, ID);
  t.is(a.flags['console-socket'], '/tmp/pty4242/pty.sock');
});

test('containerd-shim exec: --process file, detach, pid file', (t) => {
  const a = parseRuncArgs(
    split(
      `--root /run/docker/runtime-runc/moby --log ${TASK}/log.json --log-format json --systemd-cgroup exec --process /tmp/runc-process2345678 --detach --pid-file ${TASK}/0c1d.pid ${ID}`,
    ),
  );
  t.is(a.command, 'exec');
  t.is(a.process, '/tmp/runc-process2345678');
  t.is(a.containerId, ID);
  t.is(a.flags.detach, 'true');
  t.is(a.bundle, undefined);
});

test('Podman/conmon create and exec', (t) => {
  const ud = `/var/lib/containers/storage/overlay-containers/${ID}/userdata`;
  const c = parseRuncArgs(
    split(
      `--root /run/runc --systemd-cgroup create --bundle ${ud} --pid-file /run/containers/storage/overlay-containers/${ID}/userdata/pidfile ${ID}`,
    ),
  );
  t.is(c.global.root, '/run/runc');
  t.is(c.bundle, ud);
  t.is(c.containerId, ID);
  const e = parseRuncArgs(
    split(
      `--root /run/runc --systemd-cgroup exec --pid-file ${ud}/exec_pid_abc --process ${ud}/exec-process-123 --detach --tty --console-socket ${ud}/exec.sock ${ID}`,
    ),
  );
  t.is(e.process, `${ud}/exec-process-123`);
  t.is(e.containerId, ID);
  t.is(e.flags.tty, 'true');
});

test('--flag=value, single-dash long names and short aliases', (t) => {
  const a = parseRuncArgs(
    split(`--root=/run/runc -log=/tmp/l.json --log-format=json -systemd-cgroup --rootless=auto create -b=/b1 --bundle /b2 -pid-file=/p ${ID}`),
  );
  t.is(a.global.root, '/run/runc');
  t.is(a.global.log, '/tmp/l.json');
  t.is(a.global.logFormat, 'json');
  t.is(a.global.rootless, 'auto');
  t.true(a.global.systemdCgroup);
  t.is(a.bundle, '/b2', 'the last of -b/--bundle wins');
  t.is(a.flags['pid-file'], '/p');
  const e = parseRuncArgs(split(`exec -p=/proc.json -e A=1 --env=B=2 -u 1000:1000 -c CAP_NET_RAW ${ID}`));
  t.is(e.process, '/proc.json');
  t.is(e.flags.user, '1000:1000');
  t.is(e.containerId, ID);
});

test('boolean globals with explicit values', (t) => {
  const a = parseRuncArgs(split('--systemd-cgroup=false --debug=true --rootless false state x'));
  t.false(a.global.systemdCgroup);
  t.true(a.global.debug);
  t.is(a.global.rootless, 'false');
  t.is(a.command, 'state');
  t.deepEqual(a.commandArgs, ['x']);
});

test('create/run accept flags after the id (urfave/cli reorders them); the id is the last positional', (t) => {
  const a = parseRuncArgs(split(`create ${ID} --bundle /b --pid-file /p`));
  t.is(a.containerId, ID);
  t.is(a.bundle, '/b');
  const r = parseRuncArgs(split(`run -d --keep --no-subreaper --preserve-fds 2 -b bundle ${ID}`), '/tmp');
  t.is(r.command, 'run');
  t.is(r.bundle, '/tmp/bundle', 'a relative bundle is taken from the working directory');
  t.is(r.flags['preserve-fds'], '2');
  t.is(r.flags.detach, 'true');
  t.is(r.containerId, ID);
});

test('exec stops at the container id: what follows is the command, flags included', (t) => {
  const a = parseRuncArgs(['exec', '-t', ID, 'sh', '-c', 'echo --bundle --process /x', '-p', '/y']);
  t.is(a.containerId, ID);
  t.is(a.process, undefined);
  t.deepEqual(a.positionals, [ID, 'sh', '-c', 'echo --bundle --process /x', '-p', '/y']);
  const b = parseRuncArgs(['exec', '--', ID, 'ls']);
  t.is(b.containerId, ID);
});

test('version, help and no subcommand', (t) => {
  for (const line of ['--version', '-v', '--root /x -v']) {
    const a = parseRuncArgs(split(line));
    t.true(a.global.version, line);
    t.is(a.command, undefined);
  }
  t.true(parseRuncArgs(['-h']).global.help);
  t.true(parseRuncArgs(['--help']).global.help);
  const none = parseRuncArgs([]);
  t.is(none.command, undefined);
  t.deepEqual(none.argv, []);
});

test('pass-through subcommands: only the subcommand and its arguments are found', (t) => {
  const cases: [string, string, string[]][] = [
    [`--root /run/docker/runtime-runc/moby --log ${TASK}/log.json --log-format json start ${ID}`, 'start', [ID]],
    [`--root /run/docker/runtime-runc/moby --log ${TASK}/log.json --log-format json delete --force ${ID}`, 'delete', ['--force', ID]],
    [`--root /run/runc kill --all ${ID} 9`, 'kill', ['--all', ID, '9']],
    [`--root /run/runc state ${ID}`, 'state', [ID]],
    ['features', 'features', []],
    [`--root /run/runc ps --format json ${ID}`, 'ps', ['--format', 'json', ID]],
    [`--root /run/runc update --resources - ${ID}`, 'update', ['--resources', '-', ID]],
    [`--root /run/runc checkpoint --image-path /ck --leave-running ${ID}`, 'checkpoint', ['--image-path', '/ck', '--leave-running', ID]],
    ['init', 'init', []],
  ];
  for (const [line, cmd, rest] of cases) {
    const a = parseRuncArgs(split(line));
    t.is(a.command, cmd, line);
    t.deepEqual(a.commandArgs, rest, line);
    t.is(a.containerId, undefined, 'only create/run/exec are looked into');
  }
});

test('an unknown global flag is taken as a boolean, as the launcher does', (t) => {
  const a = parseRuncArgs(split(`--some-future-flag create --bundle /b ${ID}`));
  t.is(a.command, 'create');
  t.is(a.containerId, ID);
});

test('a value flag without its value is refused', (t) => {
  t.throws(() => parseRuncArgs(['--root']), { instanceOf: RuncArgsError, message: /--root/ });
  t.throws(() => parseRuncArgs(['create', '--bundle']), { instanceOf: RuncArgsError, message: /--bundle/ });
});

test('create without an id leaves it undefined (runc will complain)', (t) => {
  const a = parseRuncArgs(['create', '--bundle', '/b']);
  t.is(a.containerId, undefined);
});
