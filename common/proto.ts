// Loads proto/slimfast.proto for both the server and the clients, typed by the generated
// common/proto-types/ (the options here and in proto/gen-types.mjs must agree).
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { repoRoot } from './paths.js';
import type { ProtoGrpcType } from './proto-types/slimfast.js';
import type { SlimFastDefinition } from './proto-types/slimfast/v1/SlimFast.js';

export const PROTO_FILE = path.join(repoRoot(), 'proto', 'slimfast.proto');

let cached: ProtoGrpcType | undefined;

export function slimfastPackage(): ProtoGrpcType {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_FILE, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
    cached = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
  }
  return cached;
}

export function serviceDefinition(): SlimFastDefinition {
  return slimfastPackage().slimfast.v1.SlimFast.service;
}

export function clientConstructor(): ProtoGrpcType['slimfast']['v1']['SlimFast'] {
  return slimfastPackage().slimfast.v1.SlimFast;
}
