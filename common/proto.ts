// Loads proto/slimfast.proto for both the server and the clients.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { repoRoot } from './paths.js';

export const PROTO_FILE = path.join(repoRoot(), 'proto', 'slimfast.proto');

let cached: grpc.GrpcObject | undefined;

export function slimfastPackage(): grpc.GrpcObject {
  if (!cached) {
    const def = protoLoader.loadSync(PROTO_FILE, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
    cached = grpc.loadPackageDefinition(def);
  }
  return cached;
}

export function serviceDefinition(): grpc.ServiceDefinition {
  const pkg = slimfastPackage() as unknown as { slimfast: { v1: { SlimFast: grpc.ServiceClientConstructor } } };
  return pkg.slimfast.v1.SlimFast.service;
}

export function clientConstructor(): grpc.ServiceClientConstructor {
  const pkg = slimfastPackage() as unknown as { slimfast: { v1: { SlimFast: grpc.ServiceClientConstructor } } };
  return pkg.slimfast.v1.SlimFast;
}
