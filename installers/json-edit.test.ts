import test from 'ava';
import { setMember } from './json-edit.js';

test('setMember: strings holding braces, quotes and escapes do not confuse it', (t) => {
  const text = '{"a\\"{": "}\\\\", "b": [1, {"c": "]"}], "runtimes": {"x": {"path": "/p,{"}}}';
  const after = setMember(text, ['runtimes', 'slimfast', 'path'], '/bin/sf', '');
  t.is(after, text.replace('"/p,{"}}', '"/p,{"}, "slimfast": {"path": "/bin/sf"}}'));
  t.deepEqual(JSON.parse(after).runtimes, { x: { path: '/p,{' }, slimfast: { path: '/bin/sf' } });
});

test('setMember: numbers of every form, literals and big integers are kept as written', (t) => {
  const text = '{\n  "n": [-1.5e+3, 0, 18446744073709551615, true, false, null]\n}\n';
  t.is(
    setMember(text, ['bip'], '10.0.0.1/24', '  '),
    '{\n  "n": [-1.5e+3, 0, 18446744073709551615, true, false, null],\n  "bip": "10.0.0.1/24"\n}\n',
  );
});

test('setMember: CRLF files get CRLF lines; tabs are kept', (t) => {
  const text = '{\r\n\t"debug": true\r\n}\r\n';
  t.is(
    setMember(text, ['runtimes', 'slimfast', 'path'], '/x', '\t'),
    '{\r\n\t"debug": true,\r\n\t"runtimes": {\r\n\t\t"slimfast": {\r\n\t\t\t"path": "/x"\r\n\t\t}\r\n\t}\r\n}\r\n',
  );
});

test('setMember: a duplicated key is edited where JSON.parse reads it (the last one)', (t) => {
  const text = '{"bip": "1.1.1.1/24", "bip": "2.2.2.1/24"}';
  const after = setMember(text, ['bip'], '10.0.0.1/24', '');
  t.is(after, '{"bip": "1.1.1.1/24", "bip": "10.0.0.1/24"}');
});

test('setMember: a value on the way that is not an object is an error, not a guess', (t) => {
  t.throws(() => setMember('{"runtimes": []}', ['runtimes', 'slimfast'], {}, ''), { message: /"runtimes" is not an object/ });
});
