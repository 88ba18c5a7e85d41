import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { buildHeader, HDR_CONNECT, HDR_LEN, HDR_MAGIC } from './lib/header.js';
import { repoRoot } from '../common/paths.js';

test('header layout matches the C definition', (t) => {
  const b = buildHeader({ type: HDR_CONNECT, dstIp: '10.200.2.3', dstPort: 80, srcIp: '10.200.1.2', srcPort: 40000, nonce: 0x0102030405060708n });
  t.is(b.length, HDR_LEN);
  t.is(b.readUInt32BE(0), HDR_MAGIC);
  t.is(b.toString('latin1', 0, 4), 'SLF1');
  t.is(b[4], 1);
  t.is(b[5], HDR_CONNECT);
  t.is(b.readUInt16BE(6), 48);
  t.deepEqual([...b.subarray(8, 12)], [10, 200, 2, 3]);
  t.is(b.readUInt16BE(12), 80);
  t.is(b.readUInt16BE(14), 40000);
  t.deepEqual([...b.subarray(16, 20)], [10, 200, 1, 2]);
  t.is(b.readBigUInt64BE(24), 0x0102030405060708n);
  t.true(b.subarray(32).every((x) => x === 0));
  // the C header documents the same offsets
  const h = fs.readFileSync(path.join(repoRoot(), 'native', 'include', 'slimfast_wire.h'), 'utf8');
  t.regex(h, /#define SF_HDR_LEN 48/);
  t.regex(h, /#define SF_HDR_MAGIC 0x534c4631u/);
  for (const [off, field] of [
    [8, 'dst_vip'],
    [12, 'dst_port'],
    [14, 'src_port'],
    [16, 'src_vip'],
    [24, 'nonce'],
    [32, 'tag'],
  ] as const) {
    t.regex(h, new RegExp(`\\s${off}\\s+\\d+ ${field}`), `${field} at ${off}`);
  }
});
