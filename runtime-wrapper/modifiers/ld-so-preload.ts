// Bind-mounts, read-only, a file naming the preload library at /etc/ld.so.preload, so that ld.so loads
// it into every dynamically linked program of the container, whatever its environment: with Podman's
// hooks directory alone, `podman exec` processes come from the configuration Podman made before the
// precreate hook ran and have neither LD_PRELOAD nor SLIMFAST_SOCKET (the library then finds the broker
// socket at /.slimfast/run/sf.sock by itself). Set-uid programs, which ignore LD_PRELOAD, load it too.
//
// The mount replaces the image's own /etc/ld.so.preload, and any mount there: the precreate hook cannot
// read the image's. The host file is the same for every container of a broker (STATE_DIR/ld.so.preload),
// so nothing is left to remove when a container stops.
import { CONTAINER_PRELOAD } from '../constants.js';
import type { Ctx, Spec, SpecModifier } from '../spec.js';
import { upsertMounts } from './preload-mount.js';

/** Where ld.so looks for libraries to preload into every program. */
export const LD_SO_PRELOAD = '/etc/ld.so.preload';
/** The file's content: one absolute path per line. */
export const LD_SO_PRELOAD_CONTENT = `${CONTAINER_PRELOAD}\n`;

export const ldSoPreload: SpecModifier = {
  name: 'ld-so-preload',
  modify(spec: Spec, ctx: Ctx): void {
    upsertMounts(spec, [{ destination: LD_SO_PRELOAD, type: 'bind', source: ctx.ldSoPreload, options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] }]);
    if (!ctx.needFiles.some((f) => f.path === ctx.ldSoPreload)) ctx.needFiles.push({ path: ctx.ldSoPreload, content: LD_SO_PRELOAD_CONTENT });
  },
};
