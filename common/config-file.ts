// Where the broker is: --state-dir, else SLIMFAST_STATE_DIR, else /etc/slimfast/config.json, else /run/slimfast.
import fs from 'node:fs';

export const DEFAULT_STATE_DIR = '/run/slimfast';
export const CONFIG_FILE = process.env.SLIMFAST_CONFIG ?? '/etc/slimfast/config.json';

export interface SlimfastConfig {
  stateDir?: string;
  /** When the broker is down: fail container creation (false, default) or start it without SlimFast. */
  allowWithoutBroker?: boolean;
  /** Every SlimFast container on the seccomp path (statically linked programs) unless its
   *  annotation io.slimfast.seccomp says false (default false: only annotated ones). */
  seccomp?: boolean;
}

export function readConfigFile(file = CONFIG_FILE): SlimfastConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  try {
    const doc = JSON.parse(text) as SlimfastConfig;
    if (typeof doc !== 'object' || doc === null) throw new Error('not a JSON object');
    return doc;
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}); fix or remove it`);
  }
}

export function resolveStateDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag) return flag;
  if (env.SLIMFAST_STATE_DIR) return env.SLIMFAST_STATE_DIR;
  return readConfigFile().stateDir ?? DEFAULT_STATE_DIR;
}
