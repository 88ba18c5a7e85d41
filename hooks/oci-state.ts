// What a hook gets on stdin: the OCI state (createRuntime, poststop) or, for Podman's precreate stage,
// the whole runtime configuration.

export interface OciState {
  ociVersion?: string;
  id: string;
  status?: string;
  pid?: number;
  bundle?: string;
  annotations?: Record<string, string>;
}

export class HookInputError extends Error {}

/** Reads all of stdin. */
export function readStdin(stream: NodeJS.ReadableStream = process.stdin): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.on('error', reject);
  });
}

export function parseState(text: string): OciState {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new HookInputError(
      `stdin is not the OCI state JSON (${(err as Error).message}); slimfast-hook create|poststop is run by the runtime as an OCI hook`,
    );
  }
  const s = doc as Partial<OciState> | null;
  if (typeof s !== 'object' || s === null || typeof s.id !== 'string' || s.id === '') {
    throw new HookInputError('the OCI state on stdin has no container "id"');
  }
  if (s.annotations !== undefined && (typeof s.annotations !== 'object' || s.annotations === null)) {
    throw new HookInputError('the OCI state on stdin has malformed "annotations"');
  }
  return s as OciState;
}
