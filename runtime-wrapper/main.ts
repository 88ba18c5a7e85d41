// slimfast-runc's TypeScript half. The C launcher (native/launcher) runs every runc subcommand that
// needs no editing straight through; for create/run/exec it runs this program as a child with
// --slimfast-edit-only, and when it exits 0 execs the real runc itself with the unchanged argv and every
// inherited fd (Node cannot exec(2) in place). Run directly, without --slimfast-edit-only, this program
// does both: it edits, then runs the real runc as a child with the inherited fds and forwards signals.
//
//   create/run: edits BUNDLE/config.json (mounts, env, hooks, annotation) unless the container stays
//               off SlimFast (host network namespace, io.slimfast.disable=true)
//   exec:       adds the env to the --process file when the container is a SlimFast one
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RuncArgs, RuncArgsError, parseRuncArgs } from './args.js';
import { ANNOTATION_ID } from './constants.js';
import { buildCtx } from './context.js';
import { CREATE_MODIFIERS, EXEC_MODIFIERS, putOnSlimfast } from './modifiers/index.js';
import { reportError, writeFd } from './report.js';
import { resolveRunc } from './runc.js';
import { type Process, type Spec, applyModifiers, readJsonFile, writeBundleFile } from './spec.js';

export const EDIT_ONLY_FLAG = '--slimfast-edit-only';

export interface EditResult {
  /** The file edited or looked at. */
  file?: string;
  changed: boolean;
  /** Why nothing was changed, when nothing was. */
  skipped?: string;
}

/** The debug line --debug or SLIMFAST_DEBUG asks for, else undefined. */
export function debugLine(args: RuncArgs, r: EditResult, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!args.global.debug && !env.SLIMFAST_DEBUG) return undefined;
  return `slimfast-runc: ${r.changed ? `edited ${r.file}` : (r.skipped ?? `${r.file ?? 'nothing'} unchanged`)}\n`;
}

/** create/run: puts the container on SlimFast by editing BUNDLE/config.json. runtimeNs: see hostNetnsCheck. */
export function editBundle(bundle: string, id: string, env: NodeJS.ProcessEnv = process.env, runtimeNs?: string): EditResult {
  const file = path.join(bundle, 'config.json');
  const loaded = readJsonFile<Spec>(file);
  const spec = loaded.value;
  const skipped = putOnSlimfast(spec, buildCtx(id, env, runtimeNs), CREATE_MODIFIERS);
  if (skipped) return { file, changed: false, skipped: `container ${id} stays off SlimFast: ${skipped}` };
  return { file, changed: writeBundleFile(loaded, spec) };
}

/** `runc state ID` with the global flags that find the container. */
export function stateArgs(args: RuncArgs, id: string): string[] {
  const g = args.global;
  return [
    ...(g.root ? ['--root', g.root] : []),
    ...(g.rootless ? ['--rootless', g.rootless] : []),
    ...(g.systemdCgroup ? ['--systemd-cgroup'] : []),
    'state',
    id,
  ];
}

/** The annotations in `runc state` output, or undefined when it cannot tell. */
export function annotationsOf(status: number | null, stdout: string): Record<string, string> | undefined {
  if (status !== 0) return undefined;
  try {
    return (JSON.parse(stdout) as { annotations?: Record<string, string> }).annotations ?? {};
  } catch {
    return undefined;
  }
}

/** The annotations runc keeps for a container (`runc state`), or undefined when it cannot tell. */
export function containerAnnotations(runc: string, args: RuncArgs, id: string): Record<string, string> | undefined {
  const r = spawnSync(runc, stateArgs(args, id), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  return annotationsOf(r.status, r.stdout);
}

/** exec --process FILE: gives the process the SlimFast env when its container is on SlimFast. */
export function editExecProcess(args: RuncArgs, runc: string, env: NodeJS.ProcessEnv = process.env): EditResult {
  return editExecWith(args, (id) => containerAnnotations(runc, args, id), env);
}

/** editExecProcess with the container's annotations from annotationsFor (the runtime service reads them without blocking). */
export function editExecWith(
  args: RuncArgs,
  annotationsFor: (id: string) => Record<string, string> | undefined,
  env: NodeJS.ProcessEnv = process.env,
): EditResult {
  if (!args.process) return { changed: false, skipped: 'no --process file: runc takes the process from the bundle, edited at create' };
  if (!args.containerId) return { changed: false, skipped: 'no container id' };
  const annotations = annotationsFor(args.containerId);
  if (!annotations?.[ANNOTATION_ID]) return { file: args.process, changed: false, skipped: `container ${args.containerId} is not on SlimFast` };
  const loaded = readJsonFile<Process>(args.process, 'exec process file');
  const wrapper: Spec = { process: loaded.value };
  applyModifiers(wrapper, buildCtx(annotations[ANNOTATION_ID], env), EXEC_MODIFIERS);
  return { file: args.process, changed: writeBundleFile(loaded, wrapper.process) };
}

/** The edit step for one runc command line. */
export function edit(args: RuncArgs, env: NodeJS.ProcessEnv = process.env, runtimeNs?: string): EditResult {
  if (args.command === 'create' || args.command === 'run') {
    if (!args.containerId) return { changed: false, skipped: 'no container id' };
    return editBundle(args.bundle!, args.containerId, env, runtimeNs);
  }
  if (args.command === 'exec') return editExecProcess(args, resolveRunc(env), env);
  return { changed: false, skipped: `runc ${args.command ?? ''} needs no editing` };
}

/** Runs the real runc as a child, passing the inherited fds runc may hand on, and returns its status. */
export function runRunc(runc: string, args: RuncArgs): Promise<number> {
  const preserve = Number(args.flags['preserve-fds'] ?? 0) || 0;
  const listen = Number(process.env.LISTEN_FDS ?? 0) || 0;
  const extra = Math.max(preserve, listen);
  const stdio: (number | 'inherit')[] = ['inherit', 'inherit', 'inherit'];
  for (let fd = 3; fd < 3 + extra; fd++) stdio.push(fd);
  const child = spawn(runc, args.argv, { stdio, argv0: 'runc' });
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGCONT'];
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  for (const s of signals) process.on(s, forward);
  return new Promise((resolve) => {
    child.on('error', (err) => {
      reportError(args.global, `cannot run ${runc}: ${err.message}`);
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      if (signal) {
        // Die the way runc died, as runc itself would have.
        process.kill(process.pid, signal);
        resolve(128 + (os.constants.signals[signal] ?? 0));
      } else resolve(code ?? 1);
    });
  });
}

export async function main(argv: string[]): Promise<number> {
  const editOnly = argv[0] === EDIT_ONLY_FLAG;
  if (editOnly) argv = argv.slice(1);
  let args: RuncArgs;
  try {
    args = parseRuncArgs(argv);
  } catch (err) {
    if (!(err instanceof RuncArgsError)) throw err;
    // Leave the complaint to runc, which knows its own command line best.
    if (editOnly) return 0;
    args = { argv, global: { debug: false, systemdCgroup: false, help: false, version: false }, commandArgs: [], flags: {}, positionals: [] };
  }
  let runc = '';
  try {
    if (!editOnly) runc = resolveRunc();
    const line = debugLine(args, edit(args));
    if (line) writeFd(2, line);
  } catch (err) {
    reportError(args.global, (err as Error).message);
    return 1;
  }
  if (editOnly) return 0;
  return runRunc(runc, args);
}

function isMainModule(url: string): boolean {
  try {
    return fs.realpathSync(process.argv[1] ?? '') === fs.realpathSync(fileURLToPath(url));
  } catch {
    return false;
  }
}

if (isMainModule(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      writeFd(2, `slimfast-runc: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
