import { status as Status, type ServiceError } from '@grpc/grpc-js';
/** Used when a RESOURCE_EXHAUSTED carries no usable google.rpc.RetryInfo (as the Java SDK). */
export declare const DEFAULT_RETRY_AFTER_MS = 1000;
/**
 * Every failure the client reports. `message` says what was wrong and what to do; the
 * coordinator's own words are in `serverMessage`, the gRPC status in `code`/`codeName`, and the
 * original grpc-js error in `cause`.
 */
export declare class SluiceError extends Error {
    /** The gRPC status code (grpc-js `status` enum), e.g. 5 for NOT_FOUND. */
    readonly code: Status;
    /** The status code's name, e.g. "NOT_FOUND". */
    readonly codeName: string;
    /** The coordinator's status message, verbatim; empty when it sent none. */
    readonly serverMessage: string;
    /** What was attempted: "acquire", "release", "renew", "report", "describe". */
    readonly operation: string;
    /** The resource the call was about. */
    readonly resource: string;
    constructor(message: string, code: Status, serverMessage: string, operation: string, resource: string, cause?: unknown);
}
/** INVALID_ARGUMENT: a bad name, a bad load, a load that can never fit. Wrong in any state. */
export declare class InvalidRequestError extends SluiceError {
}
/** NOT_FOUND: the resource has no limit. */
export declare class ResourceNotFoundError extends SluiceError {
}
/** DEADLINE_EXCEEDED: not granted within the acquire's timeout. Nothing was granted. */
export declare class AcquireTimeoutError extends SluiceError {
}
/** RESOURCE_EXHAUSTED: the resource's waiting room is full. Retry after `retryAfterMs`. */
export declare class WaitingRoomFullError extends SluiceError {
    /** The coordinator's google.rpc.RetryInfo hint, or 1 s when it sent none. */
    readonly retryAfterMs: number;
    constructor(message: string, code: Status, serverMessage: string, operation: string, resource: string, cause: unknown, retryAfterMs: number);
}
/** UNAUTHENTICATED: no API key, or an unknown or revoked one. */
export declare class AuthenticationError extends SluiceError {
}
/** PERMISSION_DENIED: the key's role or resource patterns do not allow this call. */
export declare class PermissionDeniedError extends SluiceError {
}
/** UNAVAILABLE (and other transport failures): no coordinator could serve the call. */
export declare class SluiceUnavailableError extends SluiceError {
}
/** The caller's AbortSignal fired while the acquire waited. Nothing was granted (or it was given back). */
export declare class AcquireAbortedError extends SluiceError {
}
export declare function isServiceError(e: unknown): e is ServiceError;
/** Maps a grpc-js failure onto the typed errors, with the same wording as the Java SDK. */
export declare function mapError(failure: unknown, operation: string, resource: string): SluiceError;
