// `slimfast install docker`: runtimes.slimfast = {"path": slimfast-runc} in daemon.json, so that
// `docker run --runtime slimfast` works; with a subnet, also "bip" (the default bridge's address), so
// that containers get addresses in this host's SlimFast subnet. Only those members change: the rest of
// the file is kept byte for byte.
import { isDeepStrictEqual } from 'node:util';
import { type Cidr, contains, formatIp, parseCidr } from '../common/cidr.js';
import { detectIndent, parseLossless } from '../runtime-wrapper/json-lossless.js';
import { type EngineWriter, configFile } from './engine.js';
import { type FileChange, InstallError } from './file-change.js';
import { setMember } from './json-edit.js';

export const DEFAULT_DOCKER_CONFIG = '/etc/docker/daemon.json';

export interface DockerOptions {
  /** This host's SlimFast subnet: "bip" becomes its first address with its length. */
  subnet?: string;
}

/** The "bip" value for a host subnet: its first address, with the subnet's length (e.g. 10.200.1.1/24). */
export function bipFor(subnet: Cidr): string {
  return `${formatIp(subnet.network + 1)}/${subnet.prefix}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface DockerChange extends FileChange {
  /** bip changes: dockerd must restart, a reload does not apply it. */
  restart?: boolean;
}

export function planDocker(file: string, before: string | undefined, runcBinary: string, opts: DockerOptions = {}): DockerChange {
  let subnet: Cidr | undefined;
  if (opts.subnet !== undefined) {
    try {
      subnet = parseCidr(opts.subnet);
    } catch (err) {
      throw new InstallError(`--subnet: ${(err as Error).message}`);
    }
    if (subnet.prefix > 30)
      throw new InstallError(`--subnet ${opts.subnet} leaves no room for containers: give this host's SlimFast subnet (e.g. 10.200.1.0/24)`);
  }
  const text = before ?? '';
  let doc: Record<string, unknown> = {};
  if (text.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = parseLossless(text);
    } catch (err) {
      throw new InstallError(`${file} is not valid JSON (${(err as Error).message}); fix it first (it was left unchanged)`);
    }
    if (!isObject(parsed)) throw new InstallError(`${file} is not a JSON object; fix it first (it was left unchanged)`);
    doc = parsed;
  }
  const runtimes = doc.runtimes;
  if (runtimes !== undefined && !isObject(runtimes)) {
    throw new InstallError(`"runtimes" in ${file} is not a JSON object; fix it first (it was left unchanged)`);
  }
  const existing = runtimes?.slimfast;
  if (existing !== undefined && !isObject(existing)) {
    throw new InstallError(`"runtimes.slimfast" in ${file} is not a JSON object; fix it first (it was left unchanged)`);
  }
  const bip = subnet && bipFor(subnet);
  if (subnet) {
    // dockerd refuses to start with both, or with a fixed-cidr outside the bridge's network.
    if (doc.bridge !== undefined && doc.bridge !== '') {
      throw new InstallError(
        `${file} sets "bridge": ${JSON.stringify(doc.bridge)}, which dockerd does not take together with "bip": give that bridge an address in ${opts.subnet} instead of --subnet (it was left unchanged)`,
      );
    }
    const fixed = doc['fixed-cidr'];
    if (fixed !== undefined) {
      let inside = false;
      try {
        const f = parseCidr(String(fixed));
        inside = f.prefix >= subnet.prefix && contains(subnet, f.network);
      } catch {
        // not a prefix: refused below
      }
      if (!inside)
        throw new InstallError(
          `"fixed-cidr": ${JSON.stringify(fixed)} in ${file} is not inside --subnet ${opts.subnet}; change or remove it first (it was left unchanged)`,
        );
    }
  }
  const note = !subnet && doc.bip === undefined && (doc.bridge === undefined || doc.bridge === '') ? DOCKER_SUBNET_NOTE : undefined;
  if (text.trim() === '') {
    const fresh = { ...(bip ? { bip } : {}), runtimes: { slimfast: { path: runcBinary } } };
    return { file, before, after: `${JSON.stringify(fresh, null, 2)}\n`, note, restart: !!bip };
  }
  // Another administrator's fields in runtimes.slimfast (e.g. runtimeArgs) stay; only path is set.
  const unit = detectIndent(text);
  let after = text;
  if (existing?.path !== runcBinary) after = setMember(after, ['runtimes', 'slimfast', 'path'], runcBinary, unit);
  const restart = !!bip && doc.bip !== bip;
  if (restart) after = setMember(after, ['bip'], bip, unit);
  // The text editor must have changed exactly what it was asked to: check the parsed result.
  const want = parseLossless(text) as { runtimes?: Record<string, Record<string, unknown>>; bip?: string };
  want.runtimes = { ...want.runtimes, slimfast: { ...want.runtimes?.slimfast, path: runcBinary } };
  if (restart) want.bip = bip;
  if (!isDeepStrictEqual(parseLossless(after), want))
    throw new InstallError(`cannot edit ${file} in place (it was left unchanged); please report this with the file`);
  return { file, before, after, note, restart };
}

export const DOCKER_HINT = 'make dockerd load it (systemctl reload docker, or kill -HUP the dockerd pid); then: docker run --runtime slimfast …';
/** dockerd reads bip only when it starts. */
export const DOCKER_RESTART_HINT =
  'restart dockerd (systemctl restart docker: it reads "bip" only when it starts); then: docker run --runtime slimfast …';

/** When containers' addresses would come from Docker's default bridge, which is in no broker's subnet. */
export const DOCKER_SUBNET_NOTE =
  "note: Docker's default bridge (172.17.0.0/16) is outside SlimFast's subnets, so `docker run --runtime slimfast` fails at the hook until " +
  'containers get addresses in this host\'s subnet: add --subnet "$(slimfast status --json | jq -r .health.subnet)" (sets "bip"), ' +
  'or run them on a network created with a --subnet inside it';

/** `slimfast install docker [--config FILE] [--subnet CIDR]`. */
export const dockerWriter: EngineWriter<{ runc: string; subnet?: string }> = {
  name: 'docker',
  defaultConfig: DEFAULT_DOCKER_CONFIG,
  runs: 'runc',
  options: ({ flags, paths }) => ({
    target: configFile(flags, DEFAULT_DOCKER_CONFIG),
    opts: { runc: paths.runc, subnet: flags.subnet as string | undefined },
  }),
  plan: (file, read, { runc, subnet }) => [planDocker(file, read(file), runc, { subnet })],
  hint: (changes) => (changes.some((c) => (c as DockerChange).restart) ? DOCKER_RESTART_HINT : DOCKER_HINT),
};
