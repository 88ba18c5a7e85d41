// What every engine writer shares: read the config file, compute the new text, and then either print the
// change (--dry-run) or back the old file up and write the new one atomically.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileKeepingMode } from '../runtime-wrapper/spec.js';
import { unifiedDiff } from './diff.js';

export interface FileChange {
  file: string;
  /** The current text; undefined when the file does not exist yet. */
  before: string | undefined;
  after: string;
  /** The file goes instead (one an earlier install wrote and this one does not need); after is ignored. */
  remove?: boolean;
  /** Something the user must still do for containers to be on SlimFast (printed, not written). */
  note?: string;
}

export interface ApplyOptions {
  dryRun?: boolean;
  now?: Date;
}

export interface ApplyResult {
  file: string;
  changed: boolean;
  created: boolean;
  /** The file was removed (its last version is in backup). */
  removed?: boolean;
  /** Where the old file was copied to. */
  backup?: string;
  /** --dry-run: the change as a unified diff. */
  diff?: string;
}

export class InstallError extends Error {}

export function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InstallError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

/** FILE.slimfast-backup-<UTC timestamp>, never overwriting an earlier backup. */
export function backupPath(file: string, now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  let candidate = `${file}.slimfast-backup-${stamp}`;
  for (let n = 2; fs.existsSync(candidate); n++) candidate = `${file}.slimfast-backup-${stamp}-${n}`;
  return candidate;
}

export function applyChange(change: FileChange, opts: ApplyOptions = {}): ApplyResult {
  const { file, before, after } = change;
  const created = before === undefined;
  if (change.remove) {
    if (before === undefined) return { file, changed: false, created: false };
    if (opts.dryRun) return { file, changed: true, created: false, removed: true, diff: unifiedDiff(before ?? '', '', file, '/dev/null') };
    const backup = backupPath(file, opts.now);
    fs.renameSync(file, backup);
    return { file, changed: true, created: false, removed: true, backup };
  }
  if (before === after) return { file, changed: false, created: false };
  if (opts.dryRun) {
    return { file, changed: true, created, diff: unifiedDiff(before ?? '', after, created ? '/dev/null' : file, file) };
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let backup: string | undefined;
  if (!created) {
    backup = backupPath(file, opts.now);
    fs.copyFileSync(file, backup, fs.constants.COPYFILE_EXCL);
  }
  writeFileKeepingMode(file, after, 0o644);
  return { file, changed: true, created, backup };
}

/** One line per result for the person running `slimfast install`. */
export function describe(r: ApplyResult, dryRun: boolean): string {
  if (!r.changed) return `${r.file}: already up to date`;
  if (dryRun) return r.diff ?? '';
  if (r.created) return `${r.file}: created`;
  if (r.removed) return `${r.file}: removed, no longer needed (the previous version is in ${r.backup})`;
  return `${r.file}: updated (the previous version is in ${r.backup})`;
}
