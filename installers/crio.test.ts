import test from 'ava';
import { parse } from 'smol-toml';
import { planCrio } from './crio.js';

const BIN = '/opt/slimfast/bin/slimfast-runc';

test("a new drop-in names the handler, runc-compatible, with runc's state root", (t) => {
  const plan = planCrio('/etc/crio/crio.conf.d/99-slimfast.conf', undefined, BIN);
  t.regex(plan.after, /^# SlimFast runtime handler/);
  t.deepEqual((parse(plan.after) as any).crio.runtime.runtimes.slimfast, { runtime_path: BIN, runtime_type: 'oci', runtime_root: '/run/runc' });
  t.is(planCrio('f', plan.after, BIN).after, plan.after, 'idempotent');
});

test('an existing file keeps its other tables and comments; an old entry is replaced', (t) => {
  const before =
    '# site settings\n[crio.runtime]\ndefault_runtime = "crun"\n\n[crio.runtime.runtimes.crun]\nruntime_path = "/usr/bin/crun"\n\n[crio.runtime.runtimes.slimfast]\nruntime_path = "/old"\n\n[crio.image]\npause_image = "registry.k8s.io/pause:3.9"\n';
  const plan = planCrio('f', before, BIN);
  const doc = parse(plan.after) as any;
  t.is(doc.crio.runtime.default_runtime, 'crun');
  t.is(doc.crio.runtime.runtimes.crun.runtime_path, '/usr/bin/crun');
  t.is(doc.crio.runtime.runtimes.slimfast.runtime_path, BIN);
  t.is(doc.crio.image.pause_image, 'registry.k8s.io/pause:3.9');
  t.true(plan.after.startsWith('# site settings\n[crio.runtime]\ndefault_runtime = "crun"\n'));
  t.is(plan.after.split('[crio.runtime.runtimes.slimfast]').length, 2);
});

test('a malformed file is refused', (t) => {
  t.throws(() => planCrio('f', '[crio.runtime\n', BIN), { message: /f is not valid TOML.*left unchanged/ });
});
