import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import {
  AcquireAbortedError, InvalidRequestError, SluiceError, SluiceUnavailableError, type WaitEstimate, humanMs, mapError,
  waitEstimate,
} from './errors';
import {
  type AcquireResponse, type CoordinatorStub, type Duration, type EstimateResponse, type LimitMessage,
  coordinatorConstructor, defaultProtoDir, toDuration, toMs,
} from './proto';

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
  /** Tenant of an acquire that names none (see AcquireOptions.tenant). Default: none (the tenant `default`). */
  defaultTenant?: string;
  /** The directory holding `sluice/v1/sluice.proto`. Default: `$SLUICE_PROTO_DIR`, else the copy inside the package. */
  protoDir?: string;
}

export interface AcquireOptions {
  /** How long to wait for a grant; 0 tries once. Default: the client's `defaultTimeoutMs`. */
  timeoutMs?: number;
  /** Default `default`. */
  lane?: Lane;
  /**
   * Whose share of the quota this acquire draws on (the limit's shares, floors and caps): 1-64 characters of
   * A-Z a-z 0-9 . _ : -. Default: the client's `defaultTenant`, else none (the tenant `default`). With an API
   * key bound to a tenant the key's is used; naming another rejects with PermissionDeniedError.
   */
  tenant?: string;
  /**
   * Fail at once, instead of waiting, when the coordinator estimates the grant would come after `timeoutMs` (see
   * {@link SluiceClient.estimate}) or the resource is paused until resumed: AcquireTimeoutError, nothing queued,
   * its `estimate` saying how long the wait would be. When the estimate fits, the acquire waits as usual (and
   * may still time out: an estimate is no promise). Such a refusal is an answer, never retried. Default false.
   */
  failIfLate?: boolean;
  /**
   * The model the call is for (`gpt-4o-mini`), for a limit that counts money (`--rate usd=50/day`): the
   * coordinator prices the load's `input_tokens`, `output_tokens` and `cached_input_tokens` at that model's
   * price (`sluice price set`), and the release's `usage` the same way. 1-200 characters of A-Z a-z 0-9 and
   * `._:/@+-`. Default none.
   */
  model?: string;
  /** Stops waiting: the waiter leaves the coordinator's queue and the acquire rejects with AcquireAbortedError. */
  signal?: AbortSignal;
}

export interface EstimateOptions {
  /** The lane the acquire would have. Default `default`. */
  lane?: Lane;
  /** Its tenant, as in AcquireOptions.tenant. Default: the client's `defaultTenant`, else none. */
  tenant?: string;
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
  /**
   * The provider's per-minute limits per dimension (x-ratelimit-limit-*, anthropic-ratelimit-*-limit):
   * a resource set with `sluice limit set --learn PROVIDER` takes them as its rates; others ignore them.
   */
  limits?: Record<string, number>;
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

const DEFAULT_TIMEOUT_MS = 30_000;
/** Added to an acquire's timeout for its gRPC deadline: the server answers first; a dead one cannot hang us. */
const DEADLINE_MARGIN_MS = 5_000;
/** Budget of the short calls (release, report, describe, renew), retries included. */
const CALL_BUDGET_MS = 10_000;
const TENANT = /^[A-Za-z0-9._:-]{1,64}$/;

const MODEL = /^[A-Za-z0-9._:/@+-]{1,200}$/;

/** A model name as the price table takes it, or '' for none; a bad one throws naming the fix. */
function checkModel(model: unknown): string {
  if (model === undefined) {
    return '';
  }
  if (typeof model !== 'string' || !MODEL.test(model)) {
    throw new TypeError(`model must be 1-200 characters of A-Z a-z 0-9 . _ : / @ + -, as \`sluice price set\` names it,`
        + ` not ${JSON.stringify(model)}`);
  }
  return model;
}

/** A tenant name as the coordinator takes it, or undefined for none; a bad one throws naming the fix. */
function checkTenant(tenant: unknown, field: string): string | undefined {
  if (tenant === undefined) {
    return undefined;
  }
  if (typeof tenant !== 'string' || !TENANT.test(tenant)) {
    throw new TypeError(`${field} must be 1-64 characters of A-Z a-z 0-9 . _ : -, such as "search", not ${
      JSON.stringify(tenant)}`);
  }
  return tenant;
}

const LANES: Record<Lane, string> = {
  interactive: 'LANE_INTERACTIVE',
  default: 'LANE_DEFAULT',
  batch: 'LANE_BATCH',
};

/** The pause before retry number `retry + 1`: 50, 100, 200, 400, 500, 500, ... ms (as the Java SDK). */
function backoffMs(retry: number): number {
  return Math.min(500, 50 * 2 ** Math.min(retry, 10));
}

/** UNAVAILABLE, or a CANCELLED we did not cause (a killed node resets its streams). */
function isRetryable(e: grpc.ServiceError): boolean {
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
/**
 * How long answers normally spend on the way from the coordinators: the least seen in this
 * window of 10 s or the last (as the Java SDK's Transit). A constant delay bunches nothing; what
 * counts for a grant is how much longer than that its answer took.
 */
class Transit {
  private leastNow = Infinity;
  private leastBefore = Infinity;
  private windowStart = -Infinity;

  /** Notes an answer that spent `onTheWayMs` on the way at `now`; returns the excess over the least lately seen (0 for the first). */
  excess(onTheWayMs: number, now: number): number {
    if (now - this.windowStart > 10_000) {
      this.leastBefore = this.leastNow;
      this.leastNow = Infinity;
      this.windowStart = now;
    }
    const least = Math.min(this.leastNow, this.leastBefore);
    this.leastNow = Math.min(this.leastNow, onTheWayMs);
    return least === Infinity ? 0 : Math.max(0, onTheWayMs - least);
  }
}

/** Delays on the way shorter than this are ordinary jitter, never a reason to confirm a grant. */
const LATE_FLOOR_MS = 10;

export class SluiceClient {
  /** @internal How long answers normally spend on the way (late grants). */
  readonly transit = new Transit();
  /** @internal Grants that arrived later than their freshness and were confirmed. */
  lateGrants = 0;
  private readonly stub: CoordinatorStub;
  private readonly apiKey: string | undefined;
  private readonly defaultTimeoutMs: number;
  private readonly defaultTenant: string | undefined;
  private readonly renewer: LeaseRenewer;
  /** Request ids: random per client, then a counter, as the Java SDK: unique without a UUID per call. */
  private readonly idPrefix = `${randomUUID()}-`;
  private ids = 0;
  private closed = false;

  constructor(options: SluiceClientOptions) {
    if (typeof options?.target !== 'string' || options.target.trim() === '') {
      throw new TypeError('target must be a coordinator address such as "localhost:7420"');
    }
    if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey.trim() === '')) {
      throw new TypeError('apiKey must be a non-empty string (slk_...), or left out');
    }
    this.defaultTimeoutMs = checkTimeout(options.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS, 'defaultTimeoutMs');
    this.defaultTenant = checkTenant(options.defaultTenant, 'defaultTenant');
    this.apiKey = options.apiKey?.trim();
    const Coordinator = coordinatorConstructor(options.protoDir ?? defaultProtoDir());
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
  acquire(resource: string, load: Load = {}, options: AcquireOptions = {}): Promise<Permit> {
    this.checkOpen();
    checkLoad(load, 'load');
    const timeoutMs = checkTimeout(options.timeoutMs ?? this.defaultTimeoutMs, 'timeoutMs');
    const lane = checkLane(options.lane);
    const tenant = checkTenant(options.tenant, 'tenant') ?? this.defaultTenant ?? '';
    if (options.failIfLate !== undefined && typeof options.failIfLate !== 'boolean') {
      throw new TypeError(`failIfLate must be true or false, not ${String(options.failIfLate)}`);
    }
    const model = checkModel(options.model);
    const requestId = `${this.idPrefix}${(++this.ids).toString(36)}`;
    return new AcquireCall(this, resource, load, lane, timeoutMs, requestId, tenant, options.failIfLate === true,
        options.signal, model).promise;
  }

  /**
   * When an acquire of `load` made now would be granted, as the coordinator estimates it, without queueing
   * anything: the load its tenant has queued in its lane and the lanes above, plus this one, drained at the
   * tenant's share of the rate, within its cap, after any timed pause. `{ waitMs, paused }`; `waitMs` is null and
   * `paused` true while the resource is paused until resumed (only a resume can help). An estimate, not a
   * promise. Same refusals as acquire (ResourceNotFoundError, InvalidRequestError, PermissionDeniedError for a
   * tenant other than the key's); sent again on UNAVAILABLE, as a report. Bad options throw at once, as acquire's.
   */
  estimate(resource: string, load: Load = {}, options: EstimateOptions = {}): Promise<WaitEstimate> {
    this.checkOpen();
    checkLoad(load, 'load');
    const request = {
      resource,
      load,
      lane: checkLane(options.lane),
      tenant: checkTenant(options.tenant, 'tenant') ?? this.defaultTenant ?? '',
    };
    return this.unary<EstimateResponse>('estimate', resource, CALL_BUDGET_MS,
        (md, opts, cb) => this.stub.Estimate(request, md, opts, cb)).then(waitEstimate);
  }

  /**
   * Acquires, runs `fn` with the permit, and releases it however `fn` ends. `fn` may release it
   * itself first, with the real usage; the second release does nothing.
   */
  async withPermit<T>(resource: string, load: Load, fn: (permit: Permit) => Promise<T> | T,
      options: AcquireOptions = {}): Promise<T> {
    const permit = await this.acquire(resource, load, options);
    let result: T;
    try {
      result = await fn(permit);
    } catch (e) {
      await permit.release().catch(() => undefined); // fn's failure is the one worth seeing
      throw e;
    }
    await permit.release();
    return result;
  }

  /**
   * Upstream feedback: the worker saw a 429 and/or rate-limit headers (what remains, the
   * provider's limits). A throttled report pauses the resource for every worker. Resolves with how
   * long it is now paused.
   */
  async report(resource: string, report: ReportOptions = {}): Promise<{ pausedForMs: number }> {
    this.checkOpen();
    const remaining = report.remaining ?? {};
    checkLoad(remaining, 'remaining');
    const limits = report.limits ?? {};
    checkLoad(limits, 'limits');
    if (report.retryAfterMs !== undefined) {
      checkTimeout(report.retryAfterMs, 'retryAfterMs');
    }
    const request: Record<string, unknown> = { resource, throttled: report.throttled === true, remaining, limits };
    if (report.throttled && report.retryAfterMs !== undefined) {
      request.retryAfter = toDuration(report.retryAfterMs);
    }
    const response = await this.unary<{ pausedFor: Duration | null }>('report', resource, CALL_BUDGET_MS,
        (md, opts, cb) => this.stub.Report(request, md, opts, cb));
    return { pausedForMs: toMs(response.pausedFor) };
  }

  /** The resource's limit, as the coordinator stores it. ResourceNotFoundError when there is none. */
  async describe(resource: string): Promise<Limit> {
    this.checkOpen();
    const { limit } = await this.unary<{ limit: LimitMessage | null }>('describe', resource, CALL_BUDGET_MS,
        (md, opts, cb) => this.stub.Describe({ resource }, md, opts, cb));
    if (limit === null) {
      throw new SluiceError(`describe on resource '${resource}' failed: the coordinator sent no limit`,
          grpc.status.INTERNAL, '', 'describe', resource);
    }
    return {
      resource: limit.resource,
      rates: limit.rates.map((r) => ({ name: r.name, amount: r.amount, periodMs: toMs(r.period), burst: r.burst })),
      concurrency: limit.concurrency,
      maxWaiting: limit.maxWaiting,
      leaseTtlMs: toMs(limit.leaseTtl),
    };
  }

  /** Stops renewing leases and closes the connection. Open permits' leases then run out at the coordinator. */
  close(): void {
    if (!this.closed) {
      this.closed = true;
      this.renewer.close();
      this.stub.close();
    }
  }

  // ---- plumbing shared with AcquireCall, Permit and LeaseRenewer ----

  /** @internal */
  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.apiKey !== undefined) {
      md.set('authorization', `Bearer ${this.apiKey}`);
    }
    return md;
  }

  /** @internal */
  get coordinator(): CoordinatorStub {
    return this.stub;
  }

  /** @internal */
  get leases(): LeaseRenewer {
    return this.renewer;
  }

  /**
   * @internal One short call, sent again on UNAVAILABLE after a backoff until `budgetMs` would be
   * exceeded; every other status is an answer, mapped to a typed error.
   */
  unary<T>(operation: string, resource: string, budgetMs: number,
      send: (md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: T) => void) => void,
  ): Promise<T> {
    const giveUpAt = performance.now() + budgetMs;
    return new Promise<T>((resolve, reject) => {
      const attempt = (retry: number) => {
        const left = Math.max(1, giveUpAt - performance.now());
        send(this.metadata(), { deadline: Date.now() + left }, (error, response) => {
          if (error === null) {
            resolve(response as T);
            return;
          }
          const backoff = backoffMs(retry);
          if (isRetryable(error) && !this.closed && giveUpAt - performance.now() > backoff) {
            setTimeout(() => attempt(retry + 1), backoff).unref();
            return;
          }
          reject(mapError(error, operation, resource));
        });
      };
      attempt(0);
    });
  }

  /** @internal */
  isClosed(): boolean {
    return this.closed;
  }

  private checkOpen(): void {
    if (this.closed) {
      throw new Error('this SluiceClient is closed; create a new one');
    }
  }
}

/** A granted acquire. Release it exactly when the upstream call is done; until then its lease is renewed. */
export class Permit {
  /** Opaque id, as the coordinator knows it. */
  readonly id: string;
  /** The resource acquired on (a pool's name for a pool). */
  readonly resource: string;
  /**
   * The resource whose limit granted: `resource` itself, or for a pool the member that granted, whose own
   * upstream (API key, project, deployment) the call should use. Report that upstream's 429s on the member,
   * so only it pauses. Release needs nothing more: the permit finds its member.
   */
  readonly member: string;
  /** The load charged, including the `requests` default. */
  readonly granted: Readonly<Load>;
  /** How long the acquire waited at the coordinator. */
  readonly waitedMs: number;
  /** The permit's lease length: renewed every third of it while the permit is open. */
  readonly leaseTtlMs: number;
  private ending: Promise<boolean> | undefined;
  private lost = false;

  /** @internal */
  constructor(private readonly client: SluiceClient, resource: string, response: AcquireResponse,
      private readonly model: string = '') {
    this.id = response.permitId;
    this.resource = resource;
    this.member = response.member ? response.member : resource;
    this.granted = Object.freeze({ ...response.granted });
    this.waitedMs = toMs(response.waited);
    this.leaseTtlMs = toMs(response.leaseTtl);
  }

  /** Whether release() has been called. */
  get released(): boolean {
    return this.ending !== undefined;
  }

  /** True once a renewal found the lease gone (the process stalled past it): the concurrency slot is lost. */
  get expired(): boolean {
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
  release(options: ReleaseOptions = {}): Promise<boolean> {
    if (this.ending === undefined) {
      if (options.usage !== undefined) {
        checkLoad(options.usage, 'usage');
      }
      this.ending = this.end(options.usage === undefined
        ? { resource: this.resource, permitId: this.id }
        : { resource: this.resource, permitId: this.id, actual: options.usage, settle: true, model: this.model });
    }
    return this.ending;
  }

  /** @internal The caller never got this permit (it aborted while the grant was on its way): give it all back. */
  releaseUnused(): void {
    if (this.ending === undefined) {
      this.ending = this.end({ resource: this.resource, permitId: this.id, unused: true });
      this.ending.catch(() => undefined);
    }
  }

  /** @internal */
  markExpired(): void {
    this.lost = true;
  }

  private async end(request: Record<string, unknown>): Promise<boolean> {
    this.client.leases.unregister(this);
    const send = (req: Record<string, unknown>) => this.client.unary<{ released: boolean }>('release', this.resource,
        CALL_BUDGET_MS, (md, opts, cb) => this.client.coordinator.Release(req, md, opts, cb));
    try {
      return (await send(request)).released;
    } catch (e) {
      if (e instanceof InvalidRequestError && request.settle === true) {
        await send({ resource: this.resource, permitId: this.id }).catch(() => undefined);
        throw e;
      }
      process.emitWarning(`releasing permit ${this.id} on '${this.resource}' failed; its lease will run out on its`
          + ` own: ${(e as Error).message}`, 'SluiceWarning');
      return false;
    }
  }

  toString(): string {
    const load = Object.entries(this.granted).map(([d, n]) => `${d}=${n}`).join(', ') || 'nothing';
    return `permit ${this.id} on '${this.resource}': ${load}, granted after ${humanMs(this.waitedMs)}`;
  }
}

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
  readonly promise: Promise<Permit>;
  private resolve!: (p: Permit) => void;
  private reject!: (e: SluiceError) => void;
  private readonly started = performance.now();
  private done = false;
  private aborted = false;
  private retries = 0;
  /** A late grant was confirmed: the next one is taken as it comes. */
  private confirmed = false;
  private call: grpc.ClientUnaryCall | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => this.abort();

  constructor(private readonly client: SluiceClient, private readonly resource: string,
      private readonly load: Load, private readonly lane: string, private readonly timeoutMs: number,
      private readonly requestId: string, private readonly tenant: string, private readonly failIfLate: boolean,
      private readonly signal: AbortSignal | undefined, private readonly model: string = '') {
    this.promise = new Promise<Permit>((resolve, reject) => {
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

  private remainingMs(): number {
    return Math.max(0, this.timeoutMs - (performance.now() - this.started));
  }

  private send(): void {
    const remaining = this.remainingMs();
    const request = {
      resource: this.resource,
      load: this.load,
      lane: this.lane,
      timeout: toDuration(this.retries === 0 ? this.timeoutMs : remaining),
      requestId: this.requestId,
      tenant: this.tenant,
      failIfLate: this.failIfLate,
      model: this.model,
    };
    const sentAt = performance.now();
    this.call = this.client.coordinator.Acquire(request, this.client.metadata(),
        { deadline: Date.now() + remaining + DEADLINE_MARGIN_MS },
        (error, response) => this.answered(error, response, remaining, sentAt));
  }

  private answered(error: grpc.ServiceError | null, response: AcquireResponse | undefined, askedMs: number,
      sentAt: number): void {
    if (error === null && response !== undefined) {
      if (this.late(response, sentAt) && !this.done && !this.aborted) {
        // Held back on the way (a network that let its answers through at once): confirmed by
        // sending the acquire again with its request id. The coordinator hands over the same
        // permit if it is still fresh, or forfeits it and keeps this acquire at the head of its
        // lane. Only the first grant is judged: a slow network costs one round trip, never a loop.
        this.confirmed = true;
        this.client.lateGrants++;
        this.retries++;
        this.send();
        return;
      }
      const permit = new Permit(this.client, this.resource, response, this.model);
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
    let failure = mapError(error, 'acquire', this.resource);
    const elapsed = performance.now() - sentAt;
    if (error?.code === grpc.status.DEADLINE_EXCEEDED && elapsed - askedMs > DEADLINE_MARGIN_MS / 2) {
      // The coordinator owns the timeout and answers it itself; silence well past it is a dead or
      // unreachable coordinator, which callers must treat as unavailable, not slow.
      failure = new SluiceUnavailableError(`acquire on resource '${this.resource}' failed: the coordinator did not`
          + ` answer within ${humanMs(elapsed)} (asked to time out after ${humanMs(askedMs)}). Check`
          + ' that it is running and reachable', failure.code, failure.serverMessage, 'acquire', this.resource, error);
    }
    this.finish(failure);
  }

  /**
   * Whether a grant reached this client later than it stays fresh: what its call and answer spent
   * on the way (the round trip minus how long the node held the call) exceeds the least lately
   * seen by more than the grant's `freshFor`, and than ordinary jitter.
   */
  private late(response: AcquireResponse, sentAt: number): boolean {
    if (this.confirmed || !response.answeredAfter) {
      return false;
    }
    const now = performance.now();
    const excess = this.client.transit.excess(now - sentAt - toMs(response.answeredAfter), now);
    return !!response.freshFor && excess > Math.max(toMs(response.freshFor), LATE_FLOOR_MS);
  }

  /** UNAVAILABLE: send again, with the same request id, until the timeout runs out (a zero timeout still retries once). */
  private unavailable(error: grpc.ServiceError): void {
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
    const mapped = mapError(error, 'acquire', this.resource);
    this.finish(new SluiceUnavailableError(`${mapped.message}. No coordinator answered within the acquire's`
        + ` timeout of ${humanMs(this.timeoutMs)} (${this.retries + 1} attempt(s))`, mapped.code, mapped.serverMessage,
        'acquire', this.resource, error));
  }

  private abort(): void {
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
    this.client.unary<{ cancelled: boolean }>('cancel', this.resource, 2_000,
        (md, opts, cb) => this.client.coordinator.Cancel({ resource: this.resource, requestId: this.requestId }, md,
            opts, cb))
      .catch(() => call?.cancel()); // no coordinator to ask: cancel the call; its grant, if any, is lost with it
  }

  private abortedError(cause?: unknown): AcquireAbortedError {
    return new AcquireAbortedError(`acquire on resource '${this.resource}' was aborted by the caller: nothing`
        + ' was granted (a grant that raced with the abort was given back)', grpc.status.CANCELLED, '',
        'acquire', this.resource, cause ?? this.signal?.reason);
  }

  private finish(outcome: Permit | SluiceError): void {
    if (this.done) {
      return;
    }
    this.done = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    if (outcome instanceof Permit) {
      this.resolve(outcome);
    } else {
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
  private readonly groups = new Map<string, { permits: Map<string, Permit>; ttlMs: number; timer?: NodeJS.Timeout }>();

  constructor(private readonly client: SluiceClient) {}

  register(permit: Permit): void {
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

  unregister(permit: Permit): void {
    const group = this.groups.get(permit.resource);
    if (group !== undefined && group.permits.delete(permit.id) && group.permits.size === 0) {
      clearTimeout(group.timer);
      this.groups.delete(permit.resource);
    }
  }

  close(): void {
    for (const group of this.groups.values()) {
      clearTimeout(group.timer);
    }
    this.groups.clear();
  }

  private arm(resource: string): void {
    const group = this.groups.get(resource);
    if (group !== undefined) {
      const intervalMs = Math.max(1, group.ttlMs / 3);
      group.timer = setTimeout(() => this.tick(resource, intervalMs), intervalMs);
      group.timer.unref();
    }
  }

  private tick(resource: string, intervalMs: number): void {
    const group = this.groups.get(resource);
    if (group === undefined || this.client.isClosed()) {
      return;
    }
    this.arm(resource);
    const permitIds = [...group.permits.keys()];
    // A renewal answered after the next tick is worthless: the interval bounds its retries.
    this.client.unary<{ leaseTtl: Duration | null; expired: string[] }>('renew', resource, intervalMs,
        (md, opts, cb) => this.client.coordinator.Renew({ resource, permitIds }, md, opts, cb))
      .then((response) => {
        for (const id of response.expired) {
          const permit = group.permits.get(id);
          if (permit !== undefined) {
            permit.markExpired();
            this.unregister(permit);
            process.emitWarning(`lease of permit ${id} on '${resource}' has expired: its concurrency slot is gone`,
                'SluiceWarning');
          }
        }
        const ttlMs = toMs(response.leaseTtl);
        if (ttlMs > 0) {
          group.ttlMs = ttlMs; // from the next tick on
        }
      })
      .catch((e: Error) => process.emitWarning(`renewing ${permitIds.length} lease(s) on '${resource}' failed;`
          + ` retrying at the next tick: ${e.message}`, 'SluiceWarning'));
  }
}

function credentials(tls: boolean | TlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined || tls === false) {
    return grpc.credentials.createInsecure();
  }
  if (tls === true) {
    return grpc.credentials.createSsl();
  }
  return grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null);
}

/** The wire name of a lane (undefined: `default`); an unknown one throws naming the choices. */
function checkLane(lane: Lane | undefined): string {
  const l = lane ?? 'default';
  if (!(l in LANES)) {
    throw new TypeError(`lane must be one of ${Object.keys(LANES).join(', ')}, not ${String(l)}`);
  }
  return LANES[l];
}

function checkTimeout(ms: number, what: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new RangeError(`${what} must be a finite number of milliseconds >= 0, not ${String(ms)}`);
  }
  return ms;
}

/**
 * Only what JavaScript can get wrong on the way to an int64: the coordinator judges the values
 * themselves (negative, zero total, unknown dimension, above the burst) and says what is wrong.
 */
function checkLoad(load: Load, what: string): void {
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
