// The rule that finds the real runc is written twice: in C (native/launcher, which runs runc) and in
// TypeScript (runtime-wrapper/runc.ts: slimfast-runc's Node.js program run directly, doctor). One
// table of cases holds both to the same answers. On a container's start path only the launcher's
// answer counts: it passes it on as SLIMFAST_RUNC to the edit step.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { installPaths } from '../common/paths.js';
import { resolveRunc } from './runc.js';

interface Case {
  name: string;
  /** Fake runc programs to make, by name relative to the case's directory. */
  make: string[];
  env: { SLIMFAST_RUNC?: string; PATH: string[] };
  config?: { runc: string };
  /** The fake expected, or an error message pattern. */
  want: { runc: string } | { error: RegExp };
}

const SELF = '<slimfast-runc>'; // a PATH directory whose "runc" is slimfast-runc itself

const CASES: Case[] = [
  {
    name: 'SLIMFAST_RUNC first',
    make: ['a/runc', 'b/runc', 'env-runc'],
    env: { SLIMFAST_RUNC: 'env-runc', PATH: ['a'] },
    config: { runc: 'b/runc' },
    want: { runc: 'env-runc' },
  },
  { name: 'then the config file', make: ['a/runc', 'b/runc'], env: { PATH: ['a'] }, config: { runc: 'b/runc' }, want: { runc: 'b/runc' } },
  { name: 'then PATH, in order', make: ['a/runc', 'b/runc'], env: { PATH: ['missing', 'a', 'b'] }, want: { runc: 'a/runc' } },
  { name: 'never slimfast-runc itself', make: ['b/runc'], env: { PATH: [SELF, 'b'] }, want: { runc: 'b/runc' } },
  { name: 'a PATH entry that is not executable is skipped', make: ['b/runc'], env: { PATH: ['plain', 'b'] }, want: { runc: 'b/runc' } },
  {
    name: 'SLIMFAST_RUNC not executable',
    make: ['a/runc'],
    env: { SLIMFAST_RUNC: 'plain/runc', PATH: ['a'] },
    want: { error: /SLIMFAST_RUNC=.*plain\/runc is not an executable file/ },
  },
  {
    name: 'config runc not executable',
    make: ['a/runc'],
    env: { PATH: ['a'] },
    config: { runc: 'plain/runc' },
    want: { error: /"runc": ".*plain\/runc" in .* is not an executable file/ },
  },
  {
    name: 'none at all',
    make: [],
    env: { PATH: [SELF, 'missing'] },
    want: { error: /cannot find the real runc: set SLIMFAST_RUNC, set "runc" in .*, or put runc on PATH/ },
  },
];

function prepare(c: Case) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfrule-'));
  for (const f of c.make) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), `#!/bin/sh\necho "ran ${f}"\n`, { mode: 0o755 });
  }
  fs.mkdirSync(path.join(dir, 'plain'));
  fs.writeFileSync(path.join(dir, 'plain', 'runc'), 'not a program\n', { mode: 0o644 });
  const selfDir = path.join(dir, 'self');
  fs.mkdirSync(selfDir);
  fs.symlinkSync(installPaths().runc, path.join(selfDir, 'runc'));
  const abs = (p: string) => (p === SELF ? selfDir : path.join(dir, p));
  const config = path.join(dir, 'config.json');
  if (c.config) fs.writeFileSync(config, JSON.stringify({ runc: abs(c.config.runc) }));
  const env: NodeJS.ProcessEnv = { PATH: c.env.PATH.map(abs).join(':'), SLIMFAST_CONFIG: config, HOME: dir };
  if (c.env.SLIMFAST_RUNC) env.SLIMFAST_RUNC = abs(c.env.SLIMFAST_RUNC);
  return { dir, env, config, abs };
}

for (const c of CASES) {
  test(`runc look-up, C and TypeScript agree: ${c.name}`, (t) => {
    const { dir, env, config, abs } = prepare(c);
    try {
      // C: a pass-through subcommand runs whatever runc it found (the fakes say which).
      const r = spawnSync(installPaths().runc, ['state', 'x'], { env, encoding: 'utf8', timeout: 20_000 });
      let ts: string | Error;
      try {
        ts = resolveRunc(env, config);
      } catch (err) {
        ts = err as Error;
      }
      if ('runc' in c.want) {
        t.is(r.status, 0, r.stderr);
        t.is(r.stdout, `ran ${c.want.runc}\n`, 'the launcher');
        t.is(ts, abs(c.want.runc), 'runtime-wrapper/runc.ts');
      } else {
        t.not(r.status, 0);
        t.regex(r.stderr, c.want.error, 'the launcher');
        t.true(ts instanceof Error, `runtime-wrapper/runc.ts found ${String(ts)}`);
        t.regex((ts as Error).message, c.want.error, 'runtime-wrapper/runc.ts');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
