import test from 'ava';
import { parsePeers } from '../broker/peers.js';

const good = JSON.stringify({
  hosts: [
    { ip: '192.168.77.1', subnet: '10.200.1.0/24' },
    { ip: '192.168.77.2', subnet: '10.200.2.0/24', port: 4900 },
  ],
});

test('parses a peers file, defaulting port and overlay', (t) => {
  const m = parsePeers(good, 'peers.json', 4800);
  t.deepEqual(
    m.hosts.map((h) => [h.ip, h.subnet, h.port]),
    [
      ['192.168.77.1', '10.200.1.0/24', 4800],
      ['192.168.77.2', '10.200.2.0/24', 4900],
    ],
  );
  t.is(m.overlay, '10.200.0.0/22');
});

test('an explicit overlay must contain every subnet', (t) => {
  const doc = JSON.parse(good);
  doc.overlay = '10.200.0.0/16';
  t.is(parsePeers(JSON.stringify(doc), 'p', 4800).overlay, '10.200.0.0/16');
  doc.overlay = '10.201.0.0/16';
  t.throws(() => parsePeers(JSON.stringify(doc), 'p', 4800), { message: /not inside the overlay/ });
});

test('bad peers files get clear errors', (t) => {
  t.throws(() => parsePeers('{', 'p.json', 4800), { message: /p\.json: not valid JSON/ });
  t.throws(() => parsePeers('{"hosts":[]}', 'p.json', 4800), { message: /non-empty "hosts"/ });
  t.throws(() => parsePeers('{"hosts":[{"ip":"1.2.3.4"}]}', 'p.json', 4800), { message: /hosts\[0\] needs string fields/ });
  t.throws(() => parsePeers('{"hosts":[{"ip":"1.2.3","subnet":"10.0.0.0/24"}]}', 'p.json', 4800), { message: /hosts\[0\]: "1\.2\.3"/ });
  t.throws(() => parsePeers('{"hosts":[{"ip":"1.2.3.4","subnet":"10.0.0.0/16"},{"ip":"1.2.3.5","subnet":"10.0.1.0/24"}]}', 'p.json', 4800), {
    message: /overlap/,
  });
  t.throws(() => parsePeers('{"hosts":[{"ip":"1.2.3.4","subnet":"10.0.0.0/24"},{"ip":"1.2.3.4","subnet":"10.0.1.0/24"}]}', 'p.json', 4800), {
    message: /listed twice/,
  });
});
