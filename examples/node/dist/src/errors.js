"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.AcquireAbortedError = exports.SluiceUnavailableError = exports.PermissionDeniedError = exports.AuthenticationError = exports.WaitingRoomFullError = exports.AcquireTimeoutError = exports.ResourceNotFoundError = exports.InvalidRequestError = exports.SluiceError = exports.DEFAULT_RETRY_AFTER_MS = void 0;
exports.isServiceError = isServiceError;
exports.mapError = mapError;
const grpc_js_1 = require("@grpc/grpc-js");
const proto_1 = require("./proto");
/** Used when a RESOURCE_EXHAUSTED carries no usable google.rpc.RetryInfo (as the Java SDK). */
exports.DEFAULT_RETRY_AFTER_MS = 1000;
/**
 * Every failure the client reports. `message` says what was wrong and what to do; the
 * coordinator's own words are in `serverMessage`, the gRPC status in `code`/`codeName`, and the
 * original grpc-js error in `cause`.
 */
class SluiceError extends Error {
    /** The gRPC status code (grpc-js `status` enum), e.g. 5 for NOT_FOUND. */
    code;
    /** The status code's name, e.g. "NOT_FOUND". */
    codeName;
    /** The coordinator's status message, verbatim; empty when it sent none. */
    serverMessage;
    /** What was attempted: "acquire", "release", "renew", "report", "describe". */
    operation;
    /** The resource the call was about. */
    resource;
    constructor(message, code, serverMessage, operation, resource, cause) {
        super(message, cause === undefined ? undefined : { cause });
        this.name = new.target.name;
        this.code = code;
        this.codeName = grpc_js_1.status[code] ?? String(code);
        this.serverMessage = serverMessage;
        this.operation = operation;
        this.resource = resource;
    }
}
exports.SluiceError = SluiceError;
/** INVALID_ARGUMENT: a bad name, a bad load, a load that can never fit. Wrong in any state. */
class InvalidRequestError extends SluiceError {
}
exports.InvalidRequestError = InvalidRequestError;
/** NOT_FOUND: the resource has no limit. */
class ResourceNotFoundError extends SluiceError {
}
exports.ResourceNotFoundError = ResourceNotFoundError;
/** DEADLINE_EXCEEDED: not granted within the acquire's timeout. Nothing was granted. */
class AcquireTimeoutError extends SluiceError {
}
exports.AcquireTimeoutError = AcquireTimeoutError;
/** RESOURCE_EXHAUSTED: the resource's waiting room is full. Retry after `retryAfterMs`. */
class WaitingRoomFullError extends SluiceError {
    /** The coordinator's google.rpc.RetryInfo hint, or 1 s when it sent none. */
    retryAfterMs;
    constructor(message, code, serverMessage, operation, resource, cause, retryAfterMs) {
        super(message, code, serverMessage, operation, resource, cause);
        this.retryAfterMs = retryAfterMs;
    }
}
exports.WaitingRoomFullError = WaitingRoomFullError;
/** UNAUTHENTICATED: no API key, or an unknown or revoked one. */
class AuthenticationError extends SluiceError {
}
exports.AuthenticationError = AuthenticationError;
/** PERMISSION_DENIED: the key's role or resource patterns do not allow this call. */
class PermissionDeniedError extends SluiceError {
}
exports.PermissionDeniedError = PermissionDeniedError;
/** UNAVAILABLE (and other transport failures): no coordinator could serve the call. */
class SluiceUnavailableError extends SluiceError {
}
exports.SluiceUnavailableError = SluiceUnavailableError;
/** The caller's AbortSignal fired while the acquire waited. Nothing was granted (or it was given back). */
class AcquireAbortedError extends SluiceError {
}
exports.AcquireAbortedError = AcquireAbortedError;
function isServiceError(e) {
    return e instanceof Error && typeof e.code === 'number'
        && e.metadata instanceof grpc_js_1.Metadata;
}
/** Maps a grpc-js failure onto the typed errors, with the same wording as the Java SDK. */
function mapError(failure, operation, resource) {
    if (failure instanceof SluiceError) {
        return failure;
    }
    if (!isServiceError(failure)) {
        const text = failure instanceof Error ? failure.message : String(failure);
        return new SluiceError(`${operation} on resource '${resource}' failed: ${text}`, grpc_js_1.status.UNKNOWN, '', operation, resource, failure);
    }
    const code = failure.code;
    const serverMessage = failure.details ?? '';
    const said = (serverMessage || grpc_js_1.status[code] || String(code)).replace(/\.$/, '');
    const what = `${operation} on resource '${resource}' failed: ${said}. `;
    const args = [code, serverMessage, operation, resource, failure];
    switch (code) {
        case grpc_js_1.status.INVALID_ARGUMENT:
            return new InvalidRequestError(what + 'The request is wrong in any state; fix the resource name or load, or the limit', ...args);
        case grpc_js_1.status.NOT_FOUND:
            return new ResourceNotFoundError(what + `Create a limit for '${resource}' with the admin CLI, or check the name`, ...args);
        case grpc_js_1.status.DEADLINE_EXCEEDED:
            return new AcquireTimeoutError(what + 'Nothing was granted; retry later, raise the timeout, or lower the load', ...args);
        case grpc_js_1.status.RESOURCE_EXHAUSTED: {
            const retryAfterMs = retryAfter(failure);
            return new WaitingRoomFullError(what + `The waiting room is full; retry after ${retryAfterMs} ms or lower the number of concurrent callers`, ...args, retryAfterMs);
        }
        case grpc_js_1.status.UNAUTHENTICATED:
            return new AuthenticationError(what + 'Configure a valid API key (apiKey option or SLUICE_API_KEY)', ...args);
        case grpc_js_1.status.PERMISSION_DENIED:
            return new PermissionDeniedError(what + 'Use an API key whose role and resources allow this call', ...args);
        case grpc_js_1.status.UNAVAILABLE:
        case grpc_js_1.status.CANCELLED:
        case grpc_js_1.status.UNKNOWN:
        case grpc_js_1.status.INTERNAL:
        case grpc_js_1.status.ABORTED:
        case grpc_js_1.status.DATA_LOSS:
            return new SluiceUnavailableError(what + 'The coordinator could not be reached or could not serve the call;'
                + ' retry, or check that it is running and reachable', ...args);
        default:
            return new SluiceError(what + `Unexpected status ${grpc_js_1.status[code] ?? code}; check that client and coordinator`
                + ' versions match', ...args);
    }
}
/** The RetryInfo hint of a RESOURCE_EXHAUSTED, from the `grpc-status-details-bin` trailer. */
function retryAfter(failure) {
    const [details] = failure.metadata.get('grpc-status-details-bin');
    if (!(details instanceof Buffer)) {
        return exports.DEFAULT_RETRY_AFTER_MS;
    }
    try {
        const ms = (0, proto_1.retryDelayMs)(details);
        return ms === undefined || ms < 0 ? exports.DEFAULT_RETRY_AFTER_MS : ms;
    }
    catch {
        return exports.DEFAULT_RETRY_AFTER_MS;
    }
}
//# sourceMappingURL=errors.js.map