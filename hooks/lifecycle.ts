// createRuntime: register the container with the broker (its network namespace is /proc/PID/ns/net;
// the broker reads the IP from it, and watches PID: when the container's init exits, the broker
// unregisters it). A container that joins a registered container's namespace shares that
// registration. poststop (no longer added by slimfast-runc or `slimfast install podman`; kept for
// specs written before): unregister it. Both find the id in the annotation io.slimfast.id that
// slimfast-runc or the precreate hook set, so they act only on SlimFast containers.
import fs from 'node:fs';
import { hasReason } from '../common/api-errors.js';
import { CONFIG_FILE, readConfigFile } from '../common/config-file.js';
import { containerSocketDir, stateLayout } from '../common/state-dir.js';
import { ANNOTATION_DISABLE, ANNOTATION_ID, isTrueAnnotation } from '../runtime-wrapper/constants.js';
import { isHostNetns } from '../runtime-wrapper/context.js';
import type { OciState } from './oci-state.js';

/** The part of ControlClient the hook uses. */
export interface BrokerApi {
  register(req: { id: string; netns: string; pid?: number; share?: boolean }): Promise<{ id: string; ip: string; socket: string }>;
  unregister(id: string): Promise<boolean>;
  containers(): Promise<{ id: string; netns: string; socket: string }[]>;
  close(): void;
}

export interface HookDeps {
  stateDir: string;
  /** Connects to the broker of stateDir. */
  connect(stateDir: string): BrokerApi;
  /** Whether containers may start without SlimFast when the broker is down ("allowWithoutBroker"). */
  allowWithoutBroker(): boolean;
  warn(msg: string): void;
  isHostNetns?(nsPath: string): boolean;
}

export interface HookOutcome {
  code: 0 | 1;
  /** What happened, for stderr (runc shows a failing hook's stderr) or a warning. */
  message?: string;
}

export function allowWithoutBrokerFromConfig(): boolean {
  return readConfigFile().allowWithoutBroker === true;
}

function brokerDown(deps: HookDeps, what: string, reason: string): HookOutcome {
  const dir = stateLayout(deps.stateDir).dir;
  if (deps.allowWithoutBroker()) {
    deps.warn(`warning: ${what} without SlimFast (state dir ${dir}): ${reason} (allowWithoutBroker is set in ${CONFIG_FILE})`);
    return { code: 0 };
  }
  return {
    code: 1,
    message: `cannot ${what} on SlimFast (state dir ${dir}): ${reason}; or set "allowWithoutBroker": true in ${CONFIG_FILE} to run containers without SlimFast while the broker is down`,
  };
}

/** BrokerUnreachable, loaded only when needed: the gRPC client takes ~80 ms to load. */
async function isUnreachable(err: unknown): Promise<boolean> {
  const { BrokerUnreachable } = await import('../common/control-client.js');
  return err instanceof BrokerUnreachable;
}

function slimfastId(state: OciState): string | undefined {
  return state.annotations?.[ANNOTATION_ID] || undefined;
}

export async function createHook(state: OciState, deps: HookDeps): Promise<HookOutcome> {
  const id = slimfastId(state);
  if (!id || isTrueAnnotation(state.annotations?.[ANNOTATION_DISABLE])) return { code: 0 };
  if (!state.pid || state.pid <= 0)
    return { code: 1, message: `the OCI state of container ${state.id} has no pid: slimfast-hook create must run as a createRuntime hook` };
  const netns = `/proc/${state.pid}/ns/net`;
  if ((deps.isHostNetns ?? isHostNetns)(netns)) return { code: 0 };
  const socketDir = containerSocketDir(stateLayout(deps.stateDir), id);
  const client = deps.connect(deps.stateDir);
  try {
    // share: a Kubernetes pod's sandbox, Docker's --network container:X or a Podman pod registered this
    // namespace already; the broker then links that registration's socket in.
    await client.register({ id, netns, pid: state.pid, share: true });
    return { code: 0 };
  } catch (err) {
    if (await isUnreachable(err)) {
      const out = brokerDown(deps, `start container ${state.id}`, (err as Error).message);
      if (out.code !== 0) removeEmptyDir(socketDir);
      return out;
    }
    const msg = (err as Error).message;
    if (hasReason(err, 'NETNS_NO_IPV4')) {
      // e.g. --network none: nothing to put on the overlay; the preload finds no socket and stays out of the way.
      deps.warn(`warning: container ${state.id} starts without SlimFast: ${msg}`);
      return { code: 0 };
    }
    removeEmptyDir(socketDir);
    return {
      code: 1,
      message: `cannot register container ${state.id} with the SlimFast broker (state dir ${stateLayout(deps.stateDir).dir}): ${msg}`,
    };
  } finally {
    client.close();
  }
}

export async function poststopHook(state: OciState, deps: HookDeps): Promise<HookOutcome> {
  const annotated = slimfastId(state);
  const id = annotated ?? state.id;
  const socketDir = containerSocketDir(stateLayout(deps.stateDir), id);
  const hadDir = fs.existsSync(socketDir);
  // Podman runs poststop hooks with the annotations it was given, not those the precreate hook added:
  // there the socket directory tells whether the container was on SlimFast.
  if (!annotated && !hadDir) return { code: 0 };
  const client = deps.connect(deps.stateDir);
  try {
    // Not registered itself (it shared another container's registration): its directory is ours to remove.
    if (!(await client.unregister(id))) fs.rmSync(socketDir, { recursive: true, force: true });
    return { code: 0 };
  } catch (err) {
    if (await isUnreachable(err)) {
      // No socket directory: never registered here (e.g. its createRuntime hook failed), nothing to undo.
      if (!hadDir) return { code: 0 };
      fs.rmSync(socketDir, { recursive: true, force: true });
      return brokerDown(deps, `unregister container ${state.id}`, (err as Error).message);
    }
    return {
      code: 1,
      message: `cannot unregister container ${state.id} from the SlimFast broker (state dir ${stateLayout(deps.stateDir).dir}): ${(err as Error).message}`,
    };
  } finally {
    client.close();
  }
}

function removeEmptyDir(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty, or already gone
  }
}
