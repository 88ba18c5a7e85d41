import test from 'ava';
import { contains, coveringCidr, formatCidr, formatIp, longestPrefixMatch, overlaps, parseCidr, parseIp } from '../common/cidr.js';

test('parses and formats IPv4 addresses', (t) => {
  t.is(parseIp('10.200.1.2'), 0x0ac80102);
  t.is(formatIp(0xc0a84d01), '192.168.77.1');
  t.is(parseIp('255.255.255.255'), 0xffffffff);
  t.throws(() => parseIp('10.200.1'), { message: /not an IPv4 address/ });
  t.throws(() => parseIp('10.200.1.256'), { message: /0-255/ });
  t.throws(() => parseIp('10.a.1.2'));
});

test('prefixes: host bits, containment, overlap', (t) => {
  t.deepEqual(parseCidr('10.200.0.0/16'), { network: 0x0ac80000, prefix: 16 });
  t.throws(() => parseCidr('10.200.1.1/16'), { message: /did you mean 10\.200\.0\.0\/16/ });
  t.throws(() => parseCidr('10.0.0.0/33'));
  t.true(contains(parseCidr('10.200.1.0/24'), parseIp('10.200.1.77')));
  t.false(contains(parseCidr('10.200.1.0/24'), parseIp('10.200.2.1')));
  t.true(contains(parseCidr('0.0.0.0/0'), parseIp('8.8.8.8')));
  t.true(overlaps(parseCidr('10.200.0.0/16'), parseCidr('10.200.5.0/24')));
  t.false(overlaps(parseCidr('10.200.1.0/24'), parseCidr('10.200.2.0/24')));
});

test('longest prefix match picks the most specific subnet', (t) => {
  const entries = [
    { name: 'wide', cidr: parseCidr('10.200.0.0/16') },
    { name: 'h2', cidr: parseCidr('10.200.2.0/24') },
    { name: 'h2-part', cidr: parseCidr('10.200.2.128/25') },
  ];
  t.is(longestPrefixMatch(entries, parseIp('10.200.2.200'))?.name, 'h2-part');
  t.is(longestPrefixMatch(entries, parseIp('10.200.2.5'))?.name, 'h2');
  t.is(longestPrefixMatch(entries, parseIp('10.200.9.5'))?.name, 'wide');
  t.is(longestPrefixMatch(entries, parseIp('10.201.0.1')), undefined);
});

test('covering prefix of host subnets', (t) => {
  t.is(formatCidr(coveringCidr([parseCidr('10.200.1.0/24'), parseCidr('10.200.2.0/24')])), '10.200.0.0/22');
  t.is(formatCidr(coveringCidr([parseCidr('10.200.1.0/24')])), '10.200.1.0/24');
  t.is(formatCidr(coveringCidr([parseCidr('10.0.0.0/24'), parseCidr('192.168.0.0/24')])), '0.0.0.0/0');
});
