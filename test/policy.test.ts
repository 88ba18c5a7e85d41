// Policy documents (broker/policy.ts): parsing, every refusal's message, first-match semantics.
import test from 'ava';
import { loadAddon } from '../broker/native-engine.js';
import { allows, describePolicy, parsePolicy } from '../broker/policy.js';

const parse = (doc: unknown) => parsePolicy(JSON.stringify(doc), 'policy.json');

test('a document becomes engine rules; port lists expand, prefixes default to anywhere', (t) => {
  const p = parse({
    default: 'deny',
    rules: [
      { action: 'deny', from: '10.200.1.0/24', to: '10.200.2.5/32', ports: '6379' },
      { action: 'allow', to: '10.200.2.5', ports: '80,443,8000-8100' },
      { action: 'allow', from: '*', to: '*', ports: '*' },
      { action: 'deny', ports: 22 },
    ],
  });
  t.is(p.ruleCount, 4);
  t.is(describePolicy(p), '4 rules, default deny');
  t.deepEqual(p.engine, {
    default: 'deny',
    rules: [
      { action: 'deny', from: '10.200.1.0/24', to: '10.200.2.5/32', portLo: 6379, portHi: 6379 },
      { action: 'allow', from: '0.0.0.0/0', to: '10.200.2.5/32', portLo: 80, portHi: 80 },
      { action: 'allow', from: '0.0.0.0/0', to: '10.200.2.5/32', portLo: 443, portHi: 443 },
      { action: 'allow', from: '0.0.0.0/0', to: '10.200.2.5/32', portLo: 8000, portHi: 8100 },
      { action: 'allow', from: '0.0.0.0/0', to: '0.0.0.0/0', portLo: 0, portHi: 65535 },
      { action: 'deny', from: '0.0.0.0/0', to: '0.0.0.0/0', portLo: 22, portHi: 22 },
    ],
  });
});

test('an empty document allows everything; "default" alone is a policy without rules', (t) => {
  t.deepEqual(parse({}).engine, { default: 'allow', rules: [] });
  t.is(describePolicy(parse({ default: 'deny' })), '0 rules, default deny');
  t.is(describePolicy(parse({ rules: [{ action: 'deny' }] })), '1 rule, default allow');
});

test('every refusal names the source, the rule and the field', (t) => {
  const cases: [string, RegExp][] = [
    ['{"default": "allow",', /^policy\.json: not valid JSON \(.*\); a policy looks like \{"default"/],
    ['[]', /^policy\.json: expected an object like/],
    ['{"defualt": "deny"}', /^policy\.json: unknown field "defualt" \(a policy has "default" and "rules"\)/],
    ['{"default": "block"}', /^policy\.json: "default" must be "allow" or "deny", got "block"/],
    ['{"rules": {}}', /^policy\.json: "rules" must be an array/],
    ['{"rules": ["deny"]}', /^policy\.json: rules\[0\] must be an object like/],
    ['{"rules": [{"action": "allow"}, {"action": "drop"}]}', /^policy\.json: rules\[1\]\.action must be "allow" or "deny", got "drop"/],
    [
      '{"rules": [{"action": "deny", "port": "80"}]}',
      /^policy\.json: rules\[0\]: unknown field "port" \(a rule has "action", "from", "to" and "ports"\)/,
    ],
    ['{"rules": [{"action": "deny", "from": "10.200.1/24"}]}', /^policy\.json: rules\[0\]\.from: "10\.200\.1" is not an IPv4 address/],
    [
      '{"rules": [{"action": "deny", "to": "10.200.1.5/24"}]}',
      /^policy\.json: rules\[0\]\.to: "10\.200\.1\.5\/24" has host bits set; did you mean 10\.200\.1\.0\/24\?/,
    ],
    ['{"rules": [{"action": "deny", "to": 5}]}', /^policy\.json: rules\[0\]\.to must be a string like "10\.200\.1\.0\/24", got 5/],
    [
      '{"rules": [{"action": "deny", "ports": "80,"}]}',
      /^policy\.json: rules\[0\]\.ports: "80," is not a port list \(use "\*", "6379", "80,443" or "8000-8100"; ports 0-65535\)/,
    ],
    ['{"rules": [{"action": "deny", "ports": "70000"}]}', /rules\[0\]\.ports: "70000" is not a port list/],
    ['{"rules": [{"action": "deny", "ports": "1-2-3"}]}', /rules\[0\]\.ports: "1-2-3" is not a port list/],
    ['{"rules": [{"action": "deny", "ports": "http"}]}', /rules\[0\]\.ports: "http" is not a port list/],
    ['{"rules": [{"action": "deny", "ports": "9000-8000"}]}', /rules\[0\]\.ports: the range "9000-8000" runs backwards; write 8000-9000/],
    ['{"rules": [{"action": "deny", "ports": [80]}]}', /rules\[0\]\.ports must be a string like "80,443,8000-8100" or "\*", got \[80\]/],
  ];
  for (const [text, re] of cases) t.throws(() => parsePolicy(text, 'policy.json'), { message: re }, text);
});

test('the first matching rule decides, else the default', (t) => {
  const p = parse({
    default: 'deny',
    rules: [
      { action: 'deny', from: '10.200.1.66', to: '10.200.2.0/24' },
      { action: 'allow', from: '10.200.1.0/24', to: '10.200.2.5', ports: '6379,8000-8100' },
      { action: 'deny', to: '10.200.2.5' },
      { action: 'allow', to: '10.200.0.0/16', ports: '80' },
    ],
  }).engine;
  t.false(allows(p, '10.200.1.66', '10.200.2.5', 6379), 'the deny before the allow');
  t.true(allows(p, '10.200.1.2', '10.200.2.5', 6379));
  t.true(allows(p, '10.200.1.2', '10.200.2.5', 8100));
  t.false(allows(p, '10.200.1.2', '10.200.2.5', 8101), 'past the range: the deny for the address');
  t.false(allows(p, '10.200.1.2', '10.200.2.5', 80), 'the deny comes before the allow for port 80');
  t.true(allows(p, '10.200.3.2', '10.200.2.6', 80));
  t.false(allows(p, '10.200.3.2', '10.200.2.6', 81), 'no rule: the default');
  t.true(allows(parse({}).engine, '10.200.3.2', '10.200.2.6', 81));
});

test('the engine takes what parsePolicy makes, and refuses other shapes', (t) => {
  const { Engine } = loadAddon();
  const e = new Engine();
  t.notThrows(() => e.setPolicy(parse({ default: 'deny', rules: [{ action: 'allow', to: '10.200.2.5', ports: '80,8000-8100' }] }).engine));
  t.notThrows(() => e.setPolicy(null));
  t.throws(() => e.setPolicy({ default: 'deny', rules: [{ action: 'allow', from: '0.0.0.0/0', to: 'x', portLo: 1, portHi: 2 }] }), {
    instanceOf: TypeError,
    message: /rules\[0\]: "to" must be an IPv4 prefix/,
  });
});
