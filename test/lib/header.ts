// The 48-byte host connection header (native/include/slimfast_wire.h, docs/protocol.md), built by
// tests that speak to a broker's reserved port themselves. The constants come from the C header
// (common/wire.ts is generated from it).
import { parseIp } from '../../common/cidr.js';
import { SF_HDR_CONNECT, SF_HDR_LEN, SF_HDR_MAGIC, SF_HDR_POOLED, SF_HDR_SYNC, SF_HDR_VERSION, SF_KEY_HOST } from '../../common/wire.js';

export const HDR_MAGIC = SF_HDR_MAGIC;
export const HDR_VERSION = SF_HDR_VERSION;
export const HDR_LEN = SF_HDR_LEN;
export const HDR_CONNECT = SF_HDR_CONNECT;
export const HDR_SYNC = SF_HDR_SYNC;
export const HDR_POOLED = SF_HDR_POOLED;
/** key_id of a tag made with the sending broker's own key (see NativeEngine.hostKey). */
export const KEY_HOST = SF_KEY_HOST;

export interface HeaderFields {
  type: number;
  dstIp?: string;
  dstPort?: number;
  srcIp?: string;
  srcPort?: number;
  keyId?: number;
  nonce?: bigint;
  version?: number;
  magic?: number;
  hdrLen?: number;
  /** bytes 32..47 (16 bytes) */
  tag?: Buffer;
}

export function buildHeader(f: HeaderFields): Buffer {
  const b = Buffer.alloc(HDR_LEN);
  b.writeUInt32BE(f.magic ?? HDR_MAGIC, 0);
  b.writeUInt8(f.version ?? HDR_VERSION, 4);
  b.writeUInt8(f.type, 5);
  b.writeUInt16BE(f.hdrLen ?? HDR_LEN, 6);
  b.writeUInt32BE(f.dstIp ? parseIp(f.dstIp) : 0, 8);
  b.writeUInt16BE(f.dstPort ?? 0, 12);
  b.writeUInt16BE(f.srcPort ?? 0, 14);
  b.writeUInt32BE(f.srcIp ? parseIp(f.srcIp) : 0, 16);
  b.writeUInt32BE(f.keyId ?? 0, 20);
  b.writeBigUInt64BE(f.nonce ?? BigInt(Date.now()) * 1_000_000n, 24);
  if (f.tag) {
    if (f.tag.length !== 16) throw new Error(`header tag must be 16 bytes, got ${f.tag.length}`);
    f.tag.copy(b, 32);
  }
  return b;
}
