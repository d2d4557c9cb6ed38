import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { type EstimateResponse, estimateDetail, retryDelayMs, toMs } from './proto';

/** Used when a RESOURCE_EXHAUSTED carries no usable google.rpc.RetryInfo (as the Java SDK). */
export const DEFAULT_RETRY_AFTER_MS = 1000;

/**
 * Every failure the client reports. `message` says what was wrong and what to do; the
 * coordinator's own words are in `serverMessage`, the gRPC status in `code`/`codeName`, and the
 * original grpc-js error in `cause`.
 */
export class SluiceError extends Error {
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

  constructor(message: string, code: Status, serverMessage: string, operation: string, resource: string,
      cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code;
    this.codeName = Status[code] ?? String(code);
    this.serverMessage = serverMessage;
    this.operation = operation;
    this.resource = resource;
  }
}

/** INVALID_ARGUMENT: a bad name, a bad load, a load that can never fit. Wrong in any state. */
export class InvalidRequestError extends SluiceError {}

/** NOT_FOUND: the resource has no limit. */
export class ResourceNotFoundError extends SluiceError {}

/**
 * When an acquire made now would be granted, as the coordinator estimates it (SluiceClient.estimate): `waitMs`
 * from now, or null with `paused` true while the resource is paused until resumed (only a resume can help).
 */
export interface WaitEstimate {
  waitMs: number | null;
  paused: boolean;
}

/** @internal */
export function waitEstimate(e: EstimateResponse): WaitEstimate {
  return e.paused ? { waitMs: null, paused: true } : { waitMs: toMs(e.wait), paused: false };
}

/**
 * DEADLINE_EXCEEDED: not granted within the acquire's timeout. Nothing was granted. With `failIfLate`, refused at
 * once because the estimated wait was past the timeout: `estimate` holds it (undefined otherwise).
 */
export class AcquireTimeoutError extends SluiceError {
  readonly estimate: WaitEstimate | undefined;

  constructor(message: string, code: Status, serverMessage: string, operation: string, resource: string,
      cause?: unknown, estimate?: WaitEstimate) {
    super(message, code, serverMessage, operation, resource, cause);
    this.estimate = estimate;
  }
}

/** RESOURCE_EXHAUSTED: the resource's waiting room is full. Retry after `retryAfterMs`. */
export class WaitingRoomFullError extends SluiceError {
  /** The coordinator's google.rpc.RetryInfo hint, or 1 s when it sent none. */
  readonly retryAfterMs: number;

  constructor(message: string, code: Status, serverMessage: string, operation: string, resource: string,
      cause: unknown, retryAfterMs: number) {
    super(message, code, serverMessage, operation, resource, cause);
    this.retryAfterMs = retryAfterMs;
  }
}

/** UNAUTHENTICATED: no API key, or an unknown or revoked one. */
export class AuthenticationError extends SluiceError {}

/** PERMISSION_DENIED: the key's role, resource patterns or tenant do not allow this call. */
export class PermissionDeniedError extends SluiceError {}

/** UNAVAILABLE (and other transport failures): no coordinator could serve the call. */
export class SluiceUnavailableError extends SluiceError {}

/** The caller's AbortSignal fired while the acquire waited. Nothing was granted (or it was given back). */
export class AcquireAbortedError extends SluiceError {}

export function isServiceError(e: unknown): e is ServiceError {
  return e instanceof Error && typeof (e as Partial<ServiceError>).code === 'number'
      && (e as Partial<ServiceError>).metadata instanceof Metadata;
}

/**
 * A duration for people, as the Java SDK's HumanDurations writes it: `218 ms`, `1.5 s`, `42 s`,
 * `3m 20s`.
 */
export function humanMs(ms: number): string {
  if (!(ms > 0)) return '0 s';
  if (ms < 999.5) return `${Math.max(1, Math.round(ms))} ms`;
  if (ms < 9950) return `${Number((ms / 1000).toFixed(1))} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 === 0 ? `${s / 60}m` : `${Math.floor(s / 60)}m ${s % 60}s`;
  const m = Math.round(s / 60);
  return m % 60 === 0 ? `${m / 60}h` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

/**
 * Maps a grpc-js failure onto the typed errors, with the same wording as the Java SDK. Advice is
 * given once: the coordinator's message already says what to do (`...: create it with ...`,
 * `...; wait longer, ...`), so the client adds its own only where the coordinator said nothing,
 * or where the failure is the transport's (no connection, a dropped one), whose words give none.
 */
export function mapError(failure: unknown, operation: string, resource: string): SluiceError {
  if (failure instanceof SluiceError) {
    return failure;
  }
  if (!isServiceError(failure)) {
    const text = failure instanceof Error ? failure.message : String(failure);
    return new SluiceError(`${operation} on resource '${resource}' failed: ${text}`, Status.UNKNOWN, '',
        operation, resource, failure);
  }
  const code = failure.code;
  const serverMessage = failure.details ?? '';
  const said = (serverMessage || Status[code] || String(code)).replace(/\.$/, '');
  const what = `${operation} on resource '${resource}' failed: ${said}`;
  // The coordinator's own refusals: its message carries the advice; ours only when it sent none.
  const advise = (advice: string) => (serverMessage ? what : `${what}. ${advice}`);
  const args = [code, serverMessage, operation, resource, failure] as const;
  switch (code) {
    case Status.INVALID_ARGUMENT:
      return new InvalidRequestError(
          advise('The request is wrong in any state; fix the resource name or load, or the limit'), ...args);
    case Status.NOT_FOUND:
      return new ResourceNotFoundError(
          advise(`Create a limit for '${resource}' with the admin CLI, or check the name`), ...args);
    case Status.DEADLINE_EXCEEDED:
      return new AcquireTimeoutError(`${advise('Retry later, raise the timeout, or lower the load')}. Nothing was`
          + ' granted', ...args, estimate(failure));
    case Status.RESOURCE_EXHAUSTED: {
      const retryAfterMs = retryAfter(failure);
      return new WaitingRoomFullError(`${advise('The waiting room is full; lower the number of concurrent callers')}.`
          + ` The hinted delay is ${humanMs(retryAfterMs)}`, ...args, retryAfterMs);
    }
    case Status.UNAUTHENTICATED:
      return new AuthenticationError(advise('Configure a valid API key (apiKey option or SLUICE_API_KEY)'), ...args);
    case Status.PERMISSION_DENIED:
      return new PermissionDeniedError(advise('Use an API key whose role, resources and tenant allow this call'), ...args);
    case Status.UNAVAILABLE:
    case Status.CANCELLED:
    case Status.UNKNOWN:
    case Status.INTERNAL:
    case Status.ABORTED:
    case Status.DATA_LOSS:
      // Mostly the transport's words (no connection, a dropped one), which advise nothing; a
      // coordinator going away says itself to retry elsewhere.
      return new SluiceUnavailableError(/\bretry\b/i.test(said) ? what : `${what}. The coordinator could not be`
          + ' reached or could not serve the call; retry, or check that it is running and reachable', ...args);
    default:
      return new SluiceError(`${what}. Unexpected status ${Status[code] ?? code}; check that client and coordinator`
          + ' versions match', ...args);
  }
}

/** The estimate of a fail-if-late refusal, from the `grpc-status-details-bin` trailer; undefined when none. */
function estimate(failure: ServiceError): WaitEstimate | undefined {
  const [details] = failure.metadata.get('grpc-status-details-bin');
  if (!(details instanceof Buffer)) {
    return undefined;
  }
  try {
    const e = estimateDetail(details);
    return e === undefined ? undefined : waitEstimate(e);
  } catch {
    return undefined;
  }
}

/** The RetryInfo hint of a RESOURCE_EXHAUSTED, from the `grpc-status-details-bin` trailer. */
function retryAfter(failure: ServiceError): number {
  const [details] = failure.metadata.get('grpc-status-details-bin');
  if (!(details instanceof Buffer)) {
    return DEFAULT_RETRY_AFTER_MS;
  }
  try {
    const ms = retryDelayMs(details);
    return ms === undefined || ms < 0 ? DEFAULT_RETRY_AFTER_MS : ms;
  } catch {
    return DEFAULT_RETRY_AFTER_MS;
  }
}
