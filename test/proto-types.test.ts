// The control API's TypeScript types have one source, proto/slimfast.proto: common/proto-types/ is
// generated from it (npm run gen:proto) and must be what the generator makes of the proto now.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { repoRoot } from '../common/paths.js';
import { slimfastPackage } from '../common/proto.js';

interface Generator {
  PROTO: string;
  OUTPUT: string;
  generate(dir: string): string[];
}

const load = async () => (await import(path.join(repoRoot(), 'proto', 'gen-types.mjs'))) as Generator;

function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (f.isFile()) {
      const p = path.join(f.parentPath, f.name);
      out.set(path.relative(dir, p), fs.readFileSync(p, 'utf8'));
    }
  }
  return out;
}

test("common/proto-types is the generator's output for the current proto", async (t) => {
  const g = await load();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-proto-test-'));
  try {
    const files = g.generate(tmp);
    t.true(files.includes('slimfast.ts') && files.includes(path.join('slimfast', 'v1', 'HealthReply.ts')), files.join(' '));
    const want = tree(tmp);
    const have = tree(g.OUTPUT);
    t.deepEqual([...have.keys()].sort(), [...want.keys()].sort(), 'stale file list: run npm run gen:proto');
    for (const [f, text] of want) t.is(have.get(f), text, `${f} is stale: run npm run gen:proto`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('the generated types name every method and message the loaded proto has', async (t) => {
  const g = await load();
  const v1 = slimfastPackage().slimfast.v1 as unknown as Record<string, unknown>;
  const service = slimfastPackage().slimfast.v1.SlimFast.service;
  const handlers = fs.readFileSync(path.join(g.OUTPUT, 'slimfast', 'v1', 'SlimFast.ts'), 'utf8');
  t.true(Object.keys(service).length >= 7);
  for (const method of Object.keys(service)) t.regex(handlers, new RegExp(`^  ${method}: grpc\\.handleUnaryCall<`, 'm'), method);
  for (const name of Object.keys(v1).filter((k) => k !== 'SlimFast')) {
    t.true(fs.existsSync(path.join(g.OUTPUT, 'slimfast', 'v1', `${name}.ts`)), `${name}.ts`);
  }
  // A changed proto gives different types: the first test can fail.
  const health = fs.readFileSync(path.join(g.OUTPUT, 'slimfast', 'v1', 'HealthReply.ts'), 'utf8');
  t.regex(health, /'hostIp': \(string\);/);
  t.regex(health, /'rssBytes': \(number\);/, '64-bit integers are numbers (longs: Number)');
});
