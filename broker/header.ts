// The 48-byte host connection header (native/include/slimfast_wire.h, docs/protocol.md).
import { parseIp } from '../common/cidr.js';

export const HDR_MAGIC = 0x534c4631;
export const HDR_VERSION = 1;
export const HDR_LEN = 48;
export const HDR_CONNECT = 1;
export const HDR_SYNC = 2;
export const HDR_POOLED = 3;
/** key_id of a tag made with the sending broker's own key (see NativeEngine.hostKey). */
export const KEY_HOST = 1;

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
