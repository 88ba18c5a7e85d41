// The native engine's own protocol self-test (native/addon/tests/selftest.mjs): two engines on
// loopback, driven by a C client speaking the preload protocol.
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../common/paths.js';

test('native engine self-test passes', async (t) => {
  const script = path.join(repoRoot(), 'native', 'addon', 'tests', 'selftest.mjs');
  const r = await execa(process.execPath, [script], { reject: false, timeout: 120_000, all: true });
  const m = /(\d+) passed, (\d+) failed/.exec(r.all ?? '');
  t.truthy(m, r.all);
  t.is(Number(m?.[2]), 0, r.all);
  t.true(Number(m?.[1]) >= 50, `only ${m?.[1]} checks ran`);
  t.is(r.exitCode, 0, r.all);
});
