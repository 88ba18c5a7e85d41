// Paths of the test programs and small helpers to run them in containers.
import path from 'node:path';
import { repoRoot } from '../../broker/paths.js';

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
