// What the `slimfast` commands share in reading their flags: a UsageError makes the command exit 2
// with the usage text (cli/main.ts).
import { parseArgs } from 'node:util';
import type { Opts } from './daemon-options.js';

export class UsageError extends Error {}

export function parse(args: string[], options: Opts) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean' } }, allowPositionals: false, strict: true }).values as Record<
      string,
      string | boolean | undefined
    >;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function need(v: Record<string, unknown>, name: string): string {
  const value = v[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

export function portOf(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port must be 1-65535, got "${text}"`);
  return port;
}
