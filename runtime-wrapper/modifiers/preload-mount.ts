// Bind-mounts the preload library read-only at /.slimfast/libslimfast.so and the container's broker
// socket directory at /.slimfast/run. The broker creates sf.sock in that directory when the createRuntime
// hook registers the container, after the mounts exist: a directory mount shows it, a file mount could not.
import { CONTAINER_PRELOAD, CONTAINER_RUN_DIR } from '../constants.js';
import type { Ctx, Mount, Spec, SpecModifier } from '../spec.js';

export function slimfastMounts(ctx: Ctx): Mount[] {
  return [
    { destination: CONTAINER_PRELOAD, type: 'bind', source: ctx.preload, options: ['bind', 'ro', 'nosuid', 'nodev'] },
    // Read-only too: connect() to a socket works through a read-only mount, and the container cannot
    // fill the host's /run through it.
    { destination: CONTAINER_RUN_DIR, type: 'bind', source: ctx.socketDir, options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] },
  ];
}

/** Puts each mount in place of an existing one with the same destination, else appends it. */
export function upsertMounts(spec: Spec, mounts: Mount[]): void {
  spec.mounts ??= [];
  const list = spec.mounts;
  for (const m of mounts) {
    const at = list.findIndex((x) => x.destination === m.destination);
    if (at < 0) {
      list.push(m);
      continue;
    }
    list[at] = m;
    for (let j = list.length - 1; j > at; j--) if (list[j].destination === m.destination) list.splice(j, 1);
  }
}

export const preloadMount: SpecModifier = {
  name: 'preload-mount',
  modify(spec: Spec, ctx: Ctx): void {
    upsertMounts(spec, slimfastMounts(ctx));
    if (!ctx.needDirs.includes(ctx.socketDir)) ctx.needDirs.push(ctx.socketDir);
  },
};
