// The one interface every engine writer implements. `slimfast install ENGINE` (cli/install.ts) picks
// the writer from the table in index.ts, lets it read its options from the command line, asks it for
// the file changes that put the engine on SlimFast, applies or prints them (file-change.ts) and prints
// its hint. A writer only plans: it reads files through the reader it is given and writes nothing.
import type { FileChange } from './file-change.js';

/** The flags of `slimfast install ENGINE`, as node:util parseArgs gives them. */
export type InstallFlags = Record<string, string | boolean | undefined>;

/** What the command line and this install give a writer to choose its target and options from. */
export interface InstallInput {
  flags: InstallFlags;
  /** The words after `--` (for a writer that takesDaemonArgs; else empty). */
  daemonArgs: string[];
  /** The programs of this install the engine is pointed at (common/paths.ts). */
  paths: { runc: string; hook: string; cli: string };
  /** The node binary a service runs the command line with. */
  node: string;
}

/** A file's text, or undefined when it does not exist (InstallError when it cannot be read). */
export type ReadFile = (file: string) => string | undefined;

/** The command line does not fit the engine: the message is printed with the usage, exit 2. */
export class InstallUsageError extends Error {}

export interface EngineWriter<O = unknown> {
  /** The engine, as `slimfast install NAME` names it. */
  readonly name: string;
  /** What it edits when the command line names nothing (none: the command line must, e.g. podman's --hooks-dir). */
  readonly defaultConfig?: string;
  /** The program of this install the written configuration runs: a warning when it is not built yet. */
  readonly runs?: 'runc' | 'hook';
  /** What follows `--` on the command line is the broker's own flags (systemd's unit runs the daemon). */
  readonly takesDaemonArgs?: boolean;
  /** Where it writes (a file, or a directory of files) and its options; InstallUsageError when the
   *  flags do not fit this engine. */
  options(input: InstallInput): { target: string; opts: O };
  /** The changes that put the engine on SlimFast, from the current files; InstallError when a file
   *  cannot be edited (nothing is written then). Planning again after applying gives no change. */
  plan(target: string, read: ReadFile, opts: O): FileChange[];
  /** What to do next once the changes are written (reload or restart the engine, how to use it). */
  hint(changes: readonly FileChange[]): string;
}

/** The first of names the command line gives is refused, with message(name). */
export function refuseFlags(flags: InstallFlags, names: readonly string[], message: (flag: string) => string): void {
  for (const f of names) if (flags[f] !== undefined) throw new InstallUsageError(message(f));
}

/** The flags `install podman` alone takes. */
export const PODMAN_FLAGS = ['hooks-dir', 'state-dir', 'when-annotation'];

/** A writer of one engine config file (docker, containerd, crio): --config FILE, else its default. */
export function configFile(flags: InstallFlags, defaultConfig: string): string {
  refuseFlags(flags, PODMAN_FLAGS, (f) => `--${f} is an option of install podman only`);
  return (flags.config as string | undefined) ?? defaultConfig;
}
