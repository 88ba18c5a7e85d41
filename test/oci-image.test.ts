// lab/oci-image.ts: digests, the config/manifest/index an engine checks on import, and the archive's layout.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { extract } from 'tar';
import {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  MEDIA_TYPES,
  blob,
  blobPath,
  dockerManifest,
  imageArchitecture,
  imageBlobs,
  refTag,
  writeOciArchive,
} from '../lab/oci-image.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sfoci-'));

test('blob: sha256 digest and size of the exact bytes', (t) => {
  t.deepEqual(blob(''), { digest: 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', size: 0, data: Buffer.alloc(0) });
  t.is(blob('é').size, 2);
});

test('refTag: the tag of a name, latest without one, a registry port is no tag', (t) => {
  t.is(refTag('docker.io/slimfast/lab:t1'), 't1');
  t.is(refTag('localhost:5000/lab'), 'latest');
  t.is(refTag('lab'), 'latest');
  t.throws(() => refTag('lab@sha256:00'), { message: /not a digest reference/ });
});

test('imageArchitecture: GOARCH names, an unknown one says what to pass', (t) => {
  t.is(imageArchitecture('x64'), 'amd64');
  t.is(imageArchitecture('arm64'), 'arm64');
  t.throws(() => imageArchitecture('mips'), { message: /ImageOptions.architecture/ });
});

test('imageBlobs: index -> manifest -> config and layer by digest and size; diff id of the uncompressed layer', (t) => {
  const layer = Buffer.from('not really a tar, the digest is all that matters');
  const b = imageBlobs(layer, { name: 'docker.io/slimfast/lab:t1', cmd: ['/bin/sh'], architecture: 'arm64' });
  t.is(b.layer.digest, sha256(layer));
  const index = JSON.parse(b.index.toString());
  t.is(index.schemaVersion, 2);
  t.is(index.mediaType, MEDIA_TYPES.index);
  t.deepEqual(index.manifests, [
    {
      mediaType: MEDIA_TYPES.manifest,
      digest: sha256(b.manifest.data),
      size: b.manifest.data.length,
      annotations: { [ANNOTATION_IMAGE_NAME]: 'docker.io/slimfast/lab:t1', [ANNOTATION_REF_NAME]: 't1' },
      platform: { architecture: 'arm64', os: 'linux' },
    },
  ]);
  const manifest = JSON.parse(b.manifest.data.toString());
  t.deepEqual(manifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: { mediaType: MEDIA_TYPES.config, digest: sha256(b.config.data), size: b.config.data.length },
    layers: [{ mediaType: MEDIA_TYPES.layer, digest: sha256(layer), size: layer.length }],
  });
  const config = JSON.parse(b.config.data.toString());
  t.is(config.architecture, 'arm64');
  t.is(config.os, 'linux');
  t.deepEqual(config.rootfs, { type: 'layers', diff_ids: [sha256(layer)] });
  t.deepEqual(config.config.Cmd, ['/bin/sh']);
  t.true(config.config.Env.some((e: string) => e.startsWith('PATH=')));
});

test('blobPath: blobs/sha256/HEX, anything else refused', (t) => {
  t.is(blobPath(`sha256:${'a'.repeat(64)}`), path.join('blobs', 'sha256', 'a'.repeat(64)));
  t.throws(() => blobPath('sha512:00'), { message: /not a sha256 digest/ });
  t.throws(() => blobPath('sha256:../../etc'), { message: /not a sha256 digest/ });
});

test('writeOciArchive: an image layout whose blobs match their names, the same digests for the same tree', async (t) => {
  const dir = tmp();
  try {
    const rootfs = path.join(dir, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'bin', 'hello'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    fs.symlinkSync('hello', path.join(rootfs, 'bin', 'hi'));
    const a = await writeOciArchive(path.join(dir, 'a.tar'), rootfs, { name: 'docker.io/slimfast/lab:a' });
    // A second later: the touch changes the file's atime and ctime seconds too.
    await new Promise((r) => setTimeout(r, 1100));
    fs.utimesSync(path.join(rootfs, 'bin', 'hello'), new Date(), new Date());
    const b = await writeOciArchive(path.join(dir, 'b.tar'), rootfs, { name: 'docker.io/slimfast/lab:a' });
    t.deepEqual(a.layer, b.layer, 'mtimes do not change the layer');
    t.deepEqual(a.manifest, b.manifest);
    t.false(fs.existsSync(path.join(dir, 'a.tar.d')), 'the staging directory is removed');

    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    await extract({ file: a.file, cwd: out });
    t.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(fs.readFileSync(path.join(out, 'index.json'), 'utf8'));
    t.is(index.manifests[0].digest, a.manifest.digest);
    t.false(fs.existsSync(path.join(out, 'manifest.json')), 'no docker-archive manifest unless asked for');
    const names = fs.readdirSync(path.join(out, 'blobs', 'sha256')).sort();
    t.deepEqual(names, [a.layer, a.config, a.manifest].map((d) => d.digest.slice('sha256:'.length)).sort());
    for (const n of names) t.is(sha256(fs.readFileSync(path.join(out, 'blobs', 'sha256', n))), `sha256:${n}`);

    const layer = path.join(dir, 'layer');
    fs.mkdirSync(layer);
    await extract({ file: path.join(out, blobPath(a.layer.digest)), cwd: layer });
    t.is(fs.readFileSync(path.join(layer, 'bin', 'hello'), 'utf8'), '#!/bin/sh\necho hi\n');
    t.is(fs.statSync(path.join(layer, 'bin', 'hello')).mode & 0o777, 0o755);
    t.is(fs.readlinkSync(path.join(layer, 'bin', 'hi')), 'hello');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('dockerManifest: the docker-archive manifest.json names the same config and layer, and the tag as docker shows it', (t) => {
  const b = imageBlobs(Buffer.from('layer'), { name: 'x', architecture: 'amd64' });
  const m = (name: string) => JSON.parse(dockerManifest(b, name).toString());
  t.deepEqual(m('docker.io/slimfast/lab:t1'), [
    { Config: blobPath(b.config.digest), RepoTags: ['slimfast/lab:t1'], Layers: [blobPath(b.layer.digest)] },
  ]);
  t.deepEqual(m('docker.io/library/busybox')[0].RepoTags, ['busybox:latest']);
  t.deepEqual(m('localhost:5000/lab:v2')[0].RepoTags, ['localhost:5000/lab:v2']);
  t.deepEqual(m('localhost:5000/lab')[0].RepoTags, ['localhost:5000/lab:latest']);
});

test('writeOciArchive with dockerManifest: manifest.json beside the image layout', async (t) => {
  const dir = tmp();
  try {
    fs.mkdirSync(path.join(dir, 'rootfs', 'bin'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'rootfs', 'bin', 'x'), 'x');
    const a = await writeOciArchive(path.join(dir, 'a.tar'), path.join(dir, 'rootfs'), { name: 'slimfast/lab:d', dockerManifest: true });
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    await extract({ file: a.file, cwd: out });
    t.deepEqual(fs.readdirSync(out).sort(), ['blobs', 'index.json', 'manifest.json', 'oci-layout']);
    const [m] = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    t.deepEqual(m, { Config: blobPath(a.config.digest), RepoTags: ['slimfast/lab:d'], Layers: [blobPath(a.layer.digest)] });
    for (const f of [m.Config, ...m.Layers]) t.true(fs.existsSync(path.join(out, f)), f);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('writeOciArchive: an empty root filesystem is refused with what to do', async (t) => {
  const dir = tmp();
  try {
    fs.mkdirSync(path.join(dir, 'rootfs'));
    await t.throwsAsync(writeOciArchive(path.join(dir, 'x.tar'), path.join(dir, 'rootfs'), { name: 'lab:x' }), { message: /makeRootfs/ });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
