// The Kubernetes deployment files (deploy/kubernetes), read by the tests that keep them honest:
// test/kubernetes-deploy.test.ts (the manifests against the CLI, doctor and the installer) and
// test/cri.test.ts (pods on the RuntimeClass's handler, containerd configured as the snippet says).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { repoRoot } from '../../common/paths.js';

// js-yaml 3 (a devDependency), typed here for the one call the tests make.
const yaml = createRequire(import.meta.url)('js-yaml') as { safeLoadAll(text: string): unknown[] };

export const DEPLOY_DIR = path.join(repoRoot(), 'deploy', 'kubernetes');
export const RUNTIME_CLASS_FILE = path.join(DEPLOY_DIR, 'runtimeclass.yaml');
export const MANIFEST_FILE = path.join(DEPLOY_DIR, 'slimfast.yaml');
/** The containerd config the DaemonSet's nodes get: what `slimfast install containerd` writes to an empty config. */
export const CONTAINERD_SNIPPET_FILE = path.join(DEPLOY_DIR, 'containerd-slimfast.toml');
/** Where the DaemonSet installs SlimFast on each node; containerd's BinaryName is below it. */
export const NODE_INSTALL_DIR = '/opt/slimfast';

// Kubernetes objects, loosely typed: the tests check the fields they use.
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };

export function loadManifests(file: string): K8sObject[] {
  return yaml.safeLoadAll(fs.readFileSync(file, 'utf8')).filter((d) => d !== null && d !== undefined) as K8sObject[];
}

export function objectOf(docs: K8sObject[], kind: string, name?: string): K8sObject {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` "${name}"` : ''}, found ${found.length}`);
  return found[0];
}

/** The runtime handler pods on the RuntimeClass run with (the containerd runtime's name). */
export function runtimeClassHandler(): string {
  const rc = objectOf(loadManifests(RUNTIME_CLASS_FILE), 'RuntimeClass');
  if (typeof rc.handler !== 'string' || rc.handler === '') throw new Error(`${RUNTIME_CLASS_FILE}: no handler`);
  return rc.handler;
}
