// An OCI image archive (image-layout tarball: oci-layout, index.json, blobs/sha256/…) of one root
// filesystem directory, as one uncompressed layer: what `ctr images import` (and other engines) load
// without a registry. Docker before 25 reads only the docker-archive's manifest.json: with
// ImageOptions.dockerManifest the archive carries one too, naming the same blobs (as Docker 25's
// `docker save` writes). imageBlobs() is the pure part (digests, config, manifest, index); writeOciArchive()
// tars the layer and the layout with the tar package.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { create as createTar } from 'tar';

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

/** containerd takes an imported image's full name from this index annotation. */
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
/** The OCI annotation: the tag (other engines read this one). */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';

export interface Blob {
  digest: string;
  size: number;
  data: Buffer;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

export interface ImageOptions {
  /** Full reference, e.g. docker.io/library/name:tag (the tag becomes the ref name annotation). */
  name: string;
  env?: string[];
  cmd?: string[];
  workingDir?: string;
  /** GOARCH-style architecture; default: this machine's. */
  architecture?: string;
  /** Also write manifest.json, so that `docker load` (20.10) takes the archive. */
  dockerManifest?: boolean;
}

export interface ImageBlobs {
  layer: Blob;
  config: Blob;
  manifest: Blob;
  /** index.json (not a blob: it names the manifest). */
  index: Buffer;
}

export function blob(data: Buffer | string): Blob {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return { digest: `sha256:${createHash('sha256').update(buf).digest('hex')}`, size: buf.length, data: buf };
}

const GOARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/** This machine's architecture as images name it (Go's GOARCH). */
export function imageArchitecture(nodeArch: string = process.arch): string {
  const a = GOARCH[nodeArch];
  if (!a) throw new Error(`no OCI architecture name known for Node's "${nodeArch}": pass ImageOptions.architecture`);
  return a;
}

/** The tag of a reference ("latest" when it has none); a digest reference has no tag to give. */
export function refTag(name: string): string {
  if (name.includes('@')) throw new Error(`${name}: give a tagged name, not a digest reference`);
  const last = name.slice(name.lastIndexOf('/') + 1);
  const colon = last.lastIndexOf(':');
  return colon < 0 ? 'latest' : last.slice(colon + 1);
}

function descriptor(mediaType: string, b: Blob): Descriptor {
  return { mediaType, digest: b.digest, size: b.size };
}

/** Config, manifest and index of a one-layer image whose (uncompressed) layer tar is `layer`. */
export function imageBlobs(layer: Buffer, opts: ImageOptions): ImageBlobs {
  const layerBlob = blob(layer);
  const platform = { architecture: opts.architecture ?? imageArchitecture(), os: 'linux' };
  const config = blob(
    JSON.stringify({
      ...platform,
      config: {
        Env: opts.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        ...(opts.cmd ? { Cmd: opts.cmd } : {}),
        ...(opts.workingDir ? { WorkingDir: opts.workingDir } : {}),
      },
      // Uncompressed layer: its diff id is its digest.
      rootfs: { type: 'layers', diff_ids: [layerBlob.digest] },
    }),
  );
  const manifest = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.manifest,
      config: descriptor(MEDIA_TYPES.config, config),
      layers: [descriptor(MEDIA_TYPES.layer, layerBlob)],
    }),
  );
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.index,
      manifests: [
        {
          ...descriptor(MEDIA_TYPES.manifest, manifest),
          annotations: { [ANNOTATION_IMAGE_NAME]: opts.name, [ANNOTATION_REF_NAME]: refTag(opts.name) },
          platform,
        },
      ],
    }),
  );
  return { layer: layerBlob, config, manifest, index };
}

export interface OciArchive {
  file: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
}

/**
 * The docker-archive manifest.json for the same blobs: Docker takes the repository tag from RepoTags, a
 * bare name being Docker Hub's (docker.io/library/ and docker.io/ are left out, as `docker images` shows).
 */
export function dockerManifest(blobs: ImageBlobs, name: string): Buffer {
  const tag = refTag(name);
  const colon = name.lastIndexOf(':');
  const repo = (colon > name.lastIndexOf('/') ? name.slice(0, colon) : name).replace(/^docker\.io\/(library\/)?/, '');
  return Buffer.from(
    JSON.stringify([{ Config: blobPath(blobs.config.digest), RepoTags: [`${repo}:${tag}`], Layers: [blobPath(blobs.layer.digest)] }]),
  );
}

/** The path of a blob inside an image layout. */
export function blobPath(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: ${digest}`);
  return path.join('blobs', 'sha256', m[1]);
}

/**
 * node-tar keeps atime and ctime (whole seconds) in the header's prefix area when it does not keep
 * owners out: zero them, and fix each header's checksum, so that a touch does not change the digest.
 */
export function zeroHeaderTimes(tarFile: string): void {
  const b = fs.readFileSync(tarFile);
  for (let off = 0; off + 512 <= b.length; ) {
    const h = b.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/, '').trim() || '0', 8);
    h.fill(0, 476, 500); // atime, ctime
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const x of h) sum += x;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    off += 512 + Math.ceil(size / 512) * 512;
  }
  fs.writeFileSync(tarFile, b);
}

/**
 * Writes an OCI image archive of the root filesystem `rootfs` to `file` (staging the layout in
 * `file`.d, removed afterwards) and returns its blobs' descriptors. Files keep their owners and modes;
 * every mtime is 0 so that the same tree gives the same digests.
 */
export async function writeOciArchive(file: string, rootfs: string, opts: ImageOptions): Promise<OciArchive> {
  const stage = `${file}.d`;
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(path.join(stage, 'blobs', 'sha256'), { recursive: true });
  try {
    const layerFile = path.join(stage, 'layer.tar');
    // Top-level entries, not ".": no "./" entry for the root itself.
    const entries = fs.readdirSync(rootfs).sort();
    if (entries.length === 0) throw new Error(`${rootfs} is empty: make the root filesystem first (lab/containers.ts makeRootfs)`);
    // noPax: no extended headers, which would carry atime and ctime (they change with every touch).
    await createTar({ file: layerFile, cwd: rootfs, portable: false, noPax: true, mtime: new Date(0) }, entries);
    zeroHeaderTimes(layerFile);
    const blobs = imageBlobs(fs.readFileSync(layerFile), opts);
    fs.rmSync(layerFile);
    for (const b of [blobs.layer, blobs.config, blobs.manifest]) fs.writeFileSync(path.join(stage, blobPath(b.digest)), b.data);
    fs.writeFileSync(path.join(stage, 'index.json'), blobs.index);
    fs.writeFileSync(path.join(stage, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    if (opts.dockerManifest) fs.writeFileSync(path.join(stage, 'manifest.json'), dockerManifest(blobs, opts.name));
    await createTar({ file, cwd: stage, portable: true, mtime: new Date(0) }, [
      'oci-layout',
      'index.json',
      ...(opts.dockerManifest ? ['manifest.json'] : []),
      'blobs',
    ]);
    return {
      file,
      layer: descriptor(MEDIA_TYPES.layer, blobs.layer),
      config: descriptor(MEDIA_TYPES.config, blobs.config),
      manifest: descriptor(MEDIA_TYPES.manifest, blobs.manifest),
    };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}
