import test from 'ava';
import { parseCidr } from '../common/cidr.js';
import { chooseSubnet, hostsOf, parseClusterConfig, parseSubnetRecord, type SubnetLease, subnetKeyName } from '../broker/subnet-leases.js';

const cfg = parseClusterConfig('{"network":"10.200.0.0/16","subnetLen":24}', 'config');
const lease = (subnet: string, hostIp: string, rev = '5'): SubnetLease => ({ subnet: parseCidr(subnet), hostIp, port: 4800, modRevision: rev });
const chosen = (c: ReturnType<typeof chooseSubnet>) => ('error' in c ? c.error : subnetKeyName(c.subnet));

test('a new host gets the first free block', (t) => {
  t.is(chosen(chooseSubnet(cfg, [], '192.168.1.1')), '10.200.0.0-24');
  t.is(chosen(chooseSubnet(cfg, [lease('10.200.0.0/24', '9.1.1.1'), lease('10.200.1.0/24', '9.9.9.9')], '192.168.1.1')), '10.200.2.0-24');
  // A wider record of another host blocks every block inside it.
  t.is(chosen(chooseSubnet(cfg, [lease('10.200.0.0/23', '9.1.1.1')], '192.168.1.1')), '10.200.2.0-24');
});

test('a host takes back the subnet it holds, or held last time', (t) => {
  const c = chooseSubnet(cfg, [lease('10.200.0.0/24', '9.1.1.1'), lease('10.200.7.0/24', '192.168.1.1', '42')], '192.168.1.1');
  t.is(chosen(c), '10.200.7.0-24');
  t.is('takeover' in c && c.takeover?.modRevision, '42', 'its own live record is taken over by revision');
  t.is(chosen(chooseSubnet(cfg, [], '192.168.1.1', { remembered: parseCidr('10.200.9.0/24') })), '10.200.9.0-24');
  t.is(
    chosen(chooseSubnet(cfg, [lease('10.200.9.0/24', '9.1.1.1')], '192.168.1.1', { remembered: parseCidr('10.200.9.0/24') })),
    '10.200.0.0-24',
    'a remembered subnet someone else holds now is not taken',
  );
});

test('a requested subnet must be free and inside the network', (t) => {
  t.is(chosen(chooseSubnet(cfg, [], '192.168.1.1', { requested: parseCidr('10.200.5.0/24') })), '10.200.5.0-24');
  t.regex(
    chosen(chooseSubnet(cfg, [lease('10.200.5.0/24', '9.1.1.1')], '192.168.1.1', { requested: parseCidr('10.200.5.0/25') })),
    /conflicts with 10\.200\.5\.0\/24, held by host 9\.1\.1\.1/,
  );
  t.regex(chosen(chooseSubnet(cfg, [], '192.168.1.1', { requested: parseCidr('10.9.0.0/24') })), /not inside the cluster network 10\.200\.0\.0\/16/);
});

test('a full network says so', (t) => {
  const small = parseClusterConfig('{"network":"10.1.0.0/23","subnetLen":24}', 'config');
  t.regex(chosen(chooseSubnet(small, [lease('10.1.0.0/24', '9.1.1.1'), lease('10.1.1.0/24', '9.1.1.2')], '192.168.1.1')), /no free \/24 left/);
});

test('bad config and records are refused with the reason', (t) => {
  t.throws(() => parseClusterConfig('nope', 'k'), { message: /k: not valid JSON/ });
  t.throws(() => parseClusterConfig('{"network":"10.200.0.0/16","subnetLen":8}', 'k'), { message: /"subnetLen" must be an integer from 16/ });
  t.is(parseClusterConfig('{"network":"10.0.0.0/8"}', 'k').subnetLen, 24);
  t.throws(() => parseSubnetRecord('10.200.1.0-24', '{"hostIp":"x"}', '1'), { message: /not an IPv4 address/ });
  t.throws(() => parseSubnetRecord('10.200.1.0-24', '{"hostIp":"1.2.3.4","port":0}', '1'), { message: /bad "port"/ });
});

test('a host with two records is listed once, with its newest', (t) => {
  const hosts = hostsOf([lease('10.200.1.0/24', '1.1.1.1', '9'), lease('10.200.4.0/24', '1.1.1.1', '12'), lease('10.200.2.0/24', '1.1.1.2', '3')]);
  t.deepEqual(
    hosts.map((h) => `${h.ip} ${h.subnet}`),
    ['1.1.1.1 10.200.4.0/24', '1.1.1.2 10.200.2.0/24'],
  );
});
