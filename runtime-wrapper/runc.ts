// Finding the real runc: SLIMFAST_RUNC, else "runc" in the SlimFast config file, else runc on PATH
// (never slimfast-runc itself). The C launcher (native/launcher) applies the same rules.
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG_FILE, readConfigFile } from '../common/config-file.js';
import { installPaths } from '../common/paths.js';

export class RuncNotFound extends Error {}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function fileId(p: string): string | undefined {
  try {
    const st = fs.statSync(p);
    return st.isFile() ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined;
  }
}

function executable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export function resolveRunc(env: NodeJS.ProcessEnv = process.env, configFile = CONFIG_FILE): string {
  if (env.SLIMFAST_RUNC) {
    if (!executable(env.SLIMFAST_RUNC)) throw new RuncNotFound(`SLIMFAST_RUNC=${env.SLIMFAST_RUNC} is not an executable file`);
    return env.SLIMFAST_RUNC;
  }
  const configured = (readConfigFile(configFile) as { runc?: unknown }).runc;
  if (typeof configured === 'string' && configured !== '') {
    if (!executable(configured)) throw new RuncNotFound(`"runc": "${configured}" in ${configFile} is not an executable file`);
    return configured;
  }
  const self = [fileId(installPaths().runc), fileId('/proc/self/exe')].filter(Boolean);
  const search = env.PATH || DEFAULT_PATH;
  for (const dir of search.split(':')) {
    if (!dir) continue;
    const candidate = path.join(dir, 'runc');
    if (!executable(candidate)) continue;
    if (self.includes(fileId(candidate))) continue;
    return candidate;
  }
  throw new RuncNotFound(`cannot find the real runc: set SLIMFAST_RUNC, set "runc" in ${configFile}, or put runc on PATH (${search})`);
}
