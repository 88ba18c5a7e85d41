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
import { fileURLToPath } from 'node:url';
import { resolveStateDir } from '../broker/config-file.js';
import { hookTimeoutSeconds } from '../runtime-wrapper/context.js';
import { writeFd } from '../runtime-wrapper/report.js';
import { type HookDeps, type HookOutcome, allowWithoutBrokerFromConfig, createHook, poststopHook } from './lifecycle.js';
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
const out = writeFd;

function finish(code: number): never {
  process.exit(code);
}

export async function main(argv: string[]): Promise<number> {
  const cmd = argv[0];
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(STDOUT, USAGE);
    return 0;
  }
  if (cmd !== 'create' && cmd !== 'poststop' && cmd !== 'precreate') {
    out(STDERR, `slimfast-hook: ${cmd ? `unknown stage "${cmd}"` : 'no stage given'}\n${USAGE}`);
    return 2;
  }
  let timeoutS: number;
  let stateDir: string;
  try {
    timeoutS = hookTimeoutSeconds();
    stateDir = resolveStateDir();
  } catch (err) {
    out(STDERR, `slimfast-hook ${cmd}: ${(err as Error).message}\n`);
    return 1;
  }
  const timer = setTimeout(() => {
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
    out(STDERR, `${msg}\n`);
    finish(code);
  }, timeoutS * 1000);

  try {
    const input = await readStdin();
    if (cmd === 'precreate') {
      const r = precreate(input, process.cwd());
      out(STDOUT, r.output);
      return 0;
    }
    const state = parseState(input);
    const { ControlClient } = await import('../broker/control-client.js');
    const deps: HookDeps = {
      stateDir,
      connect: (dir) => new ControlClient(dir, timeoutS * 1000),
      allowWithoutBroker: allowWithoutBrokerFromConfig,
      warn: (msg) => out(STDERR, `slimfast-hook: ${msg}\n`),
    };
    const r: HookOutcome = cmd === 'create' ? await createHook(state, deps) : await poststopHook(state, deps);
    if (r.message) out(STDERR, `slimfast-hook ${cmd}: ${r.message}\n`);
    return r.code;
  } catch (err) {
    out(STDERR, `slimfast-hook ${cmd}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(finish, (err) => {
    out(STDERR, `slimfast-hook: ${(err as Error).stack ?? err}\n`);
    finish(1);
  });
}
