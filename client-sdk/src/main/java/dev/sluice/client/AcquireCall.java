package dev.sluice.client;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One Acquire long-poll and the future that exposes it.
 *
 * <p>The cancel race. The caller can stop waiting (cancel the future, complete it some other way,
 * or be interrupted while blocked on it) at the very moment the coordinator's grant is on its way.
 * Cancelling the RPC cannot settle that race: once the server has sent its answer, a cancelled
 * call drops it unread and neither side knows. So the call is never cancelled while the server
 * is alive; instead:
 *
 * <ol>
 *   <li>When the future ends before any answer arrived, a {@code Cancel} RPC names this acquire's
 *       request id. If the waiter was still queued it leaves, and the Acquire call ends with
 *       CANCELLED. If it had been granted, the grant arrives on the still-open Acquire call.
 *   <li>When a grant arrives, it is handed over with {@code future.complete(permit)}. If that fails
 *       the caller has already given up, so nobody will ever close the permit: it is released at
 *       once with {@code unused = true}, giving the whole grant back.
 *   <li>Only if the Cancel RPC itself fails (the coordinator is gone) is the call cancelled.
 * </ol>
 *
 * {@code complete} is atomic, so exactly one of "the caller owns the permit" and "the permit is
 * released as unused" happens.
 */
final class AcquireCall implements ClientResponseObserver<AcquireRequest, AcquireResponse> {

  private static final Logger log = LoggerFactory.getLogger(AcquireCall.class);

  final CompletableFuture<Permit> future = new CompletableFuture<>();

  private final SluiceClient client;
  private final String resource;
  private final String requestId;
  private final Executor delivery;
  private final long started = System.nanoTime();
  private final long serverTimeoutNanos;
  private volatile ClientCallStreamObserver<AcquireRequest> call;
  // Set before the answer is handed over: after it, cancelling the RPC is pointless.
  private volatile boolean answered;

  AcquireCall(SluiceClient client, String resource, String requestId, Executor delivery) {
    this(client, resource, requestId, delivery, Long.MAX_VALUE);
  }

  /**
   * @param serverTimeoutNanos the timeout the coordinator was asked to enforce itself; a
   *     DEADLINE_EXCEEDED arriving well after it came from our own call deadline instead
   */
  AcquireCall(SluiceClient client, String resource, String requestId, Executor delivery, long serverTimeoutNanos) {
    this.serverTimeoutNanos = serverTimeoutNanos;
    this.client = client;
    this.resource = resource;
    this.requestId = requestId;
    this.delivery = delivery;
  }

  void start(CoordinatorGrpc.CoordinatorStub stub, AcquireRequest request) {
    stub.acquire(request, this);
    // beforeStart ran inside acquire(), so `call` is set. Registered after the start so that a
    // call failing at once is not also cancelled.
    future.whenComplete((permit, failure) -> {
      if (failure != null && !answered) {
        client.cancelWaiter(resource, requestId,
            () -> call.cancel("the caller stopped waiting for '" + resource + "'", failure));
      }
    });
  }

  /** The blocking caller gave up (was interrupted): cancel, or give back what already arrived. */
  void abandon() {
    if (!future.cancel(false) && !future.isCompletedExceptionally()) {
      ((GrpcPermit) future.join()).releaseUnused();
    }
  }

  @Override
  public void beforeStart(ClientCallStreamObserver<AcquireRequest> requestStream) {
    this.call = requestStream;
  }

  @Override
  public void onNext(AcquireResponse response) {
    answered = true;
    GrpcPermit permit = client.newPermit(resource, response);
    deliver(() -> {
      if (!future.complete(permit)) {
        permit.releaseUnused();
      }
    });
  }

  @Override
  public void onError(Throwable t) {
    answered = true;
    SluiceException mapped = Errors.map(t, "acquire", resource);
    long elapsed = System.nanoTime() - started;
    if (mapped instanceof AcquireTimeoutException
        && serverTimeoutNanos != Long.MAX_VALUE
        && elapsed - serverTimeoutNanos > SluiceClient.DEADLINE_MARGIN.toNanos() / 2) {
      // The coordinator owns the timeout and answers it itself; silence well past it means the
      // coordinator is hung or unreachable, which callers must treat as unavailable, not slow.
      mapped = new SluiceUnavailableException(
          "acquire on resource '" + resource + "' failed: the coordinator did not answer within "
              + java.time.Duration.ofNanos(elapsed).toMillis() + " ms (asked to time out after "
              + java.time.Duration.ofNanos(serverTimeoutNanos).toMillis() + " ms). Check that it is"
              + " running and reachable, or use another node", t);
    }
    SluiceException failure = mapped;
    deliver(() -> future.completeExceptionally(failure));
  }

  @Override
  public void onCompleted() {
    // Unary: onNext or onError has already settled the future.
  }

  private void deliver(Runnable completion) {
    try {
      delivery.execute(completion);
    } catch (RuntimeException e) {
      // A rejecting executor must not leak a grant: complete here, on the gRPC thread, instead.
      log.warn("the client's executor refused to run the completion of an acquire on '{}'; running it inline",
          resource, e);
      completion.run();
    }
  }
}
