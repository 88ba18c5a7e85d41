import test from 'ava';
import { InstallError } from './file-change.js';
import { DOCKER_SUBNET_NOTE, planDocker } from './docker.js';

const BIN = '/opt/slimfast/bin/slimfast-runc';

test('a new daemon.json', (t) => {
  t.is(planDocker('f', undefined, BIN).after, `{\n  "runtimes": {\n    "slimfast": {\n      "path": "${BIN}"\n    }\n  }\n}\n`);
  t.is(planDocker('f', '', BIN).after, planDocker('f', undefined, BIN).after);
  t.is(
    planDocker('f', undefined, BIN, { subnet: '10.200.1.0/24' }).after,
    `{\n  "bip": "10.200.1.1/24",\n  "runtimes": {\n    "slimfast": {\n      "path": "${BIN}"\n    }\n  }\n}\n`,
  );
});

test('other settings, runtimes, order and indentation are kept; idempotent', (t) => {
  const before =
    '{\n    "log-driver": "journald",\n    "runtimes": {\n        "nvidia": {\n            "path": "nvidia-container-runtime",\n            "runtimeArgs": []\n        }\n    },\n    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}\n}\n';
  const plan = planDocker('f', before, BIN);
  const doc = JSON.parse(plan.after);
  t.deepEqual(Object.keys(doc), ['log-driver', 'runtimes', 'default-ulimits']);
  t.deepEqual(doc.runtimes, { nvidia: { path: 'nvidia-container-runtime', runtimeArgs: [] }, slimfast: { path: BIN } });
  t.regex(plan.after, /^\{\n {4}"log-driver"/);
  t.is(planDocker('f', plan.after, BIN).after, plan.after);
});

test('what install docker does not change stays byte for byte: arrays, inline objects, spacing', (t) => {
  const head =
    '{\n  "dns": ["10.0.0.2", "10.0.0.3"],\n  "default-address-pools": [{"base": "10.201.0.0/16", "size": 24}],\n  "log-opts" :  { "max-size": "10m" },\n  "runtimes": {\n    "nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}';
  const tail = '\n  },\n  "big": 18446744073709551615\n}\n';
  const plan = planDocker('f', head + tail, BIN);
  t.is(plan.after, `${head},\n    "slimfast": {\n      "path": "${BIN}"\n    }${tail}`);
  // A path already there is replaced in place; its siblings stay as written.
  const old = '{"runtimes": {"slimfast": {"runtimeArgs": ["--debug"], "path": "/old"}}, "dns": ["1.1.1.1"]}';
  t.is(planDocker('f', old, BIN).after, old.replace('/old', BIN));
  // Compact files get compact members.
  t.is(planDocker('f', '{"dns": ["1.1.1.1"]}', BIN).after, `{"dns": ["1.1.1.1"], "runtimes": {"slimfast": {"path": "${BIN}"}}}`);
  t.is(planDocker('f', '{"runtimes": {}}', BIN).after, `{"runtimes": {"slimfast": {"path": "${BIN}"}}}`);
  t.is(planDocker('f', '{\n\t"runtimes": {}\n}', BIN).after, `{\n\t"runtimes": {\n\t\t"slimfast": {\n\t\t\t"path": "${BIN}"\n\t\t}\n\t}\n}`);
  t.is(planDocker('f', '{}\n', BIN).after, `{"runtimes": {"slimfast": {"path": "${BIN}"}}}\n`);
});

test("--subnet sets bip to its first address, in place or appended; dockerd's conflicts are refused", (t) => {
  const before = '{\n  "dns": ["10.0.0.2"],\n  "bip": "172.18.0.1/16"\n}\n';
  const plan = planDocker('f', before, BIN, { subnet: '10.200.3.0/24' });
  t.is(
    plan.after,
    `{\n  "dns": ["10.0.0.2"],\n  "bip": "10.200.3.1/24",\n  "runtimes": {\n    "slimfast": {\n      "path": "${BIN}"\n    }\n  }\n}\n`,
  );
  t.true(plan.restart);
  t.is(plan.note, undefined);
  const again = planDocker('f', plan.after, BIN, { subnet: '10.200.3.0/24' });
  t.is(again.after, plan.after);
  t.falsy(again.restart);
  t.is(
    planDocker('f', '{"fixed-cidr": "10.200.3.128/25"}', BIN, { subnet: '10.200.3.0/24' }).after,
    `{"fixed-cidr": "10.200.3.128/25", "runtimes": {"slimfast": {"path": "${BIN}"}}, "bip": "10.200.3.1/24"}`,
  );
  t.throws(() => planDocker('f', '{"bridge": "br0"}', BIN, { subnet: '10.200.3.0/24' }), {
    instanceOf: InstallError,
    message: /"bridge": "br0".*not take together with "bip"/,
  });
  t.throws(() => planDocker('f', '{"fixed-cidr": "172.17.0.0/24"}', BIN, { subnet: '10.200.3.0/24' }), {
    instanceOf: InstallError,
    message: /"fixed-cidr": "172\.17\.0\.0\/24" in f is not inside --subnet 10\.200\.3\.0\/24/,
  });
  t.throws(() => planDocker('f', '{}', BIN, { subnet: '10.200.3.1/24' }), {
    instanceOf: InstallError,
    message: /--subnet: .*host bits set; did you mean 10\.200\.3\.0\/24/,
  });
  t.throws(() => planDocker('f', '{}', BIN, { subnet: '10.200.3.0/31' }), { instanceOf: InstallError, message: /leaves no room/ });
});

test("without --subnet, a note says that Docker's default bridge is outside SlimFast's subnets, unless bip or bridge is set", (t) => {
  t.is(planDocker('f', undefined, BIN).note, DOCKER_SUBNET_NOTE);
  t.regex(DOCKER_SUBNET_NOTE, /172\.17\.0\.0\/16.*--subnet/);
  t.is(planDocker('f', '{"bip": "10.200.1.1/24"}', BIN).note, undefined);
  t.is(planDocker('f', '{"bridge": "br0"}', BIN).note, undefined);
  t.is(planDocker('f', undefined, BIN, { subnet: '10.200.1.0/24' }).note, undefined);
});

test('an existing slimfast entry keeps its other fields and gets the current path', (t) => {
  const plan = planDocker('f', '{"runtimes": {"slimfast": {"path": "/old", "runtimeArgs": ["--debug"]}}}', BIN);
  t.deepEqual(JSON.parse(plan.after).runtimes.slimfast, { path: BIN, runtimeArgs: ['--debug'] });
  t.is(
    planDocker('f', '{"runtimes": {"slimfast": {"runtimeArgs": []}}}', BIN).after,
    `{"runtimes": {"slimfast": {"runtimeArgs": [], "path": "${BIN}"}}}`,
  );
});

test('malformed files are refused with a clear error', (t) => {
  t.throws(() => planDocker('/etc/docker/daemon.json', '{"debug": true,', BIN), {
    instanceOf: InstallError,
    message: /\/etc\/docker\/daemon\.json is not valid JSON .*left unchanged/,
  });
  t.throws(() => planDocker('f', '["x"]', BIN), { instanceOf: InstallError, message: /not a JSON object/ });
  t.throws(() => planDocker('f', '{"runtimes": []}', BIN), { instanceOf: InstallError, message: /"runtimes" in f is not a JSON object/ });
  t.throws(() => planDocker('f', '{"runtimes": {"slimfast": "x"}}', BIN), {
    instanceOf: InstallError,
    message: /"runtimes\.slimfast" in f is not a JSON object/,
  });
});
