import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { RuncNotFound, resolveRunc } from './runc.js';

function fakeBin(dir: string, name: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  return p;
}

test('SLIMFAST_RUNC, then the config file, then PATH', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfrunc-'));
  const a = fakeBin(dir, 'runc-a');
  const b = fakeBin(dir, 'runc-b');
  fs.mkdirSync(path.join(dir, 'p'));
  const onPath = fakeBin(path.join(dir, 'p'), 'runc');
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ runc: b }));
  t.is(resolveRunc({ SLIMFAST_RUNC: a, PATH: path.join(dir, 'p') }, config), a);
  t.is(resolveRunc({ PATH: path.join(dir, 'p') }, config), b);
  t.is(resolveRunc({ PATH: `/nonexistent:${path.join(dir, 'p')}` }, path.join(dir, 'none.json')), onPath);
  fs.rmSync(dir, { recursive: true });
});

test('clear errors: not executable, not found, broken config', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfrunc-'));
  const none = path.join(dir, 'none.json');
  const plain = path.join(dir, 'plain');
  fs.writeFileSync(plain, 'not a program', { mode: 0o644 });
  t.throws(() => resolveRunc({ SLIMFAST_RUNC: plain }, none), {
    instanceOf: RuncNotFound,
    message: /SLIMFAST_RUNC=.*plain is not an executable file/,
  });
  t.throws(() => resolveRunc({ PATH: dir }, none), { instanceOf: RuncNotFound, message: /cannot find the real runc: set SLIMFAST_RUNC/ });
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, '{"runc": ');
  t.throws(() => resolveRunc({ PATH: dir }, bad), { message: /bad\.json is not valid JSON/ });
  fs.writeFileSync(bad, JSON.stringify({ runc: '/nonexistent/runc' }));
  t.throws(() => resolveRunc({ PATH: dir }, bad), {
    instanceOf: RuncNotFound,
    message: /"runc": "\/nonexistent\/runc" in .*bad\.json is not an executable file/,
  });
  fs.rmSync(dir, { recursive: true });
});
