package dev.sluice.server;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CancelRequest;
import dev.sluice.proto.v1.CancelResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.DescribeResponse;
import dev.sluice.proto.v1.EstimateRequest;
import dev.sluice.proto.v1.EstimateResponse;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.ReleaseResponse;
import dev.sluice.proto.v1.RenewRequest;
import dev.sluice.proto.v1.RenewResponse;
import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import dev.sluice.proto.v1.SessionRequest;
import dev.sluice.proto.v1.SessionResponse;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.FailIfLate;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Ticket;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.stub.ServerCallStreamObserver;
import dev.sluice.server.http.PoolMeters;
import dev.sluice.server.limits.LimitChanges;
import dev.sluice.server.price.Costs;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The worker service: a thin mapping onto the {@link Engine}. Runs on the transport threads,
 * never blocks; a parked acquire is a {@link Ticket}, not a thread.
 */
final class CoordinatorService extends CoordinatorGrpc.CoordinatorImplBase {

  private final Engine engine;
  private final long maxWaitNanos;
  private final ConnectionWaiters waiters;
  private final Costs costs;
  private final PoolMeters poolMeters;
  private final LimitChanges changes;

  CoordinatorService(Engine engine, long maxWaitNanos) {
    this(engine, maxWaitNanos, null);
  }

  /** @param waiters the per-connection cap on parked acquires; null for none */
  CoordinatorService(Engine engine, long maxWaitNanos, ConnectionWaiters waiters) {
    this(engine, maxWaitNanos, waiters, new Costs(engine, null));
  }

  /** @param costs prices loads that name a model (see {@link Costs}) */
  CoordinatorService(Engine engine, long maxWaitNanos, ConnectionWaiters waiters, Costs costs) {
    this(engine, maxWaitNanos, waiters, costs, new PoolMeters(null, 0));
  }

  /** @param poolMeters counts the pool grants handed over, per member */
  CoordinatorService(Engine engine, long maxWaitNanos, ConnectionWaiters waiters, Costs costs, PoolMeters poolMeters) {
    this(engine, maxWaitNanos, waiters, costs, poolMeters, new LimitChanges(engine));
  }

  /** @param changes where a learned change of a limit is logged and kept, as any other */
  CoordinatorService(Engine engine, long maxWaitNanos, ConnectionWaiters waiters, Costs costs, PoolMeters poolMeters,
      LimitChanges changes) {
    this.changes = changes;
    this.poolMeters = poolMeters;
    this.engine = engine;
    this.maxWaitNanos = maxWaitNanos;
    this.waiters = waiters;
    this.costs = costs;
  }

  @Override
  public void acquire(AcquireRequest req, StreamObserver<AcquireResponse> observer) {
    long arrived = System.nanoTime();
    var call = (ServerCallStreamObserver<AcquireResponse>) observer;
    Ticket ticket;
    try {
      ticket = start(req, Context.current().getDeadline());
    } catch (RuntimeException e) {
      observer.onError(Statuses.of(e));
      return;
    }
    // Disconnects, client cancels and client deadlines all land here.
    call.setOnCancelHandler(ticket::cancel);
    ticket
        .future()
        .whenComplete(
            (grant, error) -> {
              if (error != null) {
                if (!call.isCancelled()) {
                  observer.onError(Statuses.of(error));
                }
                return;
              }
              if (call.isCancelled() || !ticket.claim()) {
                ticket.cancel(); // gives the grant back
                return;
              }
              observer.onNext(handOver(req, grant, arrived));
              observer.onCompleted();
            });
  }

  @Override
  public StreamObserver<SessionRequest> session(StreamObserver<SessionResponse> observer) {
    // With a direct executor this runs on the stream's transport thread: on Netty, its event loop.
    return new Session(this, engine, observer, io.netty.util.internal.ThreadExecutorMap.currentExecutor());
  }

  /**
   * Starts an acquire, unary or in a session: its timeout is the request's, capped by the server's
   * maximum wait and by the call's deadline (null for none).
   */
  Ticket start(AcquireRequest req, Deadline deadline) {
    Principal.checkResource(req.getResource());
    String tenant = Principal.checkTenant(req.getTenant());
    long timeout = req.hasTimeout() ? Protos.nanos(req.getTimeout(), "timeout") : maxWaitNanos;
    timeout = Math.min(timeout, maxWaitNanos);
    if (deadline != null) {
      timeout = Math.max(0, Math.min(timeout, deadline.timeRemaining(TimeUnit.NANOSECONDS)));
    }
    long wait = timeout;
    var lane = Protos.lane(req.getLane());
    Ticket ticket = costs.acquire(req.getResource(), req.getLoadMap(), req.getModel(), load -> req.getFailIfLate()
        ? FailIfLate.acquire(engine, req.getResource(), load, lane, wait, req.getRequestId(), tenant)
        : engine.acquire(req.getResource(), load, lane, wait, req.getRequestId(), tenant));
    if (waiters != null) {
      waiters.track(ticket);
    }
    return ticket;
  }

  /** The answer to {@code req}, granted: counted in the pool meters when a pool's member granted it. */
  AcquireResponse handOver(AcquireRequest req, Grant g, long arrivedNanos) {
    poolMeters.handedOver(req.getResource(), g.resource());
    return response(g, arrivedNanos);
  }

  /** The answer to an acquire that reached this node at {@code arrivedNanos} (System.nanoTime). */
  static AcquireResponse response(Grant g, long arrivedNanos) {
    AcquireResponse.Builder b = AcquireResponse.newBuilder()
        .setPermitId(g.permitId())
        .setMember(g.resource())
        .setLeaseTtl(Protos.duration(g.leaseTtlNanos()))
        .putAllGranted(g.load())
        .setWaited(Protos.duration(g.waitedNanos()))
        .setAnsweredAfter(Protos.duration(Math.max(0, System.nanoTime() - arrivedNanos)));
    if (g.freshNanos() >= 0) {
      b.setFreshFor(Protos.duration(g.freshNanos()));
    }
    return b.build();
  }

  @Override
  public void cancel(CancelRequest req, StreamObserver<CancelResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          Principal.checkResource(req.getResource());
          return engine.cancel(req.getResource(), req.getRequestId());
        },
        cancelled -> CancelResponse.newBuilder().setCancelled(cancelled).build());
  }

  @Override
  public void release(ReleaseRequest req, StreamObserver<ReleaseResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          Principal.checkResource(req.getResource());
          return release(req);
        },
        released -> ReleaseResponse.newBuilder().setReleased(released).build());
  }

  /** Ends a permit, its settle priced by {@link Costs} when it names a model or token counts. */
  CompletableFuture<Boolean> release(ReleaseRequest req) {
    CompletableFuture<Map<String, Long>> actual = req.getSettle() && !req.getUnused()
        ? costs.actual(req.getResource(), req.getActualMap(), req.getModel())
        : CompletableFuture.completedFuture(req.getActualMap());
    return actual.thenCompose(a -> engine.release(req.getResource(), req.getPermitId(), a, req.getSettle(),
        req.getUnused()));
  }

  @Override
  public void renew(RenewRequest req, StreamObserver<RenewResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          Principal.checkResource(req.getResource());
          return engine
              .renew(req.getResource(), req.getPermitIdsList())
              .thenCompose(
                  expired ->
                      engine
                          .leaseTtlNanos(req.getResource())
                          .thenApply(
                              lease ->
                                  RenewResponse.newBuilder()
                                      .setLeaseTtl(Protos.duration(lease))
                                      .addAllExpired(expired)
                                      .build()));
        },
        r -> r);
  }

  @Override
  public void report(ReportRequest req, StreamObserver<ReportResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          Principal.checkResource(req.getResource());
          long retryAfter =
              req.hasRetryAfter() ? Protos.nanos(req.getRetryAfter(), "retry_after") : 1_000_000_000L;
          return changes.report(req.getResource(), req.getThrottled(), retryAfter, req.getRemainingMap(),
              req.getLimitsMap(), System.currentTimeMillis());
        },
        paused -> {
          ReportResponse.Builder b = ReportResponse.newBuilder();
          if (paused > 0) {
            b.setPausedFor(Protos.duration(paused));
          }
          return b.build();
        });
  }

  /** The tenant is the key's when it is bound to one, as on acquire; the answer as {@link Protos#estimate}. */
  @Override
  public void estimate(EstimateRequest req, StreamObserver<EstimateResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          Principal.checkResource(req.getResource());
          String tenant = Principal.checkTenant(req.getTenant());
          return engine.estimate(req.getResource(), req.getLoadMap(), Protos.lane(req.getLane()), tenant);
        },
        Protos::estimate);
  }

  @Override
  public void describe(DescribeRequest req, StreamObserver<DescribeResponse> observer) {
    Statuses.reply(
        observer,
        () -> {
          Principal.checkResource(req.getResource());
          return engine.getLimit(req.getResource());
        },
        limit ->
            DescribeResponse.newBuilder()
                .setLimit(
                    Protos.limit(
                        limit.orElseThrow(
                            () ->
                                new EngineException(
                                    EngineException.Reason.NOT_FOUND,
                                    "resource '" + req.getResource() + "' has no limit: create one with"
                                        + " `sluice limit set`, or check the name"))))
                .build());
  }
}
