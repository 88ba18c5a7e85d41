// The OCI runtime configuration (a bundle's config.json, or an exec --process file): read, modify by a
// list of SpecModifiers (each may skip the container), write back atomically with the same mode, owner and formatting. Unknown fields
// and key order are kept (new keys go last); 64-bit integers are kept exactly.
import fs from 'node:fs';
import path from 'node:path';
import { detectIndent, parseLossless, stringifyLossless } from './json-lossless.js';

export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [key: string]: unknown;
}

export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
  [key: string]: unknown;
}

export interface Process {
  args?: string[];
  env?: string[];
  [key: string]: unknown;
}

export interface Namespace {
  type: string;
  path?: string;
  [key: string]: unknown;
}

export interface Spec {
  ociVersion?: string;
  process?: Process;
  root?: { path: string; readonly?: boolean; [key: string]: unknown };
  hostname?: string;
  mounts?: Mount[];
  hooks?: Record<string, Hook[] | undefined> & { [key: string]: unknown };
  annotations?: Record<string, string>;
  linux?: { namespaces?: Namespace[]; [key: string]: unknown };
  [key: string]: unknown;
}

/** What the modifiers need to know about the container and this install. */
export interface Ctx {
  /** The id this container is registered with at the broker (annotation io.slimfast.id). */
  id: string;
  /** The broker's state dir, resolved (SLIMFAST_STATE_DIR, config file, /run/slimfast). */
  stateDir: string;
  /** Host path of libslimfast.so. */
  preload: string;
  /** Host path of the slimfast-hook executable. */
  hook: string;
  /** Environment given to the hooks (NAME=value). */
  hookEnv: string[];
  /** Seconds runc allows each hook before killing it. */
  hookTimeout: number;
  /** Host directory of this container's broker socket (bind-mounted at /.slimfast/run). */
  socketDir: string;
  /** Host file naming the preload library for ld.so, shared by the broker's containers (bind-mounted at /etc/ld.so.preload). */
  ldSoPreload: string;
  /** Whether a network namespace path is the host's (the one the runtime runs in). */
  isHostNetns(nsPath: string): boolean;
  /** Directories that must exist before the runtime starts (bind-mount sources); filled by modifiers. */
  needDirs: string[];
  /** Files that must exist with this content before the runtime starts (bind-mount sources); filled by modifiers. */
  needFiles: NeededFile[];
  /** The seccomp path for containers without an io.slimfast.seccomp annotation ("seccomp" in the config file). */
  seccompDefault?: boolean;
}

export interface NeededFile {
  path: string;
  content: string;
}

/**
 * One change to the configuration. A list of them puts a container on SlimFast (modifiers/index.ts):
 * first every modifier of the list may say that the container stays off SlimFast (skip), and only when
 * none does are the changes made, so a skipped container's configuration is left exactly as it came.
 */
export interface SpecModifier {
  name: string;
  /** Why this container stays off SlimFast (e.g. it shares the host's network namespace), or undefined. */
  skip?(spec: Spec, ctx: Ctx): string | undefined;
  /** Makes the change. Applying it twice must give the same result as applying it once. A change that
   *  cannot be made throws a SpecError, whose message the runtime or Podman shows (the container fails). */
  modify(spec: Spec, ctx: Ctx): void;
}

export class SpecError extends Error {}

export interface LoadedJson<T> {
  file: string;
  value: T;
  /** The exact text read. */
  text: string;
}

export function readJsonFile<T>(file: string, what = 'OCI configuration'): LoadedJson<T> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new SpecError(`cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let value: unknown;
  try {
    value = parseLossless(text);
  } catch (err) {
    throw new SpecError(`the ${what} ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SpecError(`the ${what} ${file} is not a JSON object`);
  return { file, value: value as T, text };
}

/** Serializes like the original: same indentation, same trailing newline. */
export function formatLike(original: string, value: unknown): string {
  const out = stringifyLossless(value, detectIndent(original) || undefined);
  return /\n\s*$/.test(original) ? `${out}\n` : out;
}

/**
 * Rewrites a bundle's file (config.json, an exec --process file) in place, keeping its inode, mode and
 * owner. Returns false, writing nothing, when the content is unchanged. Not a temporary file renamed
 * over it: ext4 writes a file out before renaming it over another (auto_da_alloc), and no fsync (4-5 ms
 * here); the runtime reads the file only after the edit returns, and a bundle lives no longer than its
 * container. A size of 0 is never set on the way (that too would make ext4 write the file out).
 */
export function writeBundleFile(loaded: LoadedJson<unknown>, value: unknown): boolean {
  const text = formatLike(loaded.text, value);
  if (text === loaded.text) return false;
  const buf = Buffer.from(text);
  const fd = fs.openSync(loaded.file, 'r+');
  try {
    for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off, buf.length - off, off);
    fs.ftruncateSync(fd, buf.length);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

let tmpSeq = 0;

/** Atomic replacement of file; durable (fsync before the rename) unless told otherwise. */
export function writeFileKeepingMode(file: string, text: string, fallbackMode = 0o644, durable = true): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    st = undefined;
  }
  // pid and a sequence: the broker's runtime service may edit several bundles at once
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.slimfast-${process.pid}-${tmpSeq++}.tmp`);
  const fd = fs.openSync(tmp, 'w', st ? st.mode & 0o7777 : fallbackMode);
  try {
    fs.writeSync(fd, text);
    if (st) {
      fs.fchmodSync(fd, st.mode & 0o7777);
      if (process.getuid?.() === 0 && (st.uid !== 0 || st.gid !== 0)) fs.fchownSync(fd, st.uid, st.gid);
    }
    if (durable) fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Makes the bind-mount sources the modifiers asked for. A file is rewritten only when its content
 * differs, atomically and world-readable: running containers keep the inode they mounted.
 */
export function prepareHostPaths(ctx: Pick<Ctx, 'needDirs' | 'needFiles'>): void {
  for (const dir of ctx.needDirs) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    // Claims it for this start: the broker, handling the exit of an earlier container of the same id
    // late, then leaves the directory in place (broker/registry.ts, release).
    const now = new Date();
    fs.utimesSync(dir, now, now);
  }
  for (const f of ctx.needFiles) {
    let current: string | undefined;
    try {
      current = fs.readFileSync(f.path, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === f.content) continue;
    fs.mkdirSync(path.dirname(f.path), { recursive: true, mode: 0o755 });
    const tmp = path.join(path.dirname(f.path), `.${path.basename(f.path)}.slimfast-${process.pid}.tmp`);
    try {
      fs.writeFileSync(tmp, f.content, { mode: 0o644 });
      fs.chmodSync(tmp, 0o644); // whatever the umask: every user in the container reads it
      fs.renameSync(tmp, f.path);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw new SpecError(`cannot write ${f.path}, which containers bind-mount: ${(err as Error).message}`);
    }
  }
}

/** Why the container stays off SlimFast: the first reason a modifier of the list gives, or undefined. */
export function skipReason(spec: Spec, ctx: Ctx, modifiers: readonly SpecModifier[]): string | undefined {
  for (const m of modifiers) {
    const why = m.skip?.(spec, ctx);
    if (why) return why;
  }
  return undefined;
}

/** Applies the modifiers in order. */
export function applyModifiers(spec: Spec, ctx: Ctx, modifiers: readonly SpecModifier[]): void {
  for (const m of modifiers) m.modify(spec, ctx);
}
