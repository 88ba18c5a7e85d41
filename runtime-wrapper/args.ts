// runc's command line as slimfast-runc sees it: global flags, the subcommand, and for create/run the
// bundle and container id, for exec the --process file. The C launcher (native/launcher) scans the
// global flags with the same tables; keep the two in step.
//
// runc uses urfave/cli v1 on Go's flag package, so a flag may be written -name or --name, a value as
// "--name value" or "--name=value", and a boolean as "--name" or "--name=true|false". create and run
// accept flags after the container id (urfave reorders them); exec stops at the container id, since
// what follows is the command to run.
import path from 'node:path';

/** Global flags that take a value. */
export const GLOBAL_VALUE_FLAGS = new Set(['root', 'log', 'log-format', 'criu', 'rootless']);
/** Global boolean flags. */
export const GLOBAL_BOOL_FLAGS = new Set(['debug', 'systemd-cgroup', 'help', 'h', 'version', 'v']);

/** Value-taking flags of the subcommands whose arguments slimfast-runc reads. */
const COMMAND_VALUE_FLAGS: Record<string, Set<string>> = {
  create: new Set(['bundle', 'b', 'console-socket', 'pid-file', 'preserve-fds']),
  run: new Set(['bundle', 'b', 'console-socket', 'pid-file', 'preserve-fds']),
  exec: new Set([
    'console-socket',
    'cwd',
    'env',
    'e',
    'user',
    'u',
    'additional-gids',
    'g',
    'process',
    'p',
    'pid-file',
    'process-label',
    'apparmor',
    'cap',
    'c',
    'preserve-fds',
    'cgroup',
  ]),
};

/** Short names of subcommand flags, stored in RuncArgs.flags under their long name. */
const ALIASES: Record<string, string> = { b: 'bundle', e: 'env', u: 'user', g: 'additional-gids', p: 'process', c: 'cap', d: 'detach', t: 'tty' };

/** The subcommands whose container configuration slimfast-runc edits; everything else passes through. */
export const EDITED_COMMANDS = new Set(['create', 'run', 'exec']);

export interface GlobalOptions {
  root?: string;
  log?: string;
  logFormat?: string;
  criu?: string;
  rootless?: string;
  debug: boolean;
  systemdCgroup: boolean;
  help: boolean;
  version: boolean;
}

export interface RuncArgs {
  /** The argv given (without argv[0]), unchanged: what the real runc receives. */
  argv: string[];
  global: GlobalOptions;
  /** The subcommand, or undefined (`runc --version`, `runc` alone). */
  command?: string;
  /** Everything after the subcommand. */
  commandArgs: string[];
  /** Flags of the subcommand (create/run/exec only) by long name, last occurrence wins; booleans as "true"/"false". */
  flags: Record<string, string>;
  /** Positional arguments of the subcommand (create/run/exec only). */
  positionals: string[];
  /** create/run: the container id (the last positional); exec: the first positional. */
  containerId?: string;
  /** create/run: the bundle directory, absolute (--bundle/-b, else the working directory). */
  bundle?: string;
  /** exec: the --process/-p file, absolute, when given. */
  process?: string;
}

interface Flag {
  name: string;
  value?: string;
}

/** "-x", "--x", "-x=v", "--x=v" → {name, value}; anything else (including "-" and "--") → undefined. */
function flagOf(token: string): Flag | undefined {
  if (token.length < 2 || token[0] !== '-' || token === '--') return undefined;
  const body = token.startsWith('--') ? token.slice(2) : token.slice(1);
  if (body === '' || body.startsWith('-')) return undefined;
  const eq = body.indexOf('=');
  return eq < 0 ? { name: body } : { name: body.slice(0, eq), value: body.slice(eq + 1) };
}

function isTrue(value: string | undefined): boolean {
  return value === undefined || /^(1|t|true)$/i.test(value);
}

export class RuncArgsError extends Error {}

/**
 * Parses runc's argv (without argv[0]). Unknown global flags are taken as booleans, as the launcher does.
 * Throws RuncArgsError only where runc itself would refuse the line (a value flag with no value).
 */
export function parseRuncArgs(argv: string[], cwd = process.cwd()): RuncArgs {
  const global: GlobalOptions = { debug: false, systemdCgroup: false, help: false, version: false };
  let i = 0;
  for (; i < argv.length; i++) {
    const f = flagOf(argv[i]);
    if (!f) break;
    if (GLOBAL_VALUE_FLAGS.has(f.name)) {
      let value = f.value;
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new RuncArgsError(`flag needs an argument: --${f.name}`);
        value = argv[++i];
      }
      if (f.name === 'root') global.root = value;
      else if (f.name === 'log') global.log = value;
      else if (f.name === 'log-format') global.logFormat = value;
      else if (f.name === 'criu') global.criu = value;
      else if (f.name === 'rootless') global.rootless = value;
    } else {
      const on = isTrue(f.value);
      if (f.name === 'debug') global.debug = on;
      else if (f.name === 'systemd-cgroup') global.systemdCgroup = on;
      else if (f.name === 'help' || f.name === 'h') global.help = on;
      else if (f.name === 'version' || f.name === 'v') global.version = on;
    }
  }
  if (i < argv.length && argv[i] === '--') i++;
  const args: RuncArgs = { argv: [...argv], global, commandArgs: [], flags: {}, positionals: [] };
  if (i >= argv.length) return args;
  args.command = argv[i];
  args.commandArgs = argv.slice(i + 1);
  const valueFlags = COMMAND_VALUE_FLAGS[args.command];
  if (!valueFlags) return args;

  const interspersed = args.command !== 'exec';
  const rest = args.commandArgs;
  for (let j = 0; j < rest.length; j++) {
    const token = rest[j];
    if (token === '--') {
      args.positionals.push(...rest.slice(j + 1));
      break;
    }
    const f = flagOf(token);
    if (!f) {
      if (!interspersed) {
        args.positionals.push(...rest.slice(j));
        break;
      }
      args.positionals.push(token);
      continue;
    }
    if (valueFlags.has(f.name)) {
      let value = f.value;
      if (value === undefined) {
        if (j + 1 >= rest.length) throw new RuncArgsError(`flag needs an argument: --${f.name}`);
        value = rest[++j];
      }
      args.flags[ALIASES[f.name] ?? f.name] = value;
    } else {
      args.flags[ALIASES[f.name] ?? f.name] = isTrue(f.value) ? 'true' : 'false';
    }
  }

  if (args.command === 'exec') {
    args.containerId = args.positionals[0];
    if (args.flags.process !== undefined) args.process = path.resolve(cwd, args.flags.process);
  } else {
    args.containerId = args.positionals[args.positionals.length - 1];
    args.bundle = path.resolve(cwd, args.flags.bundle ?? '.');
  }
  return args;
}
