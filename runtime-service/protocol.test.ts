import test from 'ava';
import { DoorRequestError, decodeReply, encodeReply, parseRequest } from './protocol.js';
import { mismatch, thisInstall } from './handlers.js';

const base = {
  v: 1,
  prog: 'hook',
  root: '/opt/slimfast',
  config: '/etc/slimfast/config.json',
  netns: '4:4026531840',
  cwd: '/run/x',
  argv: ['create'],
  env: ['A=1', 'B=x=y', 'junk'],
};

test('a request: env entries split at the first "=", entries without one dropped, stdin optional', (t) => {
  const r = parseRequest(JSON.stringify(base));
  t.is(r.prog, 'hook');
  t.deepEqual(r.env, { A: '1', B: 'x=y' });
  t.is(r.stdin, '');
  t.false(r.stdinTimedOut);
  t.true(parseRequest(JSON.stringify({ ...base, stdin: '{"id":"x"}', stdinTimedOut: true })).stdinTimedOut);
});

test('bad requests are refused with what is wrong', (t) => {
  const bad: [unknown, RegExp][] = [
    ['{', /not JSON/],
    ['[]', /not a JSON object/],
    [JSON.stringify({ ...base, v: 2 }), /unknown version 2/],
    [JSON.stringify({ ...base, prog: 'sh' }), /unknown program "sh"/],
    [JSON.stringify({ ...base, cwd: 'relative' }), /"cwd" must be an absolute path/],
    [JSON.stringify({ ...base, argv: [1] }), /"argv" must be an array of strings/],
    [JSON.stringify({ ...base, env: 'A=1' }), /"env" must be an array of strings/],
    [JSON.stringify({ ...base, root: undefined }), /"root" must be a string/],
    [JSON.stringify({ ...base, stdinTimedOut: 'yes' }), /"stdinTimedOut" must be true or false/],
  ];
  for (const [text, re] of bad) t.throws(() => parseRequest(text as string), { instanceOf: DoorRequestError, message: re });
});

test('replies: lengths in bytes (multi-byte text), fallback reasons on one line', (t) => {
  const r = { code: 3, stdout: 'µs\n', stderr: 'naïve: ✗\n' };
  const buf = encodeReply(r);
  t.true(buf.subarray(0, buf.indexOf(10)).toString().startsWith('SFR1 3 4 '));
  t.deepEqual(decodeReply(buf), r);
  t.is(encodeReply({ fallback: 'a\nb  c' }).toString(), 'SFR1 fallback a b c\n');
  t.deepEqual(decodeReply(encodeReply({ fallback: 'other install' })), { fallback: 'other install' });
  t.throws(() => decodeReply(Buffer.from('SFR1 0 5 0\nabc')), { message: /lengths/ });
});

test('requests from another install or another config file are left to the caller', (t) => {
  const self = thisInstall();
  const req = parseRequest(JSON.stringify({ ...base, root: self.root, config: self.configFile }));
  t.is(mismatch(req, self), undefined);
  t.regex(mismatch({ ...req, root: '/opt/other' }, self) ?? '', /installed at \/opt\/other/);
  t.regex(mismatch({ ...req, config: '/tmp/other.json' }, self) ?? '', /config file \/tmp\/other\.json/);
});
