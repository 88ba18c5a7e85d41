import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parse } from 'smol-toml';
import { repoRoot } from '../common/paths.js';
import { applyChange } from './file-change.js';
import { planContainerd } from './containerd.js';
import { unifiedDiff } from './diff.js';

const FIX = path.join(repoRoot(), 'installers', 'fixtures');
const BIN = '/opt/slimfast/bin/slimfast-runc';
const fixture = (name: string) => fs.readFileSync(path.join(FIX, name), 'utf8');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sfctrd-'));
const hasContainerd = spawnSync('sh', ['-c', 'command -v containerd']).status === 0;

function runtimes(text: string, plugin: string): Record<string, Record<string, unknown>> {
  return (parse(text) as any).plugins[plugin].containerd.runtimes;
}

test('version 2 (containerd config default): slimfast added after runc, SystemdCgroup copied, nothing else changed', (t) => {
  for (const systemd of [true, false]) {
    const before = fixture('containerd-v2-default.toml').replace('SystemdCgroup = false', `SystemdCgroup = ${systemd}`);
    const plan = planContainerd('/etc/containerd/config.toml', before, BIN);
    t.is(plan.version, 2);
    t.is(plan.systemdCgroup, systemd);
    const r = runtimes(plan.after, 'io.containerd.grpc.v1.cri');
    t.deepEqual(r.slimfast, {
      runtime_type: 'io.containerd.runc.v2',
      pod_annotations: ['io.slimfast.*'],
      container_annotations: ['io.slimfast.*'],
      options: { BinaryName: BIN, SystemdCgroup: systemd },
    });
    // Textual: only added lines, in the runtimes section, in the file's style.
    const diff = unifiedDiff(before, plan.after, 'a', 'b').split('\n');
    t.false(
      diff.some((l) => l.startsWith('-') && !l.startsWith('---')),
      'no line removed or changed',
    );
    const added = diff
      .filter((l) => l.startsWith('+') && !l.startsWith('+++'))
      .map((l) => l.slice(1))
      .filter((l) => l !== '');
    t.deepEqual(added, [
      '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.slimfast]',
      '          runtime_type = "io.containerd.runc.v2"',
      '          pod_annotations = ["io.slimfast.*"]',
      '          container_annotations = ["io.slimfast.*"]',
      '          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.slimfast.options]',
      `            BinaryName = "${BIN}"`,
      `            SystemdCgroup = ${systemd}`,
    ]);
    t.true(plan.after.indexOf('runtimes.slimfast]') > plan.after.indexOf('runtimes.runc.options]'));
    t.true(plan.after.indexOf('runtimes.slimfast]') < plan.after.indexOf('untrusted_workload_runtime]'));
    t.is(planContainerd('f', plan.after, BIN).after, plan.after, 'idempotent');
  }
});

test('version 3 (containerd 2.x): the io.containerd.cri.v1.runtime plugin, single-quoted like the file', (t) => {
  const before = fixture('containerd-v3-default.toml');
  const plan = planContainerd('f', before, BIN);
  t.is(plan.version, 3);
  t.deepEqual(runtimes(plan.after, 'io.containerd.cri.v1.runtime').slimfast, {
    runtime_type: 'io.containerd.runc.v2',
    pod_annotations: ['io.slimfast.*'],
    container_annotations: ['io.slimfast.*'],
    options: { BinaryName: BIN, SystemdCgroup: true },
  });
  t.true(plan.after.includes("        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.slimfast]\n"));
  t.is(planContainerd('f', plan.after, BIN).after, plan.after);
});

test("a minimal config (Debian's) and no config at all", (t) => {
  const deb = planContainerd('f', fixture('containerd-v2-debian.toml'), BIN);
  t.true(deb.after.startsWith(fixture('containerd-v2-debian.toml')));
  t.deepEqual(runtimes(deb.after, 'io.containerd.grpc.v1.cri').slimfast, {
    runtime_type: 'io.containerd.runc.v2',
    pod_annotations: ['io.slimfast.*'],
    container_annotations: ['io.slimfast.*'],
    options: { BinaryName: BIN },
  });
  const none = planContainerd('f', undefined, BIN);
  t.is(
    none.after,
    `version = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.slimfast]\nruntime_type = "io.containerd.runc.v2"\npod_annotations = ["io.slimfast.*"]\ncontainer_annotations = ["io.slimfast.*"]\n\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.slimfast.options]\nBinaryName = "${BIN}"\n`,
  );
});

test('an outdated slimfast entry is replaced in place, not duplicated', (t) => {
  const first = planContainerd('f', fixture('containerd-v2-default.toml'), '/old/slimfast-runc').after;
  const second = planContainerd('f', first, BIN).after;
  t.is(second.split('runtimes.slimfast]').length, 2);
  t.is(second, planContainerd('f', fixture('containerd-v2-default.toml'), BIN).after);
});

test('pod_annotations / container_annotations: io.slimfast.* added to what the entry lists, an entry without it brought up to date', (t) => {
  const old =
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.slimfast]\nruntime_type = "io.containerd.runc.v2"\n' +
    'pod_annotations = ["example.com/*"]\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.slimfast.options]\n' +
    `BinaryName = "${BIN}"\n`;
  const plan = planContainerd('f', old, BIN);
  t.not(plan.after, old, 'an entry without the annotations (installed by an older version) is rewritten');
  const r = runtimes(plan.after, 'io.containerd.grpc.v1.cri').slimfast;
  t.deepEqual(r.pod_annotations, ['example.com/*', 'io.slimfast.*'], "the user's pattern is kept");
  t.deepEqual(r.container_annotations, ['io.slimfast.*']);
  t.is(planContainerd('f', plan.after, BIN).after, plan.after, 'idempotent');
});

test('refused with the file untouched: no version (v1), version 1, bad TOML, an inline slimfast entry', (t) => {
  t.throws(() => planContainerd('/etc/c.toml', '[plugins.cri]\nx = 1\n', BIN), {
    message: /\/etc\/c\.toml has no "version" line.*containerd config migrate/,
  });
  t.throws(() => planContainerd('f', 'version = 1\n', BIN), { message: /config version 1; SlimFast edits versions 2 and 3/ });
  t.throws(() => planContainerd('f', 'version = 2\n[plugins\n', BIN), { message: /f is not valid TOML.*left unchanged/ });
  const inline = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes]\nslimfast = { runtime_type = "x" }\n';
  t.throws(() => planContainerd('f', inline, BIN), { message: /inline table or dotted keys/ });
  const inlineRuntimes =
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\nruntimes = { runc = { runtime_type = "io.containerd.runc.v2" } }\n';
  t.throws(() => planContainerd('f', inlineRuntimes, BIN), { message: /invalid TOML|add the table by hand/ });
});

test('written with a backup, idempotent on disk; --dry-run writes nothing', (t) => {
  const dir = tmp();
  const file = path.join(dir, 'config.toml');
  const original = fixture('containerd-v2-default.toml');
  fs.writeFileSync(file, original);
  const dry = applyChange(planContainerd(file, original, BIN), { dryRun: true });
  t.true(dry.changed);
  t.regex(dry.diff!, /^\+ +\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.slimfast\]$/m);
  t.is(fs.readFileSync(file, 'utf8'), original);
  t.deepEqual(fs.readdirSync(dir), ['config.toml']);
  const r = applyChange(planContainerd(file, original, BIN), { now: new Date('2025-01-02T03:04:05Z') });
  t.is(r.backup, `${file}.slimfast-backup-20250102T030405Z`);
  t.is(fs.readFileSync(r.backup!, 'utf8'), original);
  const again = applyChange(planContainerd(file, fs.readFileSync(file, 'utf8'), BIN));
  t.false(again.changed);
  t.is(fs.readdirSync(dir).length, 2, 'no second backup');
  fs.rmSync(dir, { recursive: true });
});

(hasContainerd ? test : test.skip)('containerd itself reads the result (containerd config dump)', (t) => {
  const dir = tmp();
  const file = path.join(dir, 'config.toml');
  fs.writeFileSync(
    file,
    planContainerd(file, fixture('containerd-v2-default.toml').replace('SystemdCgroup = false', 'SystemdCgroup = true'), BIN).after,
  );
  const r = spawnSync('containerd', ['--config', file, 'config', 'dump'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const dumped = runtimes(r.stdout, 'io.containerd.grpc.v1.cri').slimfast as {
    runtime_type: string;
    pod_annotations: string[];
    container_annotations: string[];
    options: Record<string, unknown>;
  };
  t.is(dumped.runtime_type, 'io.containerd.runc.v2');
  t.is(dumped.options.BinaryName, BIN);
  t.is(dumped.options.SystemdCgroup, true);
  t.deepEqual(dumped.pod_annotations, ['io.slimfast.*'], 'containerd reads the annotation patterns');
  t.deepEqual(dumped.container_annotations, ['io.slimfast.*']);
  fs.rmSync(dir, { recursive: true });
});
