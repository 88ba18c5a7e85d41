// Paths of the test programs and small helpers to run them in containers.
import path from 'node:path';
import { repoRoot } from '../../common/paths.js';
import type { Container, Topology } from '../../lab/topology.js';

export const PY = '/usr/bin/python3';
export const ECHO_SERVER = path.join(repoRoot(), 'test', 'apps', 'echo_server.py');
export const CLIENT = path.join(repoRoot(), 'test', 'apps', 'client.py');
export const PRELOAD_TESTS = path.join(repoRoot(), 'native', 'preload', 'tests', 'bin');

export interface EchoResult {
  local: string;
  peer: string;
  server_local: string;
  server_peer: string;
  server_pid: number;
  server_thread: string;
  echo_ok: boolean;
}

export interface EchoRun {
  results: EchoResult[];
  errors: string[];
  seconds: number;
}

export interface EchoRunOptions {
  /** Run the client on SlimFast (default) or on the container's own network. */
  slimfast?: boolean;
  timeout?: number;
}

/** Runs client.py's echo mode in container `from`: `count` echo connections to ip:port, one after the other. */
export async function echoRun(topo: Topology, from: Container, ip: string, port: number, count: number, opts: EchoRunOptions = {}): Promise<EchoRun> {
  const r = await topo.exec(from, [PY, CLIENT, 'echo', ip, String(port), String(count)], {
    slimfast: opts.slimfast ?? true,
    timeout: opts.timeout ?? 60_000,
  });
  const what = `echo client in ${from.name} to ${ip}:${port}`;
  if (r.exitCode !== 0)
    throw new Error(`${what} failed (exit ${r.exitCode ?? r.signal ?? 'unknown'}${r.timedOut ? ', timed out' : ''}): ${r.stderr}`);
  let run: unknown;
  try {
    run = JSON.parse(r.stdout);
  } catch {
    throw new Error(`${what} printed no JSON: ${JSON.stringify(r.stdout)}`);
  }
  if (!isEchoRun(run)) throw new Error(`${what} printed an unexpected result: ${r.stdout}`);
  return run;
}

function isEchoRun(v: unknown): v is EchoRun {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return Array.isArray(o.results) && Array.isArray(o.errors) && typeof o.seconds === 'number';
}
