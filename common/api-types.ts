// The control API's messages as the TypeScript side sees them: aliases of the types generated from
// proto/slimfast.proto (common/proto-types/, npm run gen:proto), so the proto is their one source.
// Replies are the generator's __Output types (every field present: proto-loader fills in defaults);
// requests its input types (fields optional, as on the wire).
export type { Container__Output as ContainerMsg } from './proto-types/slimfast/v1/Container.js';
export type { HealthReply__Output as HealthMsg } from './proto-types/slimfast/v1/HealthReply.js';
export type { Listener__Output as ListenerMsg } from './proto-types/slimfast/v1/Listener.js';
export type { Peer__Output as PeerMsg } from './proto-types/slimfast/v1/Peer.js';
export type { RegisterContainerRequest as RegisterRequest } from './proto-types/slimfast/v1/RegisterContainerRequest.js';
export type { SlimFastClient, SlimFastHandlers } from './proto-types/slimfast/v1/SlimFast.js';
