import * as grpc from '@grpc/grpc-js';
import { type AcquireResponse, type CoordinatorStub } from './proto';
/** What one call costs, per dimension, e.g. `{ requests: 1, tokens: 1200 }`. `requests` defaults to 1. */
export type Load = Record<string, number>;
/** Priority lane: `interactive` is served first, `batch` last (but never starved). */
export type Lane = 'interactive' | 'default' | 'batch';
export interface TlsOptions {
    /** PEM CA certificates to trust; default: the system's. */
    rootCerts?: Buffer;
    /** PEM client key and certificate chain, for mTLS. */
    privateKey?: Buffer;
    certChain?: Buffer;
}
export interface SluiceClientOptions {
    /** `host:port` of a coordinator, or any grpc-js target (e.g. `dns:///sluice.internal:7420`). */
    target: string;
    /** An API key (`slk_...`), sent as `authorization: Bearer <key>` on every call. Default: none. */
    apiKey?: string;
    /** `true` for TLS with the system's CAs, or CA/mTLS material. Default: plaintext. */
    tls?: boolean | TlsOptions;
    /** Timeout of an acquire that names none. Default 30 000 ms, as the Java SDK. */
    defaultTimeoutMs?: number;
    /** The directory holding `sluice/v1/sluice.proto`. Default: `$SLUICE_PROTO_DIR`, else the repository's proto/. */
    protoDir?: string;
}
export interface AcquireOptions {
    /** How long to wait for a grant; 0 tries once. Default: the client's `defaultTimeoutMs`. */
    timeoutMs?: number;
    /** Default `default`. */
    lane?: Lane;
    /** Stops waiting: the waiter leaves the coordinator's queue and the acquire rejects with AcquireAbortedError. */
    signal?: AbortSignal;
}
export interface ReleaseOptions {
    /** What the call really used, per dimension: the difference from the grant is refunded or charged as debt. */
    usage?: Load;
}
export interface ReportOptions {
    /** The upstream answered 429: every worker pauses. Default false. */
    throttled?: boolean;
    /** From Retry-After: how long to pause. Unset with `throttled`: the coordinator pauses 1 s. */
    retryAfterMs?: number;
    /** x-ratelimit-remaining-* per dimension: can only lower what the coordinator thinks is left. */
    remaining?: Record<string, number>;
}
export interface RateLimit {
    name: string;
    amount: number;
    periodMs: number;
    burst: number;
}
export interface Limit {
    resource: string;
    rates: RateLimit[];
    /** 0: no cap. */
    concurrency: number;
    maxWaiting: number;
    leaseTtlMs: number;
}
/**
 * A client of one Sluice coordinator, built from `proto/` alone. One per process is enough; it
 * multiplexes every call over one HTTP/2 connection.
 *
 * ```ts
 * const sluice = new SluiceClient({ target: 'localhost:7420' });
 * const answer = await sluice.withPermit('openai', { requests: 1, tokens: 1200 }, async (permit) => {
 *   const reply = await callOpenAi();
 *   await permit.release({ usage: { tokens: reply.usage.total_tokens } });
 *   return reply;
 * });
 * ```
 */
export declare class SluiceClient {
    private readonly stub;
    private readonly apiKey;
    private readonly defaultTimeoutMs;
    private readonly renewer;
    /** Request ids: random per client, then a counter, as the Java SDK: unique without a UUID per call. */
    private readonly idPrefix;
    private ids;
    private closed;
    constructor(options: SluiceClientOptions);
    /**
     * Waits until `load` fits the resource's limit and returns the permit. Always release it (or use
     * {@link withPermit}): its lease is renewed until then.
     *
     * Rejects with AcquireTimeoutError when not granted within `timeoutMs`, ResourceNotFoundError,
     * InvalidRequestError, WaitingRoomFullError, AuthenticationError, PermissionDeniedError,
     * AcquireAbortedError, or SluiceUnavailableError. An attempt that fails with UNAVAILABLE is sent
     * again with the same request id (so the coordinator never grants it twice) after 50, 100, 200 ...
     * 500 ms, until the timeout runs out.
     */
    acquire(resource: string, load?: Load, options?: AcquireOptions): Promise<Permit>;
    /**
     * Acquires, runs `fn` with the permit, and releases it however `fn` ends. `fn` may release it
     * itself first, with the real usage; the second release does nothing.
     */
    withPermit<T>(resource: string, load: Load, fn: (permit: Permit) => Promise<T> | T, options?: AcquireOptions): Promise<T>;
    /**
     * Upstream feedback: the worker saw a 429 and/or x-ratelimit-remaining-* headers. A throttled
     * report pauses the resource for every worker. Resolves with how long it is now paused.
     */
    report(resource: string, report?: ReportOptions): Promise<{
        pausedForMs: number;
    }>;
    /** The resource's limit, as the coordinator stores it. ResourceNotFoundError when there is none. */
    describe(resource: string): Promise<Limit>;
    /** Stops renewing leases and closes the connection. Open permits' leases then run out at the coordinator. */
    close(): void;
    /** @internal */
    metadata(): grpc.Metadata;
    /** @internal */
    get coordinator(): CoordinatorStub;
    /** @internal */
    get leases(): LeaseRenewer;
    /**
     * @internal One short call, sent again on UNAVAILABLE after a backoff until `budgetMs` would be
     * exceeded; every other status is an answer, mapped to a typed error.
     */
    unary<T>(operation: string, resource: string, budgetMs: number, send: (md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: T) => void) => void): Promise<T>;
    /** @internal */
    isClosed(): boolean;
    private checkOpen;
}
/** A granted acquire. Release it exactly when the upstream call is done; until then its lease is renewed. */
export declare class Permit {
    private readonly client;
    /** Opaque id, as the coordinator knows it. */
    readonly id: string;
    readonly resource: string;
    /** The load charged, including the `requests` default. */
    readonly granted: Readonly<Load>;
    /** How long the acquire waited at the coordinator. */
    readonly waitedMs: number;
    /** The permit's lease length: renewed every third of it while the permit is open. */
    readonly leaseTtlMs: number;
    private ending;
    private lost;
    /** @internal */
    constructor(client: SluiceClient, resource: string, response: AcquireResponse);
    /** Whether release() has been called. */
    get released(): boolean;
    /** True once a renewal found the lease gone (the process stalled past it): the concurrency slot is lost. */
    get expired(): boolean;
    /**
     * Ends the permit: frees its concurrency slot and, with `usage`, settles what the call really
     * used (a refund, or a debt that delays the next grants). Idempotent: later calls return the
     * first call's promise.
     *
     * Resolves true when the coordinator ended the permit, false when it was already gone (its lease
     * had run out) or no coordinator could be reached (the lease then runs out on its own; a warning
     * is emitted). Rejects only when the coordinator refused the settle (InvalidRequestError, e.g. a
     * dimension the limit lacks) — after releasing the permit without it, so the slot is never held
     * hostage.
     */
    release(options?: ReleaseOptions): Promise<boolean>;
    /** @internal The caller never got this permit (it aborted while the grant was on its way): give it all back. */
    releaseUnused(): void;
    /** @internal */
    markExpired(): void;
    private end;
    toString(): string;
}
/**
 * Keeps the leases of open permits alive: one timer per resource, every third of the lease, one
 * batched Renew for all of that resource's open permits (so two lost ticks still leave the lease
 * alive). Timers are unref'd: an open permit never keeps the process alive by itself.
 */
declare class LeaseRenewer {
    private readonly client;
    private readonly groups;
    constructor(client: SluiceClient);
    register(permit: Permit): void;
    unregister(permit: Permit): void;
    close(): void;
    private arm;
    private tick;
}
export {};
