// What the runtime service does for a request: the same TypeScript slimfast-runc's edit step and
// slimfast-hook run as Node.js programs, with the caller's arguments, environment, working directory
// and network namespace instead of this process's.
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { CONFIG_FILE } from '../common/config-file.js';
import { repoRoot } from '../common/paths.js';
import { type HookIo, runHook } from '../hooks/main.js';
import { type RuncArgs, RuncArgsError, parseRuncArgs } from '../runtime-wrapper/args.js';
import { annotationsOf, debugLine, edit, editExecWith, stateArgs } from '../runtime-wrapper/main.js';
import { resolveRunc } from '../runtime-wrapper/runc.js';
import { reportError } from '../runtime-wrapper/report.js';
import type { DoorReply, DoorRequest } from './protocol.js';

/** What the requests must match to be served here (the caller belongs to this install and reads this
 *  config file), and the broker's own registration calls. */
export interface ServiceSelf {
  root: string;
  configFile: string;
  broker?: HookIo['broker'];
}

function realpath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export function thisInstall(): ServiceSelf {
  return { root: realpath(repoRoot()), configFile: path.resolve(CONFIG_FILE) };
}

/** Why this service must not serve req (the caller then does the work itself), or undefined. */
export function mismatch(req: DoorRequest, self: ServiceSelf): string | undefined {
  if (realpath(req.root) !== self.root) return `the caller is installed at ${req.root}, this broker runs from ${self.root}`;
  if (path.resolve(req.config) !== self.configFile) return `the caller reads config file ${req.config}, this broker ${self.configFile}`;
  return undefined;
}

/** slimfast-runc's edit step (main.js --slimfast-edit-only). */
export async function runcEdit(req: DoorRequest): Promise<DoorReply> {
  let args: RuncArgs;
  try {
    args = parseRuncArgs(req.argv, req.cwd);
  } catch (err) {
    if (err instanceof RuncArgsError) return { code: 0, stdout: '', stderr: '' }; // runc complains itself
    throw err;
  }
  if (args.global.log) args.global.log = path.resolve(req.cwd, args.global.log);
  let stderr = '';
  try {
    let annotations: Record<string, string> | undefined;
    if (args.command === 'exec' && args.process && args.containerId) {
      // `runc state` without blocking the broker's event loop (the Node.js program uses spawnSync)
      const r = await execa(resolveRunc(req.env), stateArgs(args, args.containerId), { reject: false, timeout: 10_000, stdin: 'ignore' });
      annotations = annotationsOf(r.exitCode ?? null, String(r.stdout));
    }
    const result = args.command === 'exec' ? editExecWith(args, () => annotations, req.env) : edit(args, req.env, req.netns);
    stderr += debugLine(args, result, req.env) ?? '';
  } catch (err) {
    reportError(args.global, (err as Error).message, (t) => (stderr += t));
    return { code: 1, stdout: '', stderr };
  }
  return { code: 0, stdout: '', stderr };
}

/** One slimfast-hook stage. */
export async function hook(req: DoorRequest, broker?: HookIo['broker']): Promise<DoorReply> {
  let stdout = '';
  let stderr = '';
  const code = await runHook(req.argv, {
    env: req.env,
    cwd: req.cwd,
    input: async () => req.stdin,
    inputTimedOut: req.stdinTimedOut,
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    runtimeNs: req.netns,
    broker,
  });
  return { code, stdout, stderr };
}

export async function handle(req: DoorRequest, self: ServiceSelf): Promise<DoorReply> {
  const why = mismatch(req, self);
  if (why) return { fallback: why };
  return req.prog === 'runc' ? runcEdit(req) : hook(req, self.broker);
}
