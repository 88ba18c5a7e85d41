// The cluster key: the secret every host's header key is derived from (docs/protocol.md §2). It
// comes from a file (`slimfast daemon --cluster-key FILE`: raw bytes, `head -c 32 /dev/urandom >
// key`, or the same as hex text) or, in etcd mode without one, from the etcd key
// <prefix>/cluster-key (hex text), which the first broker creates (broker/etcd-membership.ts). The
// broker loads it; `slimfast doctor` checks the same file the same way.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { SF_CLUSTER_KEY_MAX, SF_CLUSTER_KEY_MIN } from './wire.js';

export const CLUSTER_KEY_MIN = SF_CLUSTER_KEY_MIN;
export const CLUSTER_KEY_MAX = SF_CLUSTER_KEY_MAX;
/** The size of a key SlimFast makes itself (etcd's shared one). */
export const CLUSTER_KEY_NEW = 32;

/** How an operator makes a key file: shown wherever one is missing or bad. */
export const makeKeyHint = (file: string) => `head -c 32 /dev/urandom > ${file} && chmod 600 ${file}`;
export const DEFAULT_KEY_FILE = '/etc/slimfast/cluster.key';

export interface ClusterKey {
  key: Buffer;
  /** Set when the file is readable by group or others: worth fixing, not worth refusing. */
  warning?: string;
}

export function parseClusterKey(content: Buffer, file: string): Buffer {
  const text = content.toString('latin1').trim();
  // Hex text only when it could not be the raw form: an even run of hex digits, at least 32 of them.
  const key = /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && text.length >= 2 * CLUSTER_KEY_MIN ? Buffer.from(text, 'hex') : content;
  if (key.length < CLUSTER_KEY_MIN || key.length > CLUSTER_KEY_MAX) {
    throw new Error(
      `cluster key ${file} holds ${key.length} bytes; it needs ${CLUSTER_KEY_MIN}-${CLUSTER_KEY_MAX} ` +
        `(make one with: head -c 32 /dev/urandom > ${file}; chmod 600 ${file}) and the same file on every host`,
    );
  }
  return key;
}

/**
 * A key kept as text (etcd's <prefix>/cluster-key, the copy cached in the state dir): hex digits
 * only, 16-64 bytes' worth. undefined when the text is not that.
 */
export function parseHexClusterKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (!/^[0-9a-fA-F]+$/.test(t) || t.length % 2 !== 0) return undefined;
  const key = Buffer.from(t, 'hex');
  return key.length >= CLUSTER_KEY_MIN && key.length <= CLUSTER_KEY_MAX ? key : undefined;
}

/** A fresh key as its hex text. */
export function newClusterKeyHex(): string {
  return crypto.randomBytes(CLUSTER_KEY_NEW).toString('hex');
}

/** A short fingerprint that names a key in logs and status without giving it away. */
export function keyFingerprint(key: Buffer): string {
  return crypto.createHash('sha256').update('slimfast cluster key fingerprint v1').update(key).digest('hex').slice(0, 12);
}

export function loadClusterKey(file: string): ClusterKey {
  let content: Buffer;
  let mode: number;
  try {
    content = fs.readFileSync(file);
    mode = fs.statSync(file).mode;
  } catch (err) {
    throw new Error(`cannot read the cluster key ${file}: ${(err as Error).message}`);
  }
  const key = parseClusterKey(content, file);
  const warning = mode & 0o077 ? `cluster key ${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it` : undefined;
  return { key, warning };
}
