// slimfast-hook: the OCI hook (bin/slimfast-hook runs this through the C launcher).
//
//   slimfast-hook create      createRuntime hook: register the container with the broker
//   slimfast-hook poststop    poststop hook: unregister it
//   slimfast-hook precreate   Podman precreate hook: configuration on stdin, modified configuration on stdout
//
// The broker is found through SLIMFAST_STATE_DIR, else the config file, else /run/slimfast. Everything is
// bounded by SLIMFAST_HOOK_TIMEOUT seconds (default 10); the hook starts no other process, so nothing
// keeps its stdout/stderr open once it exits (runc waits for both to close).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveStateDir } from '../common/config-file.js';
import { hookTimeoutSeconds, hostNetnsCheck } from '../runtime-wrapper/context.js';
import { writeFd } from '../runtime-wrapper/report.js';
import { type BrokerApi, type HookDeps, type HookOutcome, allowWithoutBrokerFromConfig, createHook, poststopHook } from './lifecycle.js';
import { parseState, readStdin } from './oci-state.js';
import { precreate } from './precreate.js';

const USAGE = `usage: slimfast-hook create|poststop|precreate
  create      OCI createRuntime hook: registers the container (OCI state on stdin) with the SlimFast broker
  poststop    OCI poststop hook: unregisters it
  precreate   Podman precreate hook: reads the runtime configuration on stdin, writes it with SlimFast added
environment: SLIMFAST_STATE_DIR (broker state dir), SLIMFAST_HOOK_TIMEOUT (seconds, default 10), SLIMFAST_CONFIG
`;

const STDOUT = 1;
const STDERR = 2;

/** Where a hook run gets its input and puts its output: this process's, or a caller's (the broker's runtime service). */
export interface HookIo {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** all of stdin */
  input(): Promise<string>;
  stdout(text: string): void;
  stderr(text: string): void;
  /** "dev:ino" of the runtime's network namespace when it is not this process's (see hostNetnsCheck) */
  runtimeNs?: string;
  /** stdin already took the whole timeout (slimfast-hook read it before handing over): time out now */
  inputTimedOut?: boolean;
  /** The broker running this hook: its state dir and its registration calls, used in place of a
   *  control-API connection when the hook's state dir is that one. */
  broker?: { stateDir: string } & BrokerApi;
}

const processIo: HookIo = {
  env: process.env,
  cwd: process.cwd(),
  input: () => readStdin(),
  stdout: (t) => writeFd(STDOUT, t),
  stderr: (t) => writeFd(STDERR, t),
};

/** One hook run; resolves to its exit status, at the latest after SLIMFAST_HOOK_TIMEOUT. */
export async function runHook(argv: string[], io: HookIo): Promise<number> {
  const cmd = argv[0];
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.stdout(USAGE);
    return 0;
  }
  if (cmd !== 'create' && cmd !== 'poststop' && cmd !== 'precreate') {
    io.stderr(`slimfast-hook: ${cmd ? `unknown stage "${cmd}"` : 'no stage given'}\n${USAGE}`);
    return 2;
  }
  let timeoutS: number;
  let stateDir: string;
  try {
    timeoutS = hookTimeoutSeconds(io.env);
    stateDir = resolveStateDir(undefined, io.env);
  } catch (err) {
    io.stderr(`slimfast-hook ${cmd}: ${(err as Error).message}\n`);
    return 1;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<number>((resolve) => {
    timer = setTimeout(
      () => {
        const what = cmd === 'precreate' ? 'reading the configuration on stdin' : `the SlimFast broker of state dir ${stateDir}`;
        let code = 1;
        let msg = `slimfast-hook ${cmd}: timed out after ${timeoutS} s (SLIMFAST_HOOK_TIMEOUT) waiting for ${what}`;
        if (cmd !== 'precreate') {
          try {
            if (allowWithoutBrokerFromConfig()) {
              code = 0;
              msg = `slimfast-hook: warning: ${msg.slice('slimfast-hook '.length)}; going on without SlimFast (allowWithoutBroker)`;
            }
          } catch {
            // a broken config file: keep the failure
          }
        }
        io.stderr(`${msg}\n`);
        resolve(code);
      },
      io.inputTimedOut ? 0 : timeoutS * 1000,
    );
  });
  const work = (async () => {
    if (io.inputTimedOut) return new Promise<number>(() => {}); // the timer answers
    try {
      const input = await io.input();
      if (cmd === 'precreate') {
        const r = precreate(input, io.cwd, io.env);
        io.stdout(r.output);
        return 0;
      }
      const state = parseState(input);
      const local = io.broker && path.resolve(io.broker.stateDir) === path.resolve(stateDir) ? io.broker : undefined;
      // the gRPC client takes ~80 ms to load: only when it is needed
      const ControlClient = local ? undefined : (await import('../common/control-client.js')).ControlClient;
      const deps: HookDeps = {
        stateDir,
        connect: (dir) => local ?? new ControlClient!(dir, brokerDeadlineMs(io.env, timeoutS)),
        allowWithoutBroker: allowWithoutBrokerFromConfig,
        warn: (msg) => io.stderr(`slimfast-hook: ${msg}\n`),
        ...(io.runtimeNs ? { isHostNetns: hostNetnsCheck(io.runtimeNs) } : {}),
      };
      const r: HookOutcome = cmd === 'create' ? await createHook(state, deps) : await poststopHook(state, deps);
      if (r.message) io.stderr(`slimfast-hook ${cmd}: ${r.message}\n`);
      return r.code;
    } catch (err) {
      io.stderr(`slimfast-hook ${cmd}: ${(err as Error).message}\n`);
      return 1;
    }
  })();
  try {
    return await Promise.race([work, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long a gRPC call to the broker may take: at most 2 s (a broker answers in a few ms; a stopped one
 * must not hold a container start for a whole hook timeout), less when the hook timeout is shorter, and
 * SLIMFAST_BROKER_DEADLINE_MS when slimfast-hook set it (the broker already let its runtime service
 * request time out).
 */
export function brokerDeadlineMs(env: NodeJS.ProcessEnv, timeoutS: number): number {
  const given = Number(env.SLIMFAST_BROKER_DEADLINE_MS);
  const cap = Number.isFinite(given) && given > 0 ? given : 2000;
  return Math.min(cap, timeoutS * 1000);
}

function finish(code: number): never {
  process.exit(code);
}

export function main(argv: string[]): Promise<number> {
  return runHook(argv, processIo);
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(finish, (err) => {
    writeFd(STDERR, `slimfast-hook: ${(err as Error).stack ?? err}\n`);
    finish(1);
  });
}
