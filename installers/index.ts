// The engine writers `slimfast install` knows, in the order its usage names them.
import { containerdWriter } from './containerd.js';
import { crioWriter } from './crio.js';
import { dockerWriter } from './docker.js';
import type { EngineWriter } from './engine.js';
import { podmanWriter } from './podman.js';
import { systemdWriter } from './systemd.js';

export const ENGINE_WRITERS: readonly EngineWriter[] = [podmanWriter, dockerWriter, containerdWriter, crioWriter, systemdWriter];

/** The writer `slimfast install NAME` runs, or undefined for an unknown engine. */
export function engineWriter(name: string): EngineWriter | undefined {
  return ENGINE_WRITERS.find((w) => w.name === name);
}
