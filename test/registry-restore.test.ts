// A broker restart re-registers what containers.json recorded only while each namespace is the same
// one: the path (a container's /proc/PID/ns/net) may exist again for another process once the pid is
// reused. Real files stand in for the namespaces; the engine is a recorder (this is the registry's logic).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parseCidr } from '../common/cidr.js';
import type { NativeEngine } from '../broker/native-engine.js';
import { Registry } from '../broker/registry.js';
import { stateLayout } from '../common/state-dir.js';

function identity(p: string): string {
  const st = fs.statSync(p);
  return `${st.dev}:${st.ino}`;
}

test('restore keeps containers whose namespace is the same one, drops those gone or replaced', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-registry-'));
  try {
    const layout = stateLayout(path.join(dir, 'state'));
    fs.mkdirSync(layout.dir);
    const ns = (name: string) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, '');
      return f;
    };
    const same = ns('same');
    const reused = ns('reused');
    const reusedId = identity(reused);
    fs.rmSync(reused);
    ns('placeholder'); // keeps the old inode number from coming straight back
    ns('reused'); // a new file at the old path: another namespace
    const old = ns('old-format');
    const rec = (id: string, ip: string, netns: string, netnsId?: string) => ({
      id,
      ip,
      netns,
      socket: '',
      pid: 1,
      createdAt: '2026-12-07T00:00:00Z',
      ...(netnsId ? { netnsId } : {}),
    });
    fs.writeFileSync(
      layout.containersFile,
      JSON.stringify({
        containers: [
          rec('kept', '10.9.0.2', same, identity(same)),
          rec('replaced', '10.9.0.3', reused, reusedId),
          rec('gone', '10.9.0.4', path.join(dir, 'missing'), 'x:y'),
          rec('unrecorded', '10.9.0.5', old), // written before netnsId existed: the path check alone
        ],
      }),
    );
    const added: string[] = [];
    const engine = { addContainer: (id: string) => added.push(id), removeContainer: () => {} } as unknown as NativeEngine;
    const logs: string[] = [];
    const reg = new Registry(layout, engine, parseCidr('10.9.0.0/24'));
    reg.restore((msg) => logs.push(msg));
    t.deepEqual(added, ['kept', 'unrecorded']);
    t.deepEqual(
      reg.list().map((c) => c.id),
      ['kept', 'unrecorded'],
    );
    t.true(
      logs.some((l) => /dropping container replaced: its network namespace .* is gone/.test(l)),
      logs.join('\n'),
    );
    t.true(logs.some((l) => /dropping container gone/.test(l)));
    // containers.json (what brokers before registrations/ wrote) is read once and replaced by one file per registration.
    t.false(fs.existsSync(layout.containersFile));
    const saved = fs
      .readdirSync(layout.registrationsDir)
      .sort()
      .map((f) => JSON.parse(fs.readFileSync(path.join(layout.registrationsDir, f), 'utf8')) as { id: string; netnsId?: string });
    t.deepEqual(
      saved.map((c) => c.id),
      ['kept', 'unrecorded'],
    );
    t.is(saved.find((c) => c.id === 'unrecorded')?.netnsId, identity(old), 'an old record gains its identity on re-registration');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
