import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { SpecError, readJsonFile, writeBundleFile } from './spec.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'sfspec-'));

test('write keeps mode, indentation, trailing newline, unknown fields and order; rewrites the file in place', (t) => {
  const dir = tmp();
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, '{\n\t"ociVersion": "1.0.2-dev",\n\t"vendor.x": {"b": 1, "a": 18446744073709551615},\n\t"process": {"env": []}\n}\n', {
    mode: 0o600,
  });
  fs.chmodSync(file, 0o600);
  const inode = fs.statSync(file).ino;
  const loaded = readJsonFile<Record<string, { env?: string[] }>>(file);
  loaded.value.process.env!.push('A=1');
  t.true(writeBundleFile(loaded, loaded.value));
  const text = fs.readFileSync(file, 'utf8');
  t.is(
    text,
    '{\n\t"ociVersion": "1.0.2-dev",\n\t"vendor.x": {\n\t\t"b": 1,\n\t\t"a": 18446744073709551615\n\t},\n\t"process": {\n\t\t"env": [\n\t\t\t"A=1"\n\t\t]\n\t}\n}\n',
  );
  const st = fs.statSync(file);
  t.is(st.mode & 0o777, 0o600);
  t.is(st.ino, inode, 'the same file, rewritten (no rename: ext4 would write it out first)');
  t.deepEqual(fs.readdirSync(dir), ['config.json'], 'no temporary file is left behind');
  fs.rmSync(dir, { recursive: true });
});

test('compact files stay compact; an unchanged document is not rewritten', (t) => {
  const dir = tmp();
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, '{"ociVersion":"1.0.2","process":{"env":["A=1"]}}');
  const inode = fs.statSync(file).ino;
  const loaded = readJsonFile<Record<string, unknown>>(file);
  t.false(writeBundleFile(loaded, loaded.value));
  t.is(fs.statSync(file).ino, inode);
  (loaded.value as { hostname?: string }).hostname = 'h';
  t.true(writeBundleFile(loaded, loaded.value));
  t.is(fs.readFileSync(file, 'utf8'), '{"ociVersion":"1.0.2","process":{"env":["A=1"]},"hostname":"h"}');
  // Shorter than before: nothing of the old text is left at the end.
  const again = readJsonFile<Record<string, unknown>>(file);
  delete (again.value as { hostname?: string }).hostname;
  (again.value as { process: { env: string[] } }).process.env = [];
  t.true(writeBundleFile(again, again.value));
  t.is(fs.readFileSync(file, 'utf8'), '{"ociVersion":"1.0.2","process":{"env":[]}}');
  t.is(fs.statSync(file).ino, inode);
  fs.rmSync(dir, { recursive: true });
});

test('clear errors for a missing file, bad JSON and a non-object', (t) => {
  const dir = tmp();
  t.throws(() => readJsonFile(path.join(dir, 'nope.json')), {
    instanceOf: SpecError,
    message: /cannot read the OCI configuration .*nope\.json: ENOENT/,
  });
  fs.writeFileSync(path.join(dir, 'bad.json'), '{"a":');
  t.throws(() => readJsonFile(path.join(dir, 'bad.json')), { instanceOf: SpecError, message: /bad\.json is not valid JSON/ });
  fs.writeFileSync(path.join(dir, 'arr.json'), '[1]');
  t.throws(() => readJsonFile(path.join(dir, 'arr.json')), { instanceOf: SpecError, message: /not a JSON object/ });
  fs.rmSync(dir, { recursive: true });
});
