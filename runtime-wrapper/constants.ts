// Names shared by slimfast-runc, slimfast-hook and the installers.

/** Directory inside the container holding SlimFast's files. */
export const CONTAINER_DIR = '/.slimfast';
/** The preload library as the container sees it (bind-mounted read-only from the host). */
export const CONTAINER_PRELOAD = '/.slimfast/libslimfast.so';
/** The container's broker socket directory as the container sees it. */
export const CONTAINER_RUN_DIR = '/.slimfast/run';
/** The broker socket as the container sees it (the broker names it sf.sock in the socket directory). */
export const CONTAINER_SOCKET = '/.slimfast/run/sf.sock';

/** Set by slimfast-runc / the precreate hook: the id the container is registered with at the broker. */
export const ANNOTATION_ID = 'io.slimfast.id';
/** A container annotated io.slimfast.disable=true is left alone. */
export const ANNOTATION_DISABLE = 'io.slimfast.disable';

/**
 * A container annotated io.slimfast.seccomp=true has its connect() calls sent to the broker's seccomp
 * agent (statically linked programs, which the preload does not reach); false (or absent) leaves them.
 */
export const ANNOTATION_SECCOMP = 'io.slimfast.seccomp';

/** Default time the hook waits for stdin and the broker, in seconds (SLIMFAST_HOOK_TIMEOUT overrides). */
export const DEFAULT_HOOK_TIMEOUT_S = 10;

/** PATH given to hooks: runc runs a hook with exactly the environment the configuration names. */
export const HOOK_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The environment variables slimfast-runc forwards to the hooks it adds, when set. */
export const FORWARDED_ENV = ['SLIMFAST_CONFIG', 'SLIMFAST_HOOK_TIMEOUT', 'SLIMFAST_NODE', 'SLIMFAST_BROKER_DEADLINE_MS'];

export function isTrueAnnotation(value: string | undefined): boolean {
  return value !== undefined && /^(true|1|yes|on)$/i.test(value.trim());
}

export function isFalseAnnotation(value: string | undefined): boolean {
  return value !== undefined && /^(false|0|no|off)$/i.test(value.trim());
}
