import test from 'ava';
import { formatKey, insertBlock, removeTables, scanHeaders, verifyEdit } from './toml-edit.js';

test('headers are found; brackets inside strings, multi-line strings, arrays and comments are not headers', (t) => {
  const text = [
    'version = 2 # [not.a.header]',
    'list = [',
    '  [1, 2],',
    '  "x",',
    ']',
    "ml = '''",
    '[inside.literal]',
    "'''",
    'mb = """',
    '[inside.basic] \\"""',
    '"""',
    'inline = { a = [ 1 ], b = "]" }',
    '[ plugins . "io.containerd.grpc.v1.cri" . containerd ]',
    "  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc] # comment",
    '[[proxy.list]]',
    '[a."quoted.dot".b]',
  ].join('\n');
  const h = scanHeaders(text);
  t.deepEqual(
    h.map((x) => [x.line, x.path, x.array, x.indent]),
    [
      [12, ['plugins', 'io.containerd.grpc.v1.cri', 'containerd'], false, ''],
      [13, ['plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'runc'], false, '  '],
      [14, ['proxy', 'list'], true, ''],
      [15, ['a', 'quoted.dot', 'b'], false, ''],
    ],
  );
});

test('remove and insert whole tables, leaving the rest byte for byte', (t) => {
  const text = '# top\n[a]\nx = 1\n\n[b.ours]\ny = 2\n\n[b.ours.sub]\nz = 3\n\n# about c\n[c]\nw = 4\n';
  t.is(removeTables(text, ['b', 'ours']), '# top\n[a]\nx = 1\n\n# about c\n[c]\nw = 4\n');
  t.is(insertBlock('[a]\nx = 1\n\n\n', '[n]\nk = true'), '[a]\nx = 1\n\n[n]\nk = true\n');
  t.is(insertBlock('[a]\nx = 1\n\n# about c\n[c]\n', '[a.n]\nk = 1', ['a']), '[a]\nx = 1\n\n[a.n]\nk = 1\n\n# about c\n[c]\n');
  t.is(insertBlock('', '[n]'), '[n]\n');
});

test('keys are quoted only when needed', (t) => {
  t.is(formatKey('runc'), 'runc');
  t.is(formatKey('io.containerd.grpc.v1.cri'), '"io.containerd.grpc.v1.cri"');
  t.is(formatKey('io.containerd.cri.v1.runtime', "'"), "'io.containerd.cri.v1.runtime'");
});

test('verifyEdit refuses an edit that changes anything else or breaks the syntax', (t) => {
  const before = '[a]\nx = 1\n';
  t.notThrows(() => verifyEdit(before, '[a]\nx = 1\n\n[b.c]\nk = true\n', 'f', ['b', 'c'], { k: true }));
  t.throws(() => verifyEdit(before, '[a]\nx = 2\n\n[b.c]\nk = true\n', 'f', ['b', 'c'], { k: true }), { message: /would change more than b\.c/ });
  t.throws(() => verifyEdit(before, '[a]\nx = 1\n[a]\n', 'f', ['b', 'c'], { k: true }), { message: /would make it invalid TOML/ });
  t.throws(() => verifyEdit(before, '[a]\nx = 1\n\n[b.c]\nk = false\n', 'f', ['b', 'c'], { k: true }), { message: /did not give the expected/ });
});
