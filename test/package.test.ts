// The release tarball: what it holds, that the same tree gives the same bytes, that a tree without its
// native parts is refused with the command to run, and that an unpacked copy (in an empty directory,
// away from the repository) runs brokers on two emulated hosts that carry a cross-host connection
// between containers on SlimFast, with the unpacked tree's addon and preload library, and runs the
// demo (runc containers through its own slimfast-runc and slimfast-hook) from there.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { extract, list } from 'tar';
import { repoRoot } from '../common/paths.js';
import { PackageError, RELEASE_MTIME, type Release, buildRelease } from '../packaging/build.js';
import { Topology } from '../lab/topology.js';
import { ECHO_SERVER, echoRun, PY } from './lib/apps.js';

const BUILD = path.join(repoRoot(), 'dist', 'packaging', 'build.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
const TOP = `slimfast-${VERSION}`;

interface Entry {
  path: string;
  type: string;
  mode: number;
  uid?: number;
  gid?: number;
  uname?: string;
  mtime?: Date;
}

let work: string;
let release: Release;
let unpacked = ''; // the unpacked tree, once the test below made it
const entries: Entry[] = [];

test.before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'sfpkg-'));
  release = await buildRelease({ outDir: path.join(work, 'out') });
  await list({
    file: release.file,
    onReadEntry: (e) => entries.push({ path: e.path, type: e.type, mode: e.mode ?? 0, uid: e.uid, gid: e.gid, uname: e.uname, mtime: e.mtime }),
  });
});

test.after.always(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const has = (rel: string) => entries.some((e) => e.path === `${TOP}/${rel}`);

test.serial('the tarball holds the compiled code, the native parts, the launchers and the production dependencies only', (t) => {
  t.is(path.basename(release.file), `${TOP}-linux-x64.tar.gz`);
  t.true(release.bytes > 100_000 && release.bytes < 30_000_000, `${release.bytes} bytes`);
  t.true(
    entries.every((e) => e.path === `${TOP}/` || e.path.startsWith(`${TOP}/`)),
    'one top directory',
  );
  const names = entries.map((e) => e.path);
  // Sorted by path, a directory (listed with a trailing slash) before what it holds.
  const bare = names.map((n) => n.replace(/\/$/, ''));
  t.deepEqual(
    bare,
    [...bare].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
    'entries are sorted',
  );
  for (const rel of [
    'native/preload/libslimfast.so',
    'build/Release/slimfast_addon.node',
    'bin/slimfast',
    'bin/slimfast-runc',
    'bin/slimfast-hook',
    'dist/cli/main.js',
    'dist/broker/daemon.js',
    'dist/common/paths.js',
    'dist/installers/index.js',
    'dist/runtime-wrapper/main.js',
    'dist/hooks/main.js',
    'dist/demo/main.js',
    'proto/slimfast.proto',
    'package.json',
    'README.md',
    'MANIFEST',
    'LICENSE',
    'node_modules/@grpc/grpc-js/package.json',
    'node_modules/@grpc/proto-loader/package.json',
    'node_modules/etcd3/package.json',
    'node_modules/execa/package.json',
    'node_modules/tar/package.json',
    'node_modules/smol-toml/package.json',
  ])
    t.true(has(rel), rel);
  for (const rel of ['bin/slimfast', 'bin/slimfast-runc', 'bin/slimfast-hook']) {
    const e = entries.find((x) => x.path === `${TOP}/${rel}`)!;
    t.is(e.type, 'File', `${rel} is the program, not a link`);
    t.is(e.mode & 0o755, 0o755, rel);
  }
  for (const dev of ['ava', 'typescript', 'node-gyp']) t.false(has(`node_modules/${dev}/package.json`), `devDependency ${dev} is left out`);
  t.false(
    names.some((n) => n.includes('/node_modules/.bin/')),
    'no .bin links',
  );
  // (dependencies ship as published, some with their own tests)
  t.false(
    names.some(
      (n) => n.startsWith(`${TOP}/dist/test/`) || n.startsWith(`${TOP}/dist/packaging/`) || (n.startsWith(`${TOP}/dist/`) && n.endsWith('.test.js')),
    ),
    'none of our tests',
  );
  t.true(has('node_modules/pino/package.json') && has('node_modules/prom-client/package.json'), 'the logging and metrics libraries');
  t.false(
    names.some((n) => n.startsWith(`${TOP}/dist/`) && n.endsWith('.map')),
    'no source maps of sources that are not there',
  );
  t.true(
    entries.every((e) => e.uid === 0 && e.gid === 0 && e.uname === 'root'),
    'every entry is owned by root',
  );
  t.true(
    entries.filter((e) => e.type === 'File').every((e) => e.mtime?.getTime() === RELEASE_MTIME.getTime()),
    'every file has the fixed mtime',
  );
});

test.serial('building again from the same tree gives the same bytes', async (t) => {
  const again = await buildRelease({ outDir: path.join(work, 'again') });
  const sum = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  t.is(sum(again.file), sum(release.file));
});

test.serial('a tree whose native parts are not built is refused, naming them and the command to run', async (t) => {
  const fake = path.join(work, 'unbuilt');
  fs.mkdirSync(fake);
  for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(repoRoot(), f), path.join(fake, f));
  const err = await t.throwsAsync(buildRelease({ root: fake, outDir: path.join(work, 'none') }), { instanceOf: PackageError });
  t.regex(err!.message, /native\/preload\/libslimfast\.so/);
  t.regex(err!.message, /build\/Release\/slimfast_addon\.node/);
  t.regex(err!.message, /run `npm run build:native`/);
  t.false(fs.existsSync(path.join(work, 'none')), 'no tarball, not even an output directory');
  // The same from the command line `npm run package` runs: exit 1, the reason on stderr.
  const r = await execa(process.execPath, [BUILD, '--root', fake, '--out', path.join(work, 'none')], { reject: false, timeout: 30_000 });
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /^package: not built: .*run `npm run build:native`/);
});

test.serial(
  'unpacked into an empty directory, its brokers carry a cross-host container connection on SlimFast with its own preload library',
  async (t) => {
    const opt = path.join(work, 'opt');
    fs.mkdirSync(opt);
    t.deepEqual(fs.readdirSync(opt), []);
    await extract({ file: release.file, cwd: opt, strict: true });
    t.deepEqual(fs.readdirSync(opt), [TOP]);
    const tree = path.join(opt, TOP);
    unpacked = tree;

    // Every file is the one MANIFEST names.
    const manifest = fs.readFileSync(path.join(tree, 'MANIFEST'), 'utf8').trim().split('\n');
    t.is(manifest.length + 1, release.files);
    for (const line of manifest) {
      const [sum, rel] = line.split('  ');
      t.is(
        crypto
          .createHash('sha256')
          .update(fs.readFileSync(path.join(tree, rel)))
          .digest('hex'),
        sum,
        rel,
      );
    }

    const cli = path.join(tree, 'bin', 'slimfast');
    const paths = JSON.parse((await execa(process.execPath, [cli, 'paths', '--json'], { timeout: 20_000 })).stdout) as Record<string, string>;
    t.deepEqual(paths, {
      preload: path.join(tree, 'native', 'preload', 'libslimfast.so'),
      addon: path.join(tree, 'build', 'Release', 'slimfast_addon.node'),
      runc: path.join(tree, 'bin', 'slimfast-runc'),
      hook: path.join(tree, 'bin', 'slimfast-hook'),
      cli,
      seccompKeeper: path.join(tree, 'native', 'keeper', 'slimfast-seccomp-keeper'),
    });
    for (const f of Object.values(paths)) t.true(fs.existsSync(f), f);
    // The launcher finds the unpacked tree's JavaScript above itself.
    const hook = await execa(paths.hook, ['--help'], { reject: false, timeout: 20_000, input: '' });
    t.is(hook.exitCode, 0, hook.stderr);
    t.regex(hook.stdout, /^usage: slimfast-hook /);

    const topo = await Topology.create({ containers: [1, 1], cli });
    try {
      const [h1, h2] = topo.hosts;
      const c1 = topo.container('c1');
      const c2 = topo.container('c2');
      t.is(c1.env?.LD_PRELOAD, paths.preload, 'the broker hands out the unpacked preload library');
      // The brokers run the unpacked tree: its addon is the one mapped, not the repository's.
      for (const h of topo.hosts) {
        const pid = Number(fs.readFileSync(path.join(h.stateDir, 'slimfast.pid'), 'utf8').trim());
        const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
        t.true(maps.includes(paths.addon), `host ${h.index}'s broker loaded ${paths.addon}`);
        t.false(maps.includes(path.join(repoRoot(), 'build', 'Release')), `host ${h.index}'s broker did not load the repository's addon`);
      }

      const server = topo.spawn(c2, [PY, ECHO_SERVER, '7000']);
      await topo.waitPort(c2, 7000);
      await topo.waitListener(c2.ip, 7000);
      t.true(fs.readFileSync(`/proc/${server.pid}/maps`, 'utf8').includes(paths.preload), 'the server runs with the unpacked preload library');

      const before = {
        o1: await topo.overlayPackets(h1),
        o2: await topo.overlayPackets(h2),
        k1: await topo.counters(h1),
        k2: await topo.counters(h2),
      };
      const run = await echoRun(topo, c1, c2.ip, 7000, 20);
      t.deepEqual(run.errors, []);
      t.is(run.results.length, 20);
      for (const x of run.results) {
        t.true(x.echo_ok);
        t.is(x.server_local, `${c2.ip}:7000`);
        t.true(x.local.startsWith(`${c1.ip}:`), x.local);
        t.is(x.server_peer, x.local);
      }
      const after = {
        o1: await topo.overlayPackets(h1),
        o2: await topo.overlayPackets(h2),
        k1: await topo.counters(h1),
        k2: await topo.counters(h2),
      };
      t.is(after.k1.handed_out - before.k1.handed_out, 20, 'host 1 handed the connections to host connections');
      t.is(after.k2.handed_in - before.k2.handed_in, 20, 'host 2 took them in');
      t.deepEqual(after.o1, before.o1, 'the VXLAN device on host 1 carried no packets');
      t.deepEqual(after.o2, before.o2, 'the VXLAN device on host 2 carried no packets');
    } finally {
      await topo.destroy();
    }
  },
);

test.serial('the unpacked tree runs the demo: runc containers through its own slimfast-runc, cross-host on SlimFast', async (t) => {
  t.timeout(150_000);
  if (!unpacked) return t.fail('the tarball was not unpacked (see the test above)');
  const r = await execa(process.execPath, [path.join(unpacked, 'dist', 'demo', 'main.js')], {
    reject: false,
    timeout: 140_000,
    all: true,
    cwd: work,
    env: { SLIMFAST_DEMO_ROUNDS: '1', SLIMFAST_DEMO_SECONDS: '1' },
  });
  t.is(r.exitCode, 0, r.all);
  t.regex(r.all, /slimfast-runc run sft\d+x\w+-server on host 2/);
  t.regex(r.all, /host 1 broker: registered by slimfast-hook: sft\d+x\w+-client 10\.200\.1\.2/);
  const m = /broker handed (\d+) host connections to the client container; the VXLAN device carried (\d+) packets during the SlimFast rounds/.exec(
    r.all,
  );
  t.truthy(m, r.all);
  t.true(Number(m![1]) > 0, 'connections were handed off');
  t.is(Number(m![2]), 0, 'SlimFast traffic did not cross the VXLAN device');
});
