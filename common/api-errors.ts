// Control-API errors with a machine-readable reason. The gRPC status code tells the kind of failure,
// the reason (trailer "slimfast-reason") which one; callers (the OCI hook, the CLI) switch on the
// reason, never on message text. The in-process API (the runtime service's hooks) throws the same
// ApiError, so both paths look alike to the hook. No gRPC import here: the hook loads this without
// the gRPC client.

/** gRPC status codes (fixed by the gRPC specification; test/api-errors.test.ts checks them against grpc-js). */
export const GRPC_STATUS = { UNKNOWN: 2, INVALID_ARGUMENT: 3, NOT_FOUND: 5, ALREADY_EXISTS: 6, FAILED_PRECONDITION: 9 } as const;

/** Why a registration (or another control call) was refused, and its gRPC status code. */
export const REASONS = {
  /** The container id is empty or not 1-128 characters of [A-Za-z0-9_.-]. */
  ID_INVALID: GRPC_STATUS.INVALID_ARGUMENT,
  /** No network namespace path was given. */
  NETNS_REQUIRED: GRPC_STATUS.INVALID_ARGUMENT,
  /** The network namespace path does not exist. */
  NETNS_MISSING: GRPC_STATUS.NOT_FOUND,
  /** The namespace could not be entered to read its address. */
  NETNS_UNREADABLE: GRPC_STATUS.FAILED_PRECONDITION,
  /** The namespace has no global IPv4 address (e.g. --network none): nothing to put on the overlay. */
  NETNS_NO_IPV4: GRPC_STATUS.FAILED_PRECONDITION,
  /** The id is registered already (and its init still runs). */
  ALREADY_REGISTERED: GRPC_STATUS.ALREADY_EXISTS,
  /** Another registered container has this IP. */
  IP_IN_USE: GRPC_STATUS.ALREADY_EXISTS,
  /** The IP given is not an IPv4 address. */
  IP_INVALID: GRPC_STATUS.INVALID_ARGUMENT,
  /** The process id given is not a whole number >= 0. */
  PID_INVALID: GRPC_STATUS.INVALID_ARGUMENT,
  /** The IP is outside this host's subnet. */
  IP_OUTSIDE_SUBNET: GRPC_STATUS.FAILED_PRECONDITION,
  /** The container's init process has exited already. */
  INIT_EXITED: GRPC_STATUS.FAILED_PRECONDITION,
  /** The state dir's path makes the container's socket path too long for a Unix socket. */
  SOCKET_PATH_TOO_LONG: GRPC_STATUS.FAILED_PRECONDITION,
} as const;

export type ApiReason = keyof typeof REASONS;

/** The trailer the reason travels in. */
export const REASON_KEY = 'slimfast-reason';

export class ApiError extends Error {
  constructor(
    readonly reason: ApiReason,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get grpcCode(): number {
    return REASONS[this.reason];
  }
}

export function isApiReason(s: unknown): s is ApiReason {
  return typeof s === 'string' && Object.hasOwn(REASONS, s);
}

/** Whether err is an ApiError with that reason. */
export function hasReason(err: unknown, reason: ApiReason): boolean {
  return err instanceof ApiError && err.reason === reason;
}
