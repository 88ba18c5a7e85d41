import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { applyChange, describe, readIfExists } from './file-change.js';
import { planPodman } from './podman.js';

const HOOK = '/opt/slimfast/bin/slimfast-hook';

test('two hooks.d files: precreate, createRuntime, schema 1.0.0', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfpodman-'));
  const changes = planPodman(dir, readIfExists, { hook: HOOK, stateDir: '/run/sf' });
  const results = changes.map((c) => applyChange(c));
  t.true(results.every((r) => r.changed && r.created));
  t.deepEqual(fs.readdirSync(dir).sort(), ['50-slimfast-createruntime.json', '50-slimfast-precreate.json']);
  const stages: Record<string, string[]> = {};
  for (const f of fs.readdirSync(dir)) {
    const doc = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    t.is(doc.version, '1.0.0');
    t.is(doc.hook.path, HOOK);
    t.true(doc.hook.env.includes('SLIMFAST_STATE_DIR=/run/sf'));
    t.deepEqual(doc.when, { always: true });
    stages[doc.stages[0]] = doc.hook.args;
  }
  t.deepEqual(stages, { precreate: ['slimfast-hook', 'precreate'], createRuntime: ['slimfast-hook', 'create'] });
  // Idempotent.
  t.true(planPodman(dir, readIfExists, { hook: HOOK, stateDir: '/run/sf' }).every((c) => applyChange(c).changed === false));
  // A change (another state dir) rewrites with backups.
  const r = planPodman(dir, readIfExists, { hook: HOOK }).map((c) => applyChange(c));
  t.true(r.every((x) => x.changed && x.backup !== undefined));
  t.is(fs.readdirSync(dir).length, 4);
  t.false(
    JSON.parse(fs.readFileSync(path.join(dir, '50-slimfast-createruntime.json'), 'utf8')).hook.env.some((e: string) =>
      e.startsWith('SLIMFAST_STATE_DIR='),
    ),
  );
  fs.rmSync(dir, { recursive: true });
});

test("the poststop file of an earlier install is removed (backed up); somebody else's file of that name stays", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfpodman-'));
  const old = path.join(dir, '50-slimfast-poststop.json');
  fs.writeFileSync(
    old,
    JSON.stringify({ version: '1.0.0', hook: { path: HOOK, args: ['slimfast-hook', 'poststop'] }, when: { always: true }, stages: ['poststop'] }),
  );
  const dry = planPodman(dir, readIfExists, { hook: HOOK }).map((c) => applyChange(c, { dryRun: true }));
  t.true(dry.some((r) => r.removed && r.file === old));
  t.true(fs.existsSync(old), '--dry-run removes nothing');
  const r = planPodman(dir, readIfExists, { hook: HOOK }).map((c) => applyChange(c));
  const gone = r.find((x) => x.file === old)!;
  t.true(gone.removed);
  t.false(fs.existsSync(old));
  t.true(fs.existsSync(gone.backup!));
  t.regex(describe(gone, false), /50-slimfast-poststop\.json: removed, no longer needed/);
  t.true(
    planPodman(dir, readIfExists, { hook: HOOK }).every((c) => applyChange(c).changed === false),
    'then idempotent',
  );
  fs.writeFileSync(old, JSON.stringify({ hook: { path: '/usr/bin/other', args: ['other'] } }));
  t.false(
    planPodman(dir, readIfExists, { hook: HOOK }).some((c) => c.file === old),
    'not ours: left alone',
  );
  fs.rmSync(dir, { recursive: true });
});

test('an annotation condition instead of always', (t) => {
  const [c] = planPodman('/x', () => undefined, { hook: HOOK, whenAnnotation: ['^io\\.slimfast\\.enable$', '^true$'] });
  t.deepEqual(JSON.parse(c.after).when, { annotations: { '^io\\.slimfast\\.enable$': '^true$' } });
});
