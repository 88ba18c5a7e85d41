// The runtime service's wire format, between the C front ends (native/launcher/door.c) and the broker.
//
// Request: one JSON object on one line, then the client shuts down its sending side:
//   {"v":1, "prog":"runc"|"hook", "root": install root, "config": config file path,
//    "netns": "dev:ino" of the caller's network namespace, "cwd": its working directory,
//    "argv": [arguments after the program name], "env": ["NAME=value", …], "stdin": hooks' input,
//    "stdinTimedOut": true when the hook's stdin did not end within its timeout}
// Reply: a header line, then the bytes it announces:
//   "SFR1 <exit code> <stdout bytes> <stderr bytes>\n" <stdout><stderr>
//   "SFR1 fallback <reason>\n"   the caller does the work itself (the Node.js programs), as without a broker
// Lengths are in bytes so the C side needs no JSON reader for replies.

export const REQUEST_MAX_BYTES = 16 << 20;

export interface DoorRequest {
  prog: 'runc' | 'hook';
  root: string;
  config: string;
  netns: string;
  cwd: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdin: string;
  stdinTimedOut: boolean;
}

export type DoorReply = { code: number; stdout: string; stderr: string } | { fallback: string };

export class DoorRequestError extends Error {}

function str(doc: Record<string, unknown>, key: string, optional = false): string {
  const v = doc[key];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string') throw new DoorRequestError(`"${key}" must be a string`);
  return v;
}

function strings(doc: Record<string, unknown>, key: string): string[] {
  const v = doc[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new DoorRequestError(`"${key}" must be an array of strings`);
  return v as string[];
}

/** Parses and checks one request line. */
export function parseRequest(text: string): DoorRequest {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new DoorRequestError(`not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new DoorRequestError('not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.v !== 1) throw new DoorRequestError(`unknown version ${JSON.stringify(d.v)}`);
  const prog = str(d, 'prog');
  if (prog !== 'runc' && prog !== 'hook') throw new DoorRequestError(`unknown program "${prog}"`);
  const cwd = str(d, 'cwd');
  if (!cwd.startsWith('/')) throw new DoorRequestError('"cwd" must be an absolute path');
  const env: NodeJS.ProcessEnv = {};
  for (const kv of strings(d, 'env')) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (d.stdinTimedOut !== undefined && typeof d.stdinTimedOut !== 'boolean') throw new DoorRequestError('"stdinTimedOut" must be true or false');
  return {
    prog,
    root: str(d, 'root'),
    config: str(d, 'config'),
    netns: str(d, 'netns'),
    cwd,
    argv: strings(d, 'argv'),
    env,
    stdin: str(d, 'stdin', true),
    stdinTimedOut: d.stdinTimedOut === true,
  };
}

export function encodeReply(r: DoorReply): Buffer {
  if ('fallback' in r) return Buffer.from(`SFR1 fallback ${r.fallback.replace(/\s+/g, ' ')}\n`);
  const out = Buffer.from(r.stdout);
  const err = Buffer.from(r.stderr);
  return Buffer.concat([Buffer.from(`SFR1 ${r.code} ${out.length} ${err.length}\n`), out, err]);
}

/** The reply's inverse, for tests and any TypeScript client. */
export function decodeReply(buf: Buffer): DoorReply {
  const nl = buf.indexOf(10);
  if (nl < 0) throw new DoorRequestError('reply without a header line');
  const head = buf.subarray(0, nl).toString('utf8').split(' ');
  if (head[0] !== 'SFR1') throw new DoorRequestError(`reply header "${head.join(' ')}"`);
  if (head[1] === 'fallback') return { fallback: head.slice(2).join(' ') };
  const [code, nout, nerr] = head.slice(1).map(Number);
  const body = buf.subarray(nl + 1);
  if (![code, nout, nerr].every(Number.isInteger) || body.length !== nout + nerr) throw new DoorRequestError('reply lengths do not match its body');
  return { code, stdout: body.subarray(0, nout).toString('utf8'), stderr: body.subarray(nout).toString('utf8') };
}
