// The container's processes load the preload library and find their broker socket:
// LD_PRELOAD gets /.slimfast/libslimfast.so (after any library already listed), SLIMFAST_SOCKET is set.
import { CONTAINER_PRELOAD, CONTAINER_SOCKET } from '../constants.js';
import type { Process, Spec, SpecModifier } from '../spec.js';

/** LD_PRELOAD's value with the library added once; ld.so separates entries by ':' or spaces. */
export function withPreload(value: string): string {
  const entries = value.split(/[:\s]+/).filter(Boolean);
  if (entries.includes(CONTAINER_PRELOAD)) return value;
  return value.trim() === '' ? CONTAINER_PRELOAD : `${value}:${CONTAINER_PRELOAD}`;
}

export function addSlimfastEnv(proc: Process): void {
  proc.env ??= [];
  const env = proc.env;
  let sawPreload = false;
  let sawSocket = false;
  for (let i = 0; i < env.length; i++) {
    if (env[i].startsWith('LD_PRELOAD=')) {
      sawPreload = true;
      env[i] = `LD_PRELOAD=${withPreload(env[i].slice('LD_PRELOAD='.length))}`;
    } else if (env[i].startsWith('SLIMFAST_SOCKET=')) {
      sawSocket = true;
      env[i] = `SLIMFAST_SOCKET=${CONTAINER_SOCKET}`;
    }
  }
  if (!sawPreload) env.push(`LD_PRELOAD=${CONTAINER_PRELOAD}`);
  if (!sawSocket) env.push(`SLIMFAST_SOCKET=${CONTAINER_SOCKET}`);
}

export const env: SpecModifier = {
  name: 'env',
  modify(spec: Spec): void {
    if (spec.process) addSlimfastEnv(spec.process);
  },
};
