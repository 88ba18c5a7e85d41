// hooks/oci-hooks.d/ (the templates shipped for hand installs) match what `slimfast install podman` writes.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { repoRoot } from '../common/paths.js';
import { HOOK_FILES, renderHookFile } from '../installers/podman.js';

const DIR = path.join(repoRoot(), 'hooks', 'oci-hooks.d');

test("the templates are the installer's files with @SLIMFAST_HOOK@ for the hook path", (t) => {
  const names = fs
    .readdirSync(DIR)
    .filter((f) => f.endsWith('.json'))
    .sort();
  t.deepEqual(names, HOOK_FILES.map(([n]) => n).sort());
  for (const [name, stage, arg] of HOOK_FILES) {
    t.is(fs.readFileSync(path.join(DIR, name), 'utf8'), renderHookFile(stage, arg, { hook: '@SLIMFAST_HOOK@' }), name);
  }
});

test('the templates follow oci-hooks(5) schema 1.0.0', (t) => {
  for (const [name, stage, arg] of HOOK_FILES) {
    const doc = JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8'));
    t.deepEqual(Object.keys(doc).sort(), ['hook', 'stages', 'version', 'when']);
    t.is(doc.version, '1.0.0');
    t.deepEqual(doc.stages, [stage]);
    t.deepEqual(doc.hook.args, ['slimfast-hook', arg]);
    t.deepEqual(doc.when, { always: true });
    t.true(Number.isInteger(doc.hook.timeout) && doc.hook.timeout > 0);
    t.true(doc.hook.env.every((e: string) => /^[A-Z_]+=/.test(e)));
  }
});
