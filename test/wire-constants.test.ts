// The wire constants have one source, native/include/slimfast_wire.h: common/wire.ts is generated
// from it (npm run gen:wire) and must be what the generator makes of the header now.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { repoRoot } from '../common/paths.js';
import * as wire from '../common/wire.js';

interface Generator {
  HEADER: string;
  OUTPUT: string;
  render(text: string): string;
  constantsOf(text: string): [string, string][];
}

const load = async () => (await import(path.join(repoRoot(), 'native', 'include', 'wire-ts.mjs'))) as Generator;

test("common/wire.ts is the generator's output for the current header", async (t) => {
  const g = await load();
  const want = g.render(fs.readFileSync(g.HEADER, 'utf8'));
  t.is(fs.readFileSync(g.OUTPUT, 'utf8'), want, 'stale: run npm run gen:wire');
});

test('the generator finds defines and enum members, and the compiled values match the header', async (t) => {
  const g = await load();
  const text = fs.readFileSync(g.HEADER, 'utf8');
  const found = new Map(g.constantsOf(text));
  t.is(found.get('SF_HDR_MAGIC'), '0x534c4631');
  t.is(found.get('SF_HDR_POOLED'), '3', 'an enum member');
  t.is(found.get('SF_POOLED'), '202');
  t.true(found.size >= 40, `${found.size} constants`);
  for (const [name, lit] of found) t.is((wire as Record<string, number>)[name], Number(lit), name);
  // A changed header gives a different file: the check above can fail.
  t.not(g.render(text.replace('#define SF_HDR_LEN 48', '#define SF_HDR_LEN 64')), g.render(text));
  t.throws(() => g.constantsOf('#define SF_A 1\n#define SF_A 2\n'), { message: /SF_A is defined twice/ });
});
