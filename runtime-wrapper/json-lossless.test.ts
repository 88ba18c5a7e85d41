import test from 'ava';
import { detectIndent, parseLossless, stringifyLossless } from './json-lossless.js';

test('64-bit integers survive a round trip exactly', (t) => {
  const text =
    '{"seccomp":{"syscalls":[{"args":[{"index":1,"value":18446744073709551615,"valueTwo":9223372036854775807,"op":"SCMP_CMP_MASKED_EQ"}]}]},"limit":-9223372036854775808,"small":42,"f":1.5,"neg":-1}';
  const v = parseLossless(text);
  t.is(stringifyLossless(v), text);
});

test('numbers inside strings are left alone, escapes included', (t) => {
  const text = '{"a":"18446744073709551615","b":"x\\"18446744073709551615\\"","c":[1,2,3]}';
  const v = parseLossless(text) as Record<string, unknown>;
  t.is(v.a, '18446744073709551615');
  t.is(v.b, 'x"18446744073709551615"');
  t.is(stringifyLossless(v), text);
});

test('keeps key order and adds new keys last', (t) => {
  const v = parseLossless('{"z":1,"a":{"y":2,"b":3}}') as Record<string, Record<string, number>>;
  v.a.c = 4;
  v.m = {} as Record<string, number>;
  t.is(stringifyLossless(v), '{"z":1,"a":{"y":2,"b":3,"c":4},"m":{}}');
});

test('invalid JSON still fails', (t) => {
  t.throws(() => parseLossless('{"a": 18446744073709551615,'));
  t.throws(() => parseLossless('{"a": }'));
});

test('indentation detection', (t) => {
  t.is(detectIndent('{\n\t"ociVersion": "1.0.2"\n}'), '\t');
  t.is(detectIndent('{\n    "a": 1\n}'), '    ');
  t.is(detectIndent('{"a":1}'), '');
  t.is(detectIndent('{}'), '');
});
