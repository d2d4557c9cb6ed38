"use strict";
var __createBinding = (this && this.__createBinding) || (Object.create ? (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    var desc = Object.getOwnPropertyDescriptor(m, k);
    if (!desc || ("get" in desc ? !m.__esModule : desc.writable || desc.configurable)) {
      desc = { enumerable: true, get: function() { return m[k]; } };
    }
    Object.defineProperty(o, k2, desc);
}) : (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    o[k2] = m[k];
}));
var __setModuleDefault = (this && this.__setModuleDefault) || (Object.create ? (function(o, v) {
    Object.defineProperty(o, "default", { enumerable: true, value: v });
}) : function(o, v) {
    o["default"] = v;
});
var __importStar = (this && this.__importStar) || (function () {
    var ownKeys = function(o) {
        ownKeys = Object.getOwnPropertyNames || function (o) {
            var ar = [];
            for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) ar[ar.length] = k;
            return ar;
        };
        return ownKeys(o);
    };
    return function (mod) {
        if (mod && mod.__esModule) return mod;
        var result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod);
        return result;
    };
})();
Object.defineProperty(exports, "__esModule", { value: true });
exports.Permit = exports.SluiceClient = void 0;
const node_crypto_1 = require("node:crypto");
const node_perf_hooks_1 = require("node:perf_hooks");
const grpc = __importStar(require("@grpc/grpc-js"));
const errors_1 = require("./errors");
const proto_1 = require("./proto");
const DEFAULT_TIMEOUT_MS = 30_000;
/** Added to an acquire's timeout for its gRPC deadline: the server answers first; a dead one cannot hang us. */
const DEADLINE_MARGIN_MS = 5_000;
/** Budget of the short calls (release, report, describe, renew), retries included. */
const CALL_BUDGET_MS = 10_000;
const LANES = {
    interactive: 'LANE_INTERACTIVE',
    default: 'LANE_DEFAULT',
    batch: 'LANE_BATCH',
};
/** The pause before retry number `retry + 1`: 50, 100, 200, 400, 500, 500, ... ms (as the Java SDK). */
function backoffMs(retry) {
    return Math.min(500, 50 * 2 ** Math.min(retry, 10));
}
/** UNAVAILABLE, or a CANCELLED we did not cause (a killed node resets its streams). */
function isRetryable(e) {
    return e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.CANCELLED;
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
class SluiceClient {
    stub;
    apiKey;
    defaultTimeoutMs;
    renewer;
    /** Request ids: random per client, then a counter, as the Java SDK: unique without a UUID per call. */
    idPrefix = `${(0, node_crypto_1.randomUUID)()}-`;
    ids = 0;
    closed = false;
    constructor(options) {
        if (typeof options?.target !== 'string' || options.target.trim() === '') {
            throw new TypeError('target must be a coordinator address such as "localhost:7420"');
        }
        if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey.trim() === '')) {
            throw new TypeError('apiKey must be a non-empty string (slk_...), or left out');
        }
        this.defaultTimeoutMs = checkTimeout(options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS, 'defaultTimeoutMs');
        this.apiKey = options.apiKey?.trim();
        const Coordinator = (0, proto_1.coordinatorConstructor)(options.protoDir ?? (0, proto_1.defaultProtoDir)());
        this.stub = new Coordinator(options.target.trim(), credentials(options.tls), {
            // Several addresses behind one name (dns:///...): spread calls and fail over, as the Java SDK.
            'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
        });
        this.renewer = new LeaseRenewer(this);
    }
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
    acquire(resource, load = {}, options = {}) {
        this.checkOpen();
        checkLoad(load, 'load');
        const timeoutMs = checkTimeout(options.timeoutMs ?? this.defaultTimeoutMs, 'timeoutMs');
        const lane = options.lane ?? 'default';
        if (!(lane in LANES)) {
            throw new TypeError(`lane must be one of ${Object.keys(LANES).join(', ')}, not ${String(lane)}`);
        }
        const requestId = `${this.idPrefix}${(++this.ids).toString(36)}`;
        return new AcquireCall(this, resource, load, LANES[lane], timeoutMs, requestId, options.signal).promise;
    }
    /**
     * Acquires, runs `fn` with the permit, and releases it however `fn` ends. `fn` may release it
     * itself first, with the real usage; the second release does nothing.
     */
    async withPermit(resource, load, fn, options = {}) {
        const permit = await this.acquire(resource, load, options);
        let result;
        try {
            result = await fn(permit);
        }
        catch (e) {
            await permit.release().catch(() => undefined); // fn's failure is the one worth seeing
            throw e;
        }
        await permit.release();
        return result;
    }
    /**
     * Upstream feedback: the worker saw a 429 and/or x-ratelimit-remaining-* headers. A throttled
     * report pauses the resource for every worker. Resolves with how long it is now paused.
     */
    async report(resource, report = {}) {
        this.checkOpen();
        const remaining = report.remaining ?? {};
        checkLoad(remaining, 'remaining');
        if (report.retryAfterMs !== undefined) {
            checkTimeout(report.retryAfterMs, 'retryAfterMs');
        }
        const request = { resource, throttled: report.throttled === true, remaining };
        if (report.throttled && report.retryAfterMs !== undefined) {
            request.retryAfter = (0, proto_1.toDuration)(report.retryAfterMs);
        }
        const response = await this.unary('report', resource, CALL_BUDGET_MS, (md, opts, cb) => this.stub.Report(request, md, opts, cb));
        return { pausedForMs: (0, proto_1.toMs)(response.pausedFor) };
    }
    /** The resource's limit, as the coordinator stores it. ResourceNotFoundError when there is none. */
    async describe(resource) {
        this.checkOpen();
        const { limit } = await this.unary('describe', resource, CALL_BUDGET_MS, (md, opts, cb) => this.stub.Describe({ resource }, md, opts, cb));
        if (limit === null) {
            throw new errors_1.SluiceError(`describe on resource '${resource}' failed: the coordinator sent no limit`, grpc.status.INTERNAL, '', 'describe', resource);
        }
        return {
            resource: limit.resource,
            rates: limit.rates.map((r) => ({ name: r.name, amount: r.amount, periodMs: (0, proto_1.toMs)(r.period), burst: r.burst })),
            concurrency: limit.concurrency,
            maxWaiting: limit.maxWaiting,
            leaseTtlMs: (0, proto_1.toMs)(limit.leaseTtl),
        };
    }
    /** Stops renewing leases and closes the connection. Open permits' leases then run out at the coordinator. */
    close() {
        if (!this.closed) {
            this.closed = true;
            this.renewer.close();
            this.stub.close();
        }
    }
    // ---- plumbing shared with AcquireCall, Permit and LeaseRenewer ----
    /** @internal */
    metadata() {
        const md = new grpc.Metadata();
        if (this.apiKey !== undefined) {
            md.set('authorization', `Bearer ${this.apiKey}`);
        }
        return md;
    }
    /** @internal */
    get coordinator() {
        return this.stub;
    }
    /** @internal */
    get leases() {
        return this.renewer;
    }
    /**
     * @internal One short call, sent again on UNAVAILABLE after a backoff until `budgetMs` would be
     * exceeded; every other status is an answer, mapped to a typed error.
     */
    unary(operation, resource, budgetMs, send) {
        const giveUpAt = node_perf_hooks_1.performance.now() + budgetMs;
        return new Promise((resolve, reject) => {
            const attempt = (retry) => {
                const left = Math.max(1, giveUpAt - node_perf_hooks_1.performance.now());
                send(this.metadata(), { deadline: Date.now() + left }, (error, response) => {
                    if (error === null) {
                        resolve(response);
                        return;
                    }
                    const backoff = backoffMs(retry);
                    if (isRetryable(error) && !this.closed && giveUpAt - node_perf_hooks_1.performance.now() > backoff) {
                        setTimeout(() => attempt(retry + 1), backoff).unref();
                        return;
                    }
                    reject((0, errors_1.mapError)(error, operation, resource));
                });
            };
            attempt(0);
        });
    }
    /** @internal */
    isClosed() {
        return this.closed;
    }
    checkOpen() {
        if (this.closed) {
            throw new Error('this SluiceClient is closed; create a new one');
        }
    }
}
exports.SluiceClient = SluiceClient;
/** A granted acquire. Release it exactly when the upstream call is done; until then its lease is renewed. */
class Permit {
    client;
    /** Opaque id, as the coordinator knows it. */
    id;
    resource;
    /** The load charged, including the `requests` default. */
    granted;
    /** How long the acquire waited at the coordinator. */
    waitedMs;
    /** The permit's lease length: renewed every third of it while the permit is open. */
    leaseTtlMs;
    ending;
    lost = false;
    /** @internal */
    constructor(client, resource, response) {
        this.client = client;
        this.id = response.permitId;
        this.resource = resource;
        this.granted = Object.freeze({ ...response.granted });
        this.waitedMs = (0, proto_1.toMs)(response.waited);
        this.leaseTtlMs = (0, proto_1.toMs)(response.leaseTtl);
    }
    /** Whether release() has been called. */
    get released() {
        return this.ending !== undefined;
    }
    /** True once a renewal found the lease gone (the process stalled past it): the concurrency slot is lost. */
    get expired() {
        return this.lost;
    }
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
    release(options = {}) {
        if (this.ending === undefined) {
            if (options.usage !== undefined) {
                checkLoad(options.usage, 'usage');
            }
            this.ending = this.end(options.usage === undefined
                ? { resource: this.resource, permitId: this.id }
                : { resource: this.resource, permitId: this.id, actual: options.usage, settle: true });
        }
        return this.ending;
    }
    /** @internal The caller never got this permit (it aborted while the grant was on its way): give it all back. */
    releaseUnused() {
        if (this.ending === undefined) {
            this.ending = this.end({ resource: this.resource, permitId: this.id, unused: true });
            this.ending.catch(() => undefined);
        }
    }
    /** @internal */
    markExpired() {
        this.lost = true;
    }
    async end(request) {
        this.client.leases.unregister(this);
        const send = (req) => this.client.unary('release', this.resource, CALL_BUDGET_MS, (md, opts, cb) => this.client.coordinator.Release(req, md, opts, cb));
        try {
            return (await send(request)).released;
        }
        catch (e) {
            if (e instanceof errors_1.InvalidRequestError && request.settle === true) {
                await send({ resource: this.resource, permitId: this.id }).catch(() => undefined);
                throw e;
            }
            process.emitWarning(`releasing permit ${this.id} on '${this.resource}' failed; its lease will run out on its`
                + ` own: ${e.message}`, 'SluiceWarning');
            return false;
        }
    }
    toString() {
        return `Permit{id=${this.id}, resource=${this.resource}, granted=${JSON.stringify(this.granted)}, waited=${this.waitedMs}ms}`;
    }
}
exports.Permit = Permit;
/**
 * One acquire: its Acquire long-polls (one per attempt) and the promise that exposes it.
 *
 * Abort. The caller's promise rejects at once. But cancelling the RPC cannot settle the race with
 * a grant already on its way (the answer would be dropped unread and the permit leak until its
 * lease ends). So, as the Java SDK, an abort sends a Cancel naming the request id and keeps the
 * Acquire open: if the waiter was still queued, it leaves and the Acquire ends with CANCELLED; if
 * it was granted, the grant arrives and is released as unused. Only when the Cancel itself fails
 * is the call cancelled.
 */
class AcquireCall {
    client;
    resource;
    load;
    lane;
    timeoutMs;
    requestId;
    signal;
    promise;
    resolve;
    reject;
    started = node_perf_hooks_1.performance.now();
    done = false;
    aborted = false;
    retries = 0;
    call;
    retryTimer;
    onAbort = () => this.abort();
    constructor(client, resource, load, lane, timeoutMs, requestId, signal) {
        this.client = client;
        this.resource = resource;
        this.load = load;
        this.lane = lane;
        this.timeoutMs = timeoutMs;
        this.requestId = requestId;
        this.signal = signal;
        this.promise = new Promise((resolve, reject) => {
            this.resolve = resolve;
            this.reject = reject;
        });
        if (signal?.aborted) {
            this.finish(this.abortedError());
            return;
        }
        signal?.addEventListener('abort', this.onAbort, { once: true });
        this.send();
    }
    remainingMs() {
        return Math.max(0, this.timeoutMs - (node_perf_hooks_1.performance.now() - this.started));
    }
    send() {
        const remaining = this.remainingMs();
        const request = {
            resource: this.resource,
            load: this.load,
            lane: this.lane,
            timeout: (0, proto_1.toDuration)(this.retries === 0 ? this.timeoutMs : remaining),
            requestId: this.requestId,
        };
        const sentAt = node_perf_hooks_1.performance.now();
        this.call = this.client.coordinator.Acquire(request, this.client.metadata(), { deadline: Date.now() + remaining + DEADLINE_MARGIN_MS }, (error, response) => this.answered(error, response, remaining, sentAt));
    }
    answered(error, response, askedMs, sentAt) {
        if (error === null && response !== undefined) {
            const permit = new Permit(this.client, this.resource, response);
            if (this.done || this.aborted) {
                permit.releaseUnused(); // the caller gave up while the grant was on its way
                this.finish(this.abortedError());
                return;
            }
            if (permit.leaseTtlMs > 0) {
                this.client.leases.register(permit); // before the caller sees it, so a quick release finds it
            }
            this.finish(permit);
            return;
        }
        if (this.aborted) {
            this.finish(this.abortedError(error ?? undefined));
            return;
        }
        if (error !== null && isRetryable(error) && !this.done && !this.client.isClosed()) {
            this.unavailable(error);
            return;
        }
        let failure = (0, errors_1.mapError)(error, 'acquire', this.resource);
        const elapsed = node_perf_hooks_1.performance.now() - sentAt;
        if (error?.code === grpc.status.DEADLINE_EXCEEDED && elapsed - askedMs > DEADLINE_MARGIN_MS / 2) {
            // The coordinator owns the timeout and answers it itself; silence well past it is a dead or
            // unreachable coordinator, which callers must treat as unavailable, not slow.
            failure = new errors_1.SluiceUnavailableError(`acquire on resource '${this.resource}' failed: the coordinator did not`
                + ` answer within ${Math.round(elapsed)} ms (asked to time out after ${Math.round(askedMs)} ms). Check`
                + ' that it is running and reachable', failure.code, failure.serverMessage, 'acquire', this.resource, error);
        }
        this.finish(failure);
    }
    /** UNAVAILABLE: send again, with the same request id, until the timeout runs out (a zero timeout still retries once). */
    unavailable(error) {
        const remaining = this.remainingMs();
        if (remaining > 0 || this.retries === 0) {
            const backoff = this.retries === 0 ? backoffMs(0) : Math.min(backoffMs(this.retries), remaining);
            this.retries++;
            this.retryTimer = setTimeout(() => {
                this.retryTimer = undefined;
                if (!this.done && !this.aborted) {
                    this.send();
                }
            }, backoff);
            return;
        }
        const mapped = (0, errors_1.mapError)(error, 'acquire', this.resource);
        this.finish(new errors_1.SluiceUnavailableError(`${mapped.message}. No coordinator answered within the acquire's`
            + ` timeout of ${this.timeoutMs} ms (${this.retries + 1} attempt(s))`, mapped.code, mapped.serverMessage, 'acquire', this.resource, error));
    }
    abort() {
        if (this.done || this.aborted) {
            return;
        }
        this.aborted = true;
        this.finish(this.abortedError()); // the caller stops waiting now; the rest happens behind it
        if (this.retryTimer !== undefined) {
            clearTimeout(this.retryTimer); // between attempts: nothing is queued anywhere
            return;
        }
        const call = this.call;
        this.client.unary('cancel', this.resource, 2_000, (md, opts, cb) => this.client.coordinator.Cancel({ resource: this.resource, requestId: this.requestId }, md, opts, cb))
            .catch(() => call?.cancel()); // no coordinator to ask: cancel the call; its grant, if any, is lost with it
    }
    abortedError(cause) {
        return new errors_1.AcquireAbortedError(`acquire on resource '${this.resource}' was aborted by the caller: nothing`
            + ' was granted (a grant that raced with the abort was given back)', grpc.status.CANCELLED, '', 'acquire', this.resource, cause ?? this.signal?.reason);
    }
    finish(outcome) {
        if (this.done) {
            return;
        }
        this.done = true;
        this.signal?.removeEventListener('abort', this.onAbort);
        if (outcome instanceof Permit) {
            this.resolve(outcome);
        }
        else {
            this.reject(outcome);
        }
    }
}
/**
 * Keeps the leases of open permits alive: one timer per resource, every third of the lease, one
 * batched Renew for all of that resource's open permits (so two lost ticks still leave the lease
 * alive). Timers are unref'd: an open permit never keeps the process alive by itself.
 */
class LeaseRenewer {
    client;
    groups = new Map();
    constructor(client) {
        this.client = client;
    }
    register(permit) {
        let group = this.groups.get(permit.resource);
        if (group === undefined) {
            group = { permits: new Map(), ttlMs: permit.leaseTtlMs };
            this.groups.set(permit.resource, group);
        }
        group.permits.set(permit.id, permit);
        if (permit.leaseTtlMs < group.ttlMs) {
            group.ttlMs = permit.leaseTtlMs; // the limit's lease shrank: the armed tick may come too late
            clearTimeout(group.timer);
            group.timer = undefined;
        }
        if (group.timer === undefined) {
            this.arm(permit.resource);
        }
    }
    unregister(permit) {
        const group = this.groups.get(permit.resource);
        if (group !== undefined && group.permits.delete(permit.id) && group.permits.size === 0) {
            clearTimeout(group.timer);
            this.groups.delete(permit.resource);
        }
    }
    close() {
        for (const group of this.groups.values()) {
            clearTimeout(group.timer);
        }
        this.groups.clear();
    }
    arm(resource) {
        const group = this.groups.get(resource);
        if (group !== undefined) {
            const intervalMs = Math.max(1, group.ttlMs / 3);
            group.timer = setTimeout(() => this.tick(resource, intervalMs), intervalMs);
            group.timer.unref();
        }
    }
    tick(resource, intervalMs) {
        const group = this.groups.get(resource);
        if (group === undefined || this.client.isClosed()) {
            return;
        }
        this.arm(resource);
        const permitIds = [...group.permits.keys()];
        // A renewal answered after the next tick is worthless: the interval bounds its retries.
        this.client.unary('renew', resource, intervalMs, (md, opts, cb) => this.client.coordinator.Renew({ resource, permitIds }, md, opts, cb))
            .then((response) => {
            for (const id of response.expired) {
                const permit = group.permits.get(id);
                if (permit !== undefined) {
                    permit.markExpired();
                    this.unregister(permit);
                    process.emitWarning(`lease of permit ${id} on '${resource}' has expired: its concurrency slot is gone`, 'SluiceWarning');
                }
            }
            const ttlMs = (0, proto_1.toMs)(response.leaseTtl);
            if (ttlMs > 0) {
                group.ttlMs = ttlMs; // from the next tick on
            }
        })
            .catch((e) => process.emitWarning(`renewing ${permitIds.length} lease(s) on '${resource}' failed;`
            + ` retrying at the next tick: ${e.message}`, 'SluiceWarning'));
    }
}
function credentials(tls) {
    if (tls === undefined || tls === false) {
        return grpc.credentials.createInsecure();
    }
    if (tls === true) {
        return grpc.credentials.createSsl();
    }
    return grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
}
function checkTimeout(ms, what) {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
        throw new RangeError(`${what} must be a finite number of milliseconds >= 0, not ${String(ms)}`);
    }
    return ms;
}
/**
 * Only what JavaScript can get wrong on the way to an int64: the coordinator judges the values
 * themselves (negative, zero total, unknown dimension, above the burst) and says what is wrong.
 */
function checkLoad(load, what) {
    if (load === null || typeof load !== 'object' || Array.isArray(load)) {
        throw new TypeError(`${what} must be an object of dimension → integer, e.g. { requests: 1, tokens: 1200 }`);
    }
    for (const [dim, v] of Object.entries(load)) {
        if (!Number.isSafeInteger(v)) {
            throw new TypeError(`${what} ${dim}=${String(v)} is not a safe integer: int64 values go over the wire`
                + ' as JavaScript numbers here');
        }
    }
}
//# sourceMappingURL=client.js.map