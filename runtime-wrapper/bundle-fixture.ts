// An OCI bundle with a busybox-static root filesystem, made by `runc spec` (tests only).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const APPLETS = ['sh', 'echo', 'cat', 'ls', 'test', 'sleep', 'true', 'false', 'head', 'touch', 'env', 'stat'];

export function staticBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!fs.existsSync(p)) continue;
    const ldd = spawnSync('ldd', [p], { encoding: 'utf8' });
    if (/not a dynamic executable|statically linked/.test(ldd.stdout + ldd.stderr)) return p;
  }
  throw new Error('a static busybox is needed for container tests: apt-get install busybox-static');
}

export function makeBusyboxBundle(dir: string, args: string[], opts: { hostNetwork?: boolean } = {}): string {
  const bin = path.join(dir, 'rootfs', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync(staticBusybox(), path.join(bin, 'busybox'));
  fs.chmodSync(path.join(bin, 'busybox'), 0o755);
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(bin, a));
  const r = spawnSync('runc', ['spec', '--bundle', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`runc spec failed: ${r.stderr}`);
  const file = path.join(dir, 'config.json');
  const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
  spec.process.terminal = false;
  spec.process.args = args;
  if (opts.hostNetwork) spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'network');
  fs.writeFileSync(file, JSON.stringify(spec, null, '\t'));
  return dir;
}
