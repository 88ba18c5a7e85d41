// `npm run package`: the release tarball, release/slimfast-<version>-<platform>-<arch>.tar.gz, with one
// top directory slimfast-<version>/ laid out as the repository is (common/paths.ts finds every part the
// same way in both): the compiled JavaScript (no tests), the preload library, the addon, the launchers,
// the demo's clients, the protocol file, and the production dependencies (the `dependencies` closure of
// package-lock.json, copied from node_modules: no devDependencies, nothing fetched). Entries are sorted,
// every mtime is fixed and owners are root (node-tar's portable mode), so the same build gives the same
// bytes. README.md in the tarball says how to install; MANIFEST lists every file with its sha256.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { create as createTar } from 'tar';
import { repoRoot } from '../common/paths.js';

/** Source folders whose compiled JavaScript ships (their *.test.ts stay out). */
export const SOURCE_DIRS = ['common', 'broker', 'cli', 'hooks', 'runtime-wrapper', 'installers', 'runtime-service', 'lab', 'demo', 'bench'];

/** Built native files: where they are in the repository, where they go in the release. */
const NATIVE: { from: string; to: string; what: string }[] = [
  { from: 'native/preload/libslimfast.so', to: 'native/preload/libslimfast.so', what: 'the preload library' },
  { from: 'build/Release/slimfast_addon.node', to: 'build/Release/slimfast_addon.node', what: 'the addon' },
  // bin/slimfast-runc and bin/slimfast-hook are links in the repository; the release holds the programs.
  { from: 'native/launcher/slimfast-runc', to: 'bin/slimfast-runc', what: 'the slimfast-runc launcher' },
  { from: 'native/launcher/slimfast-hook', to: 'bin/slimfast-hook', what: 'the slimfast-hook launcher' },
  { from: 'native/keeper/slimfast-seccomp-keeper', to: 'native/keeper/slimfast-seccomp-keeper', what: 'the seccomp keeper' },
  { from: 'bench/clients/echod', to: 'bench/clients/echod', what: "the demo's echo server" },
  { from: 'bench/clients/connrate', to: 'bench/clients/connrate', what: "the demo's client" },
];

/** Plain files copied as they are. */
const FILES = ['bin/slimfast', 'proto/slimfast.proto', 'LICENSE'];
const DIRS = ['hooks/oci-hooks.d'];

/** Every entry's mtime: fixed, so that a rebuild of the same tree gives the same tarball. */
export const RELEASE_MTIME = new Date('2000-01-01T00:00:00Z');

/** A release cannot be built from this tree; the message says what to run. */
export class PackageError extends Error {}

export interface ReleaseOptions {
  /** The repository to package (default: the one this module is in). */
  root?: string;
  /** Where the tarball goes (default: ROOT/release). */
  outDir?: string;
}

export interface Release {
  file: string;
  /** The top directory, slimfast-<version>. */
  name: string;
  version: string;
  platform: string;
  bytes: number;
  /** Files (not directories) in the tarball. */
  files: number;
}

interface LockEntry {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  devOptional?: boolean;
  link?: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: package.json and package-lock.json are read field by field, as npm documents them
function readJson(file: string, hint: string): any {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new PackageError(`cannot read ${file} (${(err as Error).message}); ${hint}`);
  }
}

/** Files below dir (relative, sorted), optionally only those `keep` accepts. */
function walk(dir: string, keep: (rel: string) => boolean = () => true, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, keep, r));
    else if (keep(r)) out.push(r);
  }
  return out;
}

function copyFile(from: string, to: string): void {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  fs.chmodSync(to, fs.statSync(from).mode & 0o7777);
}

/** The compiled JavaScript of SOURCE_DIRS: one dist/X.js per X.ts, none older than its source. */
function compiledFiles(root: string): string[] {
  const out: string[] = [];
  const run = 'run `npm run build:ts` (or `npm run build`) first';
  for (const dir of SOURCE_DIRS) {
    if (!fs.existsSync(path.join(root, dir))) continue;
    for (const src of walk(path.join(root, dir), (r) => r.endsWith('.ts') && !r.endsWith('.test.ts') && !r.endsWith('.d.ts'))) {
      const rel = `${dir}/${src.replace(/\.ts$/, '.js')}`;
      const js = path.join(root, 'dist', rel);
      if (!fs.existsSync(js)) throw new PackageError(`dist/${rel} is missing: the TypeScript is not built; ${run}`);
      if (fs.statSync(js).mtimeMs < fs.statSync(path.join(root, dir, src)).mtimeMs) {
        throw new PackageError(`dist/${rel} is older than ${dir}/${src}: the TypeScript build is stale; ${run}`);
      }
      out.push(`dist/${rel}`);
    }
  }
  if (out.length === 0) throw new PackageError(`no TypeScript sources under ${root}; is it a SlimFast checkout?`);
  return out;
}

/**
 * The production dependency closure from package-lock.json: every package not marked dev (optional
 * ones only when installed), as [lock key, entry]. Checks that each is installed in node_modules.
 */
export function productionPackages(root: string): [string, LockEntry][] {
  const pkg = readJson(path.join(root, 'package.json'), 'is it a SlimFast checkout?');
  const lock = readJson(path.join(root, 'package-lock.json'), 'run `npm install` to write it');
  const packages = (lock.packages ?? {}) as Record<string, LockEntry>;
  if ((lock.lockfileVersion ?? 0) < 2) throw new PackageError('package-lock.json is older than lockfile version 2: run `npm install` to update it');
  for (const name of Object.keys(pkg.dependencies ?? {})) {
    if (!packages[`node_modules/${name}`]) throw new PackageError(`package-lock.json lacks the dependency ${name}: run \`npm install\``);
  }
  const out: [string, LockEntry][] = [];
  for (const [key, entry] of Object.entries(packages)) {
    if (!key.startsWith('node_modules/') || entry.dev || entry.link) continue;
    const installed = fs.existsSync(path.join(root, key, 'package.json'));
    if (!installed) {
      if (entry.optional || entry.devOptional) continue;
      throw new PackageError(`${key} is not installed: run \`npm ci\` first`);
    }
    const have = readJson(path.join(root, key, 'package.json'), 'run `npm ci` first').version;
    if (entry.version && have !== entry.version) {
      throw new PackageError(`${key} is ${have}, package-lock.json says ${entry.version}: run \`npm ci\` first`);
    }
    out.push([key, entry]);
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Checks that the native parts are built (they are not built by this module). */
function checkNative(root: string): void {
  const missing = NATIVE.filter((n) => !fs.existsSync(path.join(root, n.from)));
  if (missing.length > 0) {
    throw new PackageError(
      `not built: ${missing.map((n) => `${n.what} (${n.from})`).join(', ')}; run \`npm run build:native\` (or \`npm run build\`) first`,
    );
  }
}

function releaseReadme(name: string, version: string, platform: string, deps: [string, LockEntry][]): string {
  const top = deps.filter(([k]) => !k.slice('node_modules/'.length).includes('/node_modules/'));
  return `# SlimFast ${version} (${platform})

A self-contained SlimFast install: it needs Linux on ${platform.split('-')[1]} with glibc, Node.js >= 20.8
(\`node\` on PATH, or SLIMFAST_NODE naming it) and nothing else; no \`npm install\`.

## Install

\`\`\`
tar -xzf ${name}-${platform}.tar.gz -C /opt
/opt/${name}/bin/slimfast doctor                  # what this host lacks for SlimFast, and how to fix it
head -c 32 /dev/urandom > /etc/slimfast/cluster.key && chmod 600 /etc/slimfast/cluster.key   # once; the same file on every host
/opt/${name}/bin/slimfast install systemd -- --host-ip IP --peers FILE --cluster-key /etc/slimfast/cluster.key   # the broker as a service
                                                  # (or --etcd URL instead of --peers: the brokers share a key through etcd)
/opt/${name}/bin/slimfast install docker          # or containerd, crio, podman --hooks-dir DIR
\`\`\`

Every path the install writes (the service's command, the engines' runtime and hook) points into
/opt/${name}/: unpack a new version next to it and run \`install\` again from there to switch.
\`/opt/${name}/bin/slimfast --help\` lists every command. As root, \`node /opt/${name}/dist/demo/main.js\`
runs the demo (it also needs runc, busybox and iperf3).

## Contents

- bin/slimfast: the command line and broker (\`node\` runs dist/cli/main.js)
- bin/slimfast-runc, bin/slimfast-hook: the programs container engines run
- native/preload/libslimfast.so: the library preloaded into container processes
- build/Release/slimfast_addon.node: the broker's native addon
- dist/: the compiled JavaScript (${SOURCE_DIRS.join(', ')})
- proto/slimfast.proto: the control API (gRPC on STATE_DIR/slimfast.sock)
- hooks/oci-hooks.d/: OCI hook templates (podman)
- bench/clients/: the demo's echo server and client
- node_modules/: the production dependencies (${deps.length} packages):
${top.map(([k, e]) => `  - ${k.slice('node_modules/'.length)} ${e.version ?? ''}`.trimEnd()).join('\n')}
- MANIFEST: the sha256 of every file
`;
}

/** The release's package.json: what Node needs to run the code as ES modules, and the metadata. */
function releasePackageJson(pkg: Record<string, unknown>): string {
  const keep = {
    name: pkg.name,
    version: pkg.version,
    description: pkg.description,
    license: pkg.license,
    type: pkg.type,
    private: true,
    engines: pkg.engines,
    bin: pkg.bin,
    scripts: { demo: 'node dist/demo/main.js' },
    dependencies: pkg.dependencies,
  };
  return `${JSON.stringify(keep, null, 2)}\n`;
}

/**
 * Makes every header of an (uncompressed) tar say owner root:root, uid and gid 0: node-tar's portable
 * mode leaves those fields empty. Fixes each header's checksum.
 */
export function rootOwned(tar: Buffer): Buffer {
  const field = (h: Buffer, off: number, len: number, value: string) => {
    h.fill(0, off, off + len);
    h.write(value, off, 'latin1');
  };
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    if (h.subarray(257, 262).toString('latin1') !== 'ustar') throw new Error(`not a ustar header at byte ${off}`);
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/, '').trim() || '0', 8);
    field(h, 108, 8, '0000000'); // uid
    field(h, 116, 8, '0000000'); // gid
    field(h, 265, 32, 'root'); // uname
    field(h, 297, 32, 'root'); // gname
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const x of h) sum += x;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return tar;
}

/** Every path below dir (directories too), sorted by bytes, relative to base. */
function entries(base: string, dir: string): string[] {
  const out: string[] = [];
  const visit = (rel: string) => {
    out.push(rel);
    if (fs.lstatSync(path.join(base, rel)).isDirectory()) {
      for (const name of fs.readdirSync(path.join(base, rel))) visit(`${rel}/${name}`);
    }
  };
  visit(dir);
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

export async function buildRelease(opts: ReleaseOptions = {}): Promise<Release> {
  const root = path.resolve(opts.root ?? repoRoot());
  const pkg = readJson(path.join(root, 'package.json'), 'is it a SlimFast checkout?');
  const version = String(pkg.version ?? '');
  if (!/^\d+\.\d+\.\d+/.test(version)) throw new PackageError(`package.json has no version (${JSON.stringify(pkg.version)})`);
  const platform = `${process.platform}-${process.arch}`;
  if (process.platform !== 'linux') throw new PackageError(`SlimFast releases are for Linux; this is ${process.platform}`);
  checkNative(root);
  const js = compiledFiles(root);
  const deps = productionPackages(root);

  const name = `slimfast-${version}`;
  const outDir = path.resolve(opts.outDir ?? path.join(root, 'release'));
  const file = path.join(outDir, `${name}-${platform}.tar.gz`);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'slimfast-release-'));
  try {
    const top = path.join(stage, name);
    fs.mkdirSync(top);
    for (const rel of js) copyFile(path.join(root, rel), path.join(top, rel));
    for (const n of NATIVE) copyFile(path.join(root, n.from), path.join(top, n.to));
    for (const rel of FILES) copyFile(path.join(root, rel), path.join(top, rel));
    for (const dir of DIRS) for (const rel of walk(path.join(root, dir))) copyFile(path.join(root, dir, rel), path.join(top, dir, rel));
    for (const [key] of deps) {
      // A package's own node_modules holds packages of their own lock entries (or dev ones): not here.
      for (const rel of walk(path.join(root, key), (r) => !r.startsWith('node_modules/')))
        copyFile(path.join(root, key, rel), path.join(top, key, rel));
    }
    fs.writeFileSync(path.join(top, 'package.json'), releasePackageJson(pkg));
    fs.writeFileSync(path.join(top, 'README.md'), releaseReadme(name, version, platform, deps));
    const manifest = walk(top).map(
      (rel) =>
        `${crypto
          .createHash('sha256')
          .update(fs.readFileSync(path.join(top, rel)))
          .digest('hex')}  ${rel}`,
    );
    fs.writeFileSync(path.join(top, 'MANIFEST'), `${manifest.join('\n')}\n`);

    fs.mkdirSync(outDir, { recursive: true });
    const plain = path.join(stage, `${name}.tar`);
    await createTar({ file: plain, cwd: stage, portable: true, mtime: RELEASE_MTIME, noDirRecurse: true, strict: true }, entries(stage, name));
    // gzip's header carries no name and no time here: the same tar gives the same bytes.
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, zlib.gzipSync(rootOwned(fs.readFileSync(plain)), { level: 9 }));
    fs.renameSync(tmp, file);
    return { file, name, version, platform, bytes: fs.statSync(file).size, files: manifest.length + 1 };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  const opts: ReleaseOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(out|root)(?:=(.*))?$/.exec(argv[i]);
    const value = m ? (m[2] ?? argv[++i]) : undefined;
    if (!m || !value) {
      console.error(
        `usage: npm run package [-- [--out DIR] [--root DIR]]\n(${m ? `--${m[1]} needs a directory` : `unknown argument ${JSON.stringify(argv[i])}`})`,
      );
      return 2;
    }
    if (m[1] === 'out') opts.outDir = value;
    else opts.root = value;
  }
  try {
    const r = await buildRelease(opts);
    const rel = path.relative(process.cwd(), r.file);
    console.log(`${rel.startsWith('..') ? r.file : rel}: ${r.files} files, ${(r.bytes / 1e6).toFixed(1)} MB`);
    return 0;
  } catch (err) {
    if (err instanceof PackageError) {
      console.error(`package: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
