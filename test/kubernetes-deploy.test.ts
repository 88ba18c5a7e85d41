// deploy/kubernetes against the parts it names: the RuntimeClass's handler is the runtime `slimfast
// install containerd` adds, the containerd snippet is byte for byte what it writes for the node's
// install, the DaemonSet's broker command line (run through its own shell line) is accepted by `slimfast
// daemon`'s flags, its privileges are the ones doctor checks, the state dir is one path everywhere, and
// the install init container's script installs, upgrades and writes what the broker reads.
// No cluster here: nothing is applied. test/cri.test.ts runs pods on the same handler and snippet.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import test from 'ava';
import { installPaths, repoRoot } from '../common/paths.js';
import { DAEMON_OPTIONS } from '../cli/daemon-options.js';
import { BROKER_CAPABILITIES } from '../cli/doctor.js';
import { RUNTIME_NAME, planContainerd } from '../installers/containerd.js';
import {
  CONTAINERD_SNIPPET_FILE,
  DEPLOY_DIR,
  type K8sObject,
  MANIFEST_FILE,
  NODE_INSTALL_DIR,
  RUNTIME_CLASS_FILE,
  loadManifests,
  objectOf,
  runtimeClassHandler,
} from './lib/kubernetes.js';

const docs = loadManifests(MANIFEST_FILE);
const ds = objectOf(docs, 'DaemonSet', 'slimfast');
const pod = ds.spec.template.spec;
const configMap = objectOf(docs, 'ConfigMap', 'slimfast');
const nodeConfig = JSON.parse(configMap.data['config.json']);
const broker = pod.containers.find((c: K8sObject) => c.name === 'broker');
const init = (name: string) => pod.initContainers.find((c: K8sObject) => c.name === name);
const SETUP = path.join(DEPLOY_DIR, 'node-setup.sh');
const setupText = fs.readFileSync(SETUP, 'utf8');

/** The node's path a container's mount shows (hostPath volumes), or undefined. */
function hostPathOf(volumeName: string): string | undefined {
  return pod.volumes.find((v: K8sObject) => v.name === volumeName)?.hostPath?.path;
}

function mountOf(c: K8sObject, mountPath: string): { name: string; readOnly?: boolean } | undefined {
  return c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === mountPath);
}

/** A default of node-setup.sh: VAR=${NAME:-default}. */
function setupDefault(name: string): string {
  const m = new RegExp(`\\$\\{${name}:-([^}]*)\\}`).exec(setupText);
  if (!m) throw new Error(`node-setup.sh has no default for ${name}`);
  return m[1];
}

/** Kubernetes' $(VAR) expansion from the container's env (values from the ConfigMap, a node IP for fieldRefs). */
function expand(c: K8sObject, arg: string): string {
  return arg.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_m, name: string) => {
    const e = c.env?.find((x: { name: string }) => x.name === name);
    if (!e) throw new Error(`$(${name}) in ${c.name}'s command line is not in its env: Kubernetes would pass it on literally`);
    if (e.value !== undefined) return e.value;
    const ref = e.valueFrom?.configMapKeyRef;
    if (ref) {
      if (ref.name !== configMap.metadata.name || !(ref.key in configMap.data))
        throw new Error(`${name}: no key ${ref.key} in ConfigMap ${ref.name}`);
      return configMap.data[ref.key];
    }
    if (e.valueFrom?.fieldRef?.fieldPath === 'status.hostIP') return '192.168.77.1';
    throw new Error(`${name}: a source this test does not know`);
  });
}

/** The broker container's argv after its shell line ran (the subnet file as node-setup.sh writes it). */
function brokerArgv(subnet: string): string[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-k8s-'));
  try {
    const subnetFile = path.join(setupDefault('SLIMFAST_NODE_DIR'), 'subnet');
    fs.writeFileSync(path.join(dir, 'subnet'), `${subnet}\n`);
    const [sh, dashC, script, ...rest] = [...broker.command, ...broker.args].map((a: string) => expand(broker, a));
    if (!script.includes(subnetFile)) throw new Error(`the broker's shell line does not read ${subnetFile}`);
    // The same shell line, printing the command it would exec.
    const printing = script.replace(subnetFile, path.join(dir, 'subnet')).replace('exec "$@"', 'printf "%s\\n" "$@"');
    return execFileSync(sh, [dashC, printing, ...rest], { encoding: 'utf8' })
      .trimEnd()
      .split('\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('the RuntimeClass "slimfast" names the runtime slimfast install containerd adds, and the snippet defines it', (t) => {
  const rc = objectOf(loadManifests(RUNTIME_CLASS_FILE), 'RuntimeClass');
  t.is(rc.apiVersion, 'node.k8s.io/v1');
  t.is(rc.metadata.name, 'slimfast');
  t.is(runtimeClassHandler(), RUNTIME_NAME);
  t.true(fs.readFileSync(CONTAINERD_SNIPPET_FILE, 'utf8').includes(`.containerd.runtimes.${RUNTIME_NAME}]`));
});

test("the containerd snippet is what slimfast install containerd writes for the node's install (/opt/slimfast)", (t) => {
  const runcInInstall = path.relative(repoRoot(), installPaths().runc);
  const want = planContainerd(CONTAINERD_SNIPPET_FILE, undefined, path.join(NODE_INSTALL_DIR, runcInInstall)).after;
  t.is(fs.readFileSync(CONTAINERD_SNIPPET_FILE, 'utf8'), want);
  // The DaemonSet's containerd-config init container runs that installer from the node's install,
  // mounted where it is on the node, so it writes the same BinaryName.
  const c = init('containerd-config');
  t.deepEqual(c.command.slice(0, 3), [path.join(NODE_INSTALL_DIR, 'bin', 'slimfast'), 'install', 'containerd']);
  t.is(hostPathOf(mountOf(c, NODE_INSTALL_DIR)!.name), NODE_INSTALL_DIR);
  const config = c.command[c.command.indexOf('--config') + 1];
  t.is(hostPathOf(mountOf(c, path.dirname(config))!.name), path.dirname(config));
});

test("the broker's command line: slimfast daemon's flags, etcd membership from the ConfigMap, the node's pod subnet", (t) => {
  const argv = brokerArgv('10.244.3.0/24');
  const at = argv.indexOf('daemon');
  t.deepEqual(argv.slice(0, at + 1), ['nsenter', '--target', '1', '--cgroup', '--', path.join(NODE_INSTALL_DIR, 'bin', 'slimfast'), 'daemon']);
  // cli/main.ts parses the same way (strict: an unknown flag or a missing value is an error).
  const v = parseArgs({ args: argv.slice(at + 1), options: DAEMON_OPTIONS, strict: true, allowPositionals: false }).values;
  t.like(v, {
    'host-ip': '192.168.77.1',
    'state-dir': nodeConfig.stateDir,
    etcd: configMap.data.etcd,
    'cluster-cidr': configMap.data['cluster-cidr'],
    'subnet-len': configMap.data['subnet-len'],
    subnet: '10.244.3.0/24',
  });
  // The key is shared through etcd: neither flag that would turn that off.
  t.is(v['cluster-key'], undefined);
  t.is(v['insecure-host-keys'], undefined);
  // nsenter --target 1 is the node's init only in the node's pid namespace.
  t.true(pod.hostPID);
  t.true(pod.hostNetwork);
  for (const probe of [broker.startupProbe, broker.livenessProbe]) {
    const cmd: string[] = probe.exec.command;
    t.deepEqual(cmd.slice(0, 2), [path.join(NODE_INSTALL_DIR, 'bin', 'slimfast'), 'status']);
    t.is(cmd[cmd.indexOf('--state-dir') + 1], nodeConfig.stateDir);
  }
});

test('the broker has the capabilities slimfast doctor checks', (t) => {
  const add: string[] = broker.securityContext.capabilities.add;
  for (const cap of Object.keys(BROKER_CAPABILITIES)) t.true(add.includes(cap.replace(/^CAP_/, '')), `${cap} in ${add.join(', ')}`);
  t.true(broker.securityContext.privileged);
});

test("one state dir: the broker's --state-dir, the node's config.json and the hostPath, each at the node's own path", (t) => {
  t.deepEqual(
    Object.keys(nodeConfig).filter((k) => !['stateDir', 'allowWithoutBroker', 'seccomp', 'runc'].includes(k)),
    [],
    'config.json keys the config file knows',
  );
  const stateMount = mountOf(broker, nodeConfig.stateDir);
  t.truthy(stateMount, `the broker mounts ${nodeConfig.stateDir}`);
  t.is(hostPathOf(stateMount!.name), nodeConfig.stateDir);
  t.not(stateMount!.readOnly, true);
  // The runtime service works on the paths the node's slimfast-runc and slimfast-hook send it, and
  // serves them only when it runs from the same install and config file: every host path is mounted
  // at the node's path.
  for (const m of broker.volumeMounts) {
    const host = hostPathOf(m.name);
    if (host !== undefined) t.is(m.mountPath, host, `volume ${m.name}`);
  }
  for (const p of [NODE_INSTALL_DIR, '/etc/slimfast', '/run/containerd']) t.truthy(mountOf(broker, p), `the broker mounts ${p}`);
  // Every container runs the same image.
  t.deepEqual(new Set([...pod.initContainers, ...pod.containers].map((c: K8sObject) => c.image)).size, 1);
});

test('the install init container: mounts where node-setup.sh expects them, and the image has the scripts where the manifest runs them', (t) => {
  const c = init('install');
  t.deepEqual(
    pod.initContainers.map((x: K8sObject) => x.name),
    ['install', 'containerd-config'],
    'install runs first: the other containers run its copy',
  );
  t.is(c.command[0], '/usr/local/bin/slimfast-node-setup');
  t.is(hostPathOf(mountOf(c, setupDefault('HOST_OPT'))!.name), path.dirname(NODE_INSTALL_DIR));
  t.is(hostPathOf(mountOf(c, setupDefault('SLIMFAST_ETC'))!.name), '/etc/slimfast');
  const configDir = path.dirname(setupDefault('SLIMFAST_CONFIG_SRC'));
  t.is(pod.volumes.find((v: K8sObject) => v.name === mountOf(c, configDir)!.name).configMap.name, configMap.metadata.name);
  const nodeDir = setupDefault('SLIMFAST_NODE_DIR');
  t.is(mountOf(c, nodeDir)!.name, mountOf(broker, nodeDir)!.name, 'the subnet file reaches the broker');
  t.truthy(c.env.find((e: K8sObject) => e.name === 'NODE_NAME' && e.valueFrom.fieldRef.fieldPath === 'spec.nodeName'));
  const dockerfile = fs.readFileSync(path.join(DEPLOY_DIR, 'Dockerfile'), 'utf8');
  t.regex(dockerfile, /^COPY deploy\/kubernetes\/node-setup\.sh \/usr\/local\/bin\/slimfast-node-setup$/m);
  const cidrScript = /node (\S+node-pod-cidr\.mjs)/.exec(setupText)![1];
  t.true(dockerfile.includes(`COPY deploy/kubernetes/node-pod-cidr.mjs ${cidrScript}\n`));
  t.regex(dockerfile, new RegExp(`mv /tmp/slimfast-\\$\\{VERSION\\} ${setupDefault('SLIMFAST_RELEASE')} `));
});

test("one release: the image tag in the manifests, kustomization.yaml and the Dockerfile is package.json's version", (t) => {
  const version = JSON.parse(fs.readFileSync(path.join(repoRoot(), 'package.json'), 'utf8')).version;
  const images = [...pod.initContainers, ...pod.containers].map((c: K8sObject) => c.image as string);
  const [name] = images[0].split(':');
  t.deepEqual(
    images,
    images.map(() => `${name}:${version}`),
  );
  const kust = loadManifests(path.join(DEPLOY_DIR, 'kustomization.yaml'))[0];
  t.deepEqual(kust.images, [{ name, newTag: version }]);
  t.deepEqual(
    [...kust.resources].sort(),
    fs
      .readdirSync(DEPLOY_DIR)
      .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
      .sort(),
  );
  t.regex(fs.readFileSync(path.join(DEPLOY_DIR, 'Dockerfile'), 'utf8'), new RegExp(`^ARG VERSION=${version.replace(/\./g, '\\.')}$`, 'm'));
});

test('node-setup.sh installs the release, leaves the same one alone, replaces the directory on upgrade, writes config.json and the subnet', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-k8s-setup-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const release = path.join(dir, 'release');
  fs.mkdirSync(path.join(release, 'native', 'preload'), { recursive: true });
  const lib = (root: string) => path.join(root, 'native', 'preload', 'libslimfast.so');
  fs.writeFileSync(lib(release), 'v1');
  fs.writeFileSync(path.join(release, 'MANIFEST'), 'v1\n');
  const configSrc = path.join(dir, 'config.json');
  fs.writeFileSync(configSrc, configMap.data['config.json']);
  const opt = path.join(dir, 'opt');
  fs.mkdirSync(path.join(opt, 'slimfast'), { recursive: true }); // hostPath DirectoryOrCreate made it
  const env = {
    ...process.env,
    SLIMFAST_RELEASE: release,
    HOST_OPT: opt,
    SLIMFAST_ETC: path.join(dir, 'etc'),
    SLIMFAST_CONFIG_SRC: configSrc,
    SLIMFAST_NODE_DIR: path.join(dir, 'node'),
    SLIMFAST_SUBNET: '10.244.7.0/24',
  };
  const run = () => execFileSync('/bin/sh', [SETUP], { env, encoding: 'utf8' });
  const installed = path.join(opt, 'slimfast');

  t.regex(run(), /installed the release/);
  t.is(fs.readFileSync(lib(installed), 'utf8'), 'v1');
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'etc', 'config.json'), 'utf8')), nodeConfig);
  t.is(fs.readFileSync(path.join(dir, 'node', 'subnet'), 'utf8'), '10.244.7.0/24\n');

  const ino = fs.statSync(lib(installed)).ino;
  t.notRegex(run(), /installed/, 'the same release is left alone');
  t.is(fs.statSync(lib(installed)).ino, ino);

  // An upgrade: a process that has the old library open (mapped, in a container) keeps its content.
  const fd = fs.openSync(lib(installed), 'r');
  t.teardown(() => fs.closeSync(fd));
  fs.writeFileSync(lib(release), 'v2');
  fs.writeFileSync(path.join(release, 'MANIFEST'), 'v2\n');
  t.regex(run(), /installed the release/);
  t.is(fs.readFileSync(lib(installed), 'utf8'), 'v2');
  t.is(fs.readFileSync(fd, 'utf8'), 'v1', 'the old file was not written over');
  t.deepEqual(fs.readdirSync(opt).sort(), ['slimfast', 'slimfast.old']);
});

test("node-pod-cidr.mjs reads the node's IPv4 pod CIDR from the API server with the service account, and says why it cannot", async (t) => {
  // A stand-in API server on TLS (a fixture certificate for 127.0.0.1) that wants the token.
  const fixtures = path.join(repoRoot(), 'test', 'fixtures', 'kubernetes-api');
  const nodes: Record<string, unknown> = {
    'node-a': { kind: 'Node', spec: { podCIDR: 'fd00:1::/64', podCIDRs: ['fd00:1::/64', '10.244.3.0/24'] } },
    'node-b': { kind: 'Node', spec: {} },
  };
  const server = https.createServer(
    { cert: fs.readFileSync(path.join(fixtures, 'cert.pem')), key: fs.readFileSync(path.join(fixtures, 'key.pem')) },
    (req, res) => {
      const name = /^\/api\/v1\/nodes\/([^/]+)$/.exec(req.url ?? '')?.[1];
      if (req.headers.authorization !== 'Bearer the-token') res.writeHead(401).end('{"reason":"Unauthorized"}');
      else if (!name || !(name in nodes)) res.writeHead(404).end('{"reason":"NotFound"}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(nodes[name]));
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const sa = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-k8s-sa-'));
  t.teardown(() => fs.rmSync(sa, { recursive: true, force: true }));
  fs.copyFileSync(path.join(fixtures, 'cert.pem'), path.join(sa, 'ca.crt'));
  fs.writeFileSync(path.join(sa, 'token'), 'the-token\n');
  const run = async (node: string, token = 'the-token') => {
    fs.writeFileSync(path.join(sa, 'token'), `${token}\n`);
    const env = {
      ...process.env,
      SLIMFAST_SA_DIR: sa,
      NODE_NAME: node,
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: String((server.address() as AddressInfo).port),
    };
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(DEPLOY_DIR, 'node-pod-cidr.mjs')], { env, timeout: 20_000 });
      return { code: 0, stdout, stderr: '' };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  t.deepEqual(await run('node-a'), { code: 0, stdout: '10.244.3.0/24\n', stderr: '' }, 'the IPv4 one of a dual-stack node');
  const b = await run('node-b');
  t.is(b.code, 1);
  t.regex(b.stderr, /node node-b has no IPv4 pod CIDR .*--allocate-node-cidrs.*SLIMFAST_SUBNET/);
  const c = await run('node-a', 'another-token');
  t.is(c.code, 1);
  t.regex(c.stderr, /GET node node-a: HTTP 401/);
});
