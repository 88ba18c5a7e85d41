import test from 'ava';
import { InstallError } from './common.js';
import { planDocker } from './docker.js';

const BIN = '/opt/slimfast/bin/slimfast-runc';

test('a new daemon.json', (t) => {
  t.is(planDocker('f', undefined, BIN).after, `{\n  "runtimes": {\n    "slimfast": {\n      "path": "${BIN}"\n    }\n  }\n}\n`);
  t.is(planDocker('f', '', BIN).after, planDocker('f', undefined, BIN).after);
});

test('other settings, runtimes, order and indentation are kept; idempotent', (t) => {
  const before = '{\n    "log-driver": "journald",\n    "runtimes": {\n        "nvidia": {\n            "path": "nvidia-container-runtime",\n            "runtimeArgs": []\n        }\n    },\n    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}\n}\n';
  const plan = planDocker('f', before, BIN);
  const doc = JSON.parse(plan.after);
  t.deepEqual(Object.keys(doc), ['log-driver', 'runtimes', 'default-ulimits']);
  t.deepEqual(doc.runtimes, { nvidia: { path: 'nvidia-container-runtime', runtimeArgs: [] }, slimfast: { path: BIN } });
  t.regex(plan.after, /^\{\n {4}"log-driver"/);
  t.is(planDocker('f', plan.after, BIN).after, plan.after);
});

test('an existing slimfast entry keeps its other fields and gets the current path', (t) => {
  const plan = planDocker('f', '{"runtimes": {"slimfast": {"path": "/old", "runtimeArgs": ["--debug"]}}}', BIN);
  t.deepEqual(JSON.parse(plan.after).runtimes.slimfast, { path: BIN, runtimeArgs: ['--debug'] });
});

test('malformed files are refused with a clear error', (t) => {
  t.throws(() => planDocker('/etc/docker/daemon.json', '{"debug": true,', BIN), { instanceOf: InstallError, message: /\/etc\/docker\/daemon\.json is not valid JSON .*left unchanged/ });
  t.throws(() => planDocker('f', '["x"]', BIN), { instanceOf: InstallError, message: /not a JSON object/ });
  t.throws(() => planDocker('f', '{"runtimes": []}', BIN), { instanceOf: InstallError, message: /"runtimes" in f is not a JSON object/ });
  t.throws(() => planDocker('f', '{"runtimes": {"slimfast": "x"}}', BIN), { instanceOf: InstallError, message: /"runtimes\.slimfast" in f is not a JSON object/ });
});
