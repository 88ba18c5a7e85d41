// Keeping the engine's policy current: from a file (--policy, watched and reloaded on SIGHUP) or
// from etcd's <prefix>/policy key. A document that does not parse never replaces a good one.
import fs from 'node:fs';
import path from 'node:path';
import { describePolicy, parsePolicy, type Policy } from './policy.js';

type Log = (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;

/** Reads and parses a policy file; throws with the file's name and what to fix. */
export function loadPolicyFile(file: string): { policy: Policy; text: string } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the policy file ${file}: ${(err as Error).message}; fix --policy`);
  }
  return { policy: parsePolicy(text, file), text };
}

/** The policy in force and where it came from; apply() pushes each new one to the engine. */
export class PolicyKeeper {
  private current: Policy | null = null;
  private source = '';
  // The last document offered, good or not, and from where.
  private offered: string | null | undefined;
  private offeredFrom = '';
  private offeredOk = false;

  constructor(
    private readonly apply: (p: Policy | null) => void,
    private readonly log: Log,
  ) {}

  /** Installs a parsed policy (null: none) from source. */
  set(p: Policy | null, source: string, text: string | null = null): void {
    this.current = p;
    this.source = source;
    this.offered = text;
    this.offeredFrom = source;
    this.offeredOk = true;
    this.apply(p);
    this.log('info', `policy: ${this.describe()}`);
  }

  /** A new document from source (null: none there). One that does not parse is logged and the
   *  policy in force stays; the document offered last, again, changes nothing. True: it is in force. */
  offer(text: string | null, source: string): boolean {
    if (text === this.offered && source === this.offeredFrom) return this.offeredOk;
    this.offered = text;
    this.offeredFrom = source;
    let p: Policy | null = null;
    try {
      if (text !== null) p = parsePolicy(text, source);
    } catch (err) {
      this.offeredOk = false;
      this.log('error', `policy: ${(err as Error).message}; keeping the policy in force (${this.describe()})`);
      return false;
    }
    this.offeredOk = true;
    this.set(p, source, text);
    return true;
  }

  policy(): Policy | null {
    return this.current;
  }

  /** "file /etc/slimfast/policy.json, 3 rules, default deny", or "none". */
  describe(): string {
    if (!this.current) return this.source ? `none (${this.source})` : 'none';
    return `${this.source}, ${describePolicy(this.current)}`;
  }
}

/**
 * Reloads the file when it changes. Its directory is watched, not the file: editors and
 * configuration tools replace a file by renaming a new one over it. Returns the reload function
 * (for SIGHUP) and a stop function.
 */
export function watchPolicyFile(file: string, keeper: PolicyKeeper, log: Log): { reload: () => void; stop: () => void } {
  const source = `file ${file}`;
  const reload = () => {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      log('error', `policy: cannot read ${file} (${(err as Error).message}); keeping the policy in force (${keeper.describe()})`);
      return;
    }
    keeper.offer(text, source);
  };
  let timer: NodeJS.Timeout | undefined;
  let watcher: fs.FSWatcher | undefined;
  try {
    watcher = fs.watch(path.dirname(file), (_event, name) => {
      if (name !== null && name !== path.basename(file)) return;
      // A write comes as several events (truncate, write, rename): read once they settle.
      clearTimeout(timer);
      timer = setTimeout(reload, 100);
    });
    watcher.on('error', (err) => log('warn', `policy: watching ${path.dirname(file)} failed (${err.message}); reload with SIGHUP`));
  } catch (err) {
    log('warn', `policy: cannot watch ${path.dirname(file)} (${(err as Error).message}); reload with SIGHUP`);
  }
  return {
    reload,
    stop: () => {
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
