// The cluster key file (`slimfast daemon --cluster-key FILE`): the secret every host's header key is
// derived from. Raw bytes (`head -c 32 /dev/urandom > key`) or the same as hex text.
import fs from 'node:fs';

export const CLUSTER_KEY_MIN = 16;
export const CLUSTER_KEY_MAX = 64;

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
