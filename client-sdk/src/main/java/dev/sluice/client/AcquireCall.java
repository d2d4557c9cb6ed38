package dev.sluice.client;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * One acquire: its Acquire long-polls (one per attempt) and the future that exposes it.
 *
 * <p>Failover. An attempt that fails with UNAVAILABLE (its node died or shut down, the connection
 * was reset, or no node is up), or with CANCELLED while the caller still waits (a killed node
 * resets its streams), is sent again with the <em>same</em> request id, after a short
 * backoff ({@link Retrier#backoffNanos}), with what is left of the acquire's timeout; round_robin
 * sends it to a live node. The coordinators de-duplicate by request id, so a retried acquire is
 * never granted twice. Retries stop when the timeout runs out (the last one is made then, and a
 * zero timeout still gets one quick retry); the acquire then fails with
 * {@link SluiceUnavailableException}. While the client is degraded,
 * each UNAVAILABLE is first offered to the {@link Fallback} (FAIL_OPEN or LOCAL), which may
 * grant locally.
 *
 * <p>Silent nodes. With a list target, an attempt whose node fails a health probe is cut off by
 * the SDK ({@link ListNodes}) and ends with UNAVAILABLE, so it is retried like the above. That
 * is the one cancel made while the node may be alive but unreachable: a grant it sent just before
 * is lost with the connection, and the retry, which carries the same request id, gets that same
 * permit back from the shared (Redis) store; a node on its own memory store keeps such a grant
 * until its lease runs out.
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
 * released as unused" happens. A retry is never started once the future is done.
 */
final class AcquireCall {

  private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(AcquireCall.class);

  final CompletableFuture<Permit> future = new CompletableFuture<>();

  private final ClientRuntime client;
  private final String resource;
  private final Load load;
  private final String requestId;
  private final Executor delivery;
  private final long started;
  private final long timeoutNanos;
  private AcquireRequest request;
  private volatile Attempt current;
  // Set before the final answer is handed over: after it, cancelling the RPC is pointless.
  private volatile boolean answered;
  private int retries; // touched by one attempt chain at a time
  /** A late grant was confirmed ({@link #confirm}): the next one is taken as it comes. */
  private volatile boolean confirmed;
  /** Delays on the way shorter than this are ordinary jitter, never a reason to confirm. */
  static final Duration LATE_FLOOR = Duration.ofMillis(10);
  private boolean waitingForLocalSlot;

  /** For tests that drive the observer directly: no timeout, no retries. */
  AcquireCall(ClientRuntime client, String resource, String requestId, Executor delivery) {
    this(client, resource, Load.DEFAULT, requestId, delivery, Long.MAX_VALUE);
  }

  /**
   * @param timeoutNanos the acquire's own timeout, which the coordinator is asked to enforce;
   *     also the budget of retries
   */
  AcquireCall(ClientRuntime client, String resource, Load load, String requestId, Executor delivery, long timeoutNanos) {
    this.client = client;
    this.resource = resource;
    this.load = load;
    this.requestId = requestId;
    this.delivery = delivery;
    this.timeoutNanos = timeoutNanos;
    this.started = client.ticker().getAsLong();
  }

  /** Sends the first attempt of {@code request}, whose timeout each retry lowers. */
  void start(AcquireRequest request) {
    this.request = request;
    send();
    // Registered after the first start so that a call failing at once is not also cancelled.
    future.whenComplete((permit, failure) -> {
      if (failure != null && !answered) {
        client.cancelWaiter(resource, requestId, () -> {
          Attempt a = current;
          if (a != null && a.call != null) {
            a.call.cancel("the caller stopped waiting for '" + resource + "'", failure);
          }
        });
      }
    });
  }

  /** The blocking caller gave up (was interrupted): cancel, or give back what already arrived. */
  void abandon() {
    if (!future.cancel(false) && !future.isCompletedExceptionally()) {
      giveBack(future.join());
    }
  }

  /** Test hook: a grant arriving on the current attempt. */
  void onNext(AcquireResponse response) {
    new Attempt(Long.MAX_VALUE).onNext(response);
  }

  private long remainingNanos() {
    if (timeoutNanos == Long.MAX_VALUE) {
      return Long.MAX_VALUE;
    }
    return Math.max(0, timeoutNanos - (client.ticker().getAsLong() - started));
  }

  private void send() {
    long remaining = remainingNanos();
    // The server owns the timeout and answers DEADLINE_EXCEEDED itself; the margin only ends a
    // call to a coordinator that died or hangs.
    long margin = client.deadlineMargin().toNanos();
    long deadline = remaining > Long.MAX_VALUE - margin ? Long.MAX_VALUE : remaining + margin;
    AcquireRequest attemptRequest = retries == 0
        ? request
        : request.toBuilder().setTimeout(Protos.toProto(Duration.ofNanos(remaining))).build();
    Attempt attempt = new Attempt(remaining);
    current = attempt;
    try {
      SessionLink session = client.session();
      if (session != null) {
        attempt.giveUpAt = deadline == Long.MAX_VALUE ? Long.MAX_VALUE : attempt.attemptStarted + deadline;
        session.acquire(attemptRequest, attempt);
      } else {
        client.stub().withDeadlineAfter(deadline, TimeUnit.NANOSECONDS).acquire(attemptRequest, attempt);
      }
    } catch (RuntimeException e) {
      attempt.onError(e);
    }
  }

  /** An attempt failed with UNAVAILABLE: fall back, retry, or give up. */
  private void unavailable(Throwable t) {
    client.failoverNoticed();
    if (future.isDone()) {
      return;
    }
    long remaining = remainingNanos();
    if (client.isDegraded()) {
      Fallback.Outcome outcome = client.fallback()
          .acquire(resource, load, requestId, client.ticker().getAsLong() - started, remaining);
      switch (outcome.kind()) {
        case GRANTED:
          grantLocally(outcome);
          return;
        case TOO_LATE:
          fail(new AcquireTimeoutException("acquire on resource '" + resource + "' failed: no coordinator"
              + " answers and the local limiter of degraded mode " + client.fallback().mode() + " cannot grant "
              + load + " within the " + HumanDurations.formatNanos(remaining) + " left. Nothing was granted;"
              + " retry later, raise the timeout, or lower the load", t), remaining);
          return;
        case NO_SLOT:
          waitingForLocalSlot = true;
          break; // retry the cluster; a local slot may free up meanwhile
        case CLOSED:
        default:
          waitingForLocalSlot = false;
          break;
      }
    }
    // The last retry is made when the timeout runs out (asking the coordinator to try once), so a
    // node that is back by then still grants. A zero timeout still gets one quick retry.
    if (remaining > 0 || retries == 0) {
      long backoff = retries == 0 ? Retrier.backoffNanos(0) : Math.min(Retrier.backoffNanos(retries), remaining);
      retries++;
      try {
        client.scheduler().schedule(() -> {
          if (!future.isDone()) {
            send();
          }
        }, backoff, TimeUnit.NANOSECONDS);
        return;
      } catch (RejectedExecutionException e) {
        // The client is closing: fail below.
      }
    }
    answered = true;
    if (waitingForLocalSlot) {
      SluiceException timeout = new AcquireTimeoutException("acquire on resource '" + resource + "' failed: no"
          + " coordinator answers and every local concurrency slot of degraded mode " + client.fallback().mode()
          + " stayed held for the acquire's timeout. Nothing was granted; retry later or raise the timeout", t);
      deliver(() -> future.completeExceptionally(timeout));
      return;
    }
    SluiceException mapped = Errors.map(t, "acquire", resource);
    SluiceException failure = new SluiceUnavailableException(mapped.getMessage() + ". No node answered within"
        + " the acquire's timeout of " + HumanDurations.formatNanos(timeoutNanos == Long.MAX_VALUE ? 0 : timeoutNanos)
        + " (" + (retries + 1) + " attempt(s)); failure mode " + client.fallback().mode() + ".", t);
    deliver(() -> future.completeExceptionally(failure));
  }

  private void grantLocally(Fallback.Outcome outcome) {
    LocalPermit permit = outcome.permit();
    answered = true;
    Runnable hand = () -> deliver(() -> {
      if (!future.complete(permit)) {
        permit.releaseUnused();
      }
    });
    if (outcome.delayNanos() <= 0) {
      hand.run();
      return;
    }
    try {
      client.scheduler().schedule(hand, outcome.delayNanos(), TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      permit.releaseUnused();
      deliver(() -> future.completeExceptionally(new IllegalStateException("this SluiceClient is closed; build a new one")));
    }
  }

  /** Fails like the coordinator would: when the timeout runs out, not before. */
  private void fail(SluiceException failure, long afterNanos) {
    answered = true;
    Runnable hand = () -> deliver(() -> future.completeExceptionally(failure));
    if (afterNanos <= 0) {
      hand.run();
      return;
    }
    try {
      client.scheduler().schedule(hand, afterNanos, TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      hand.run();
    }
  }

  private static void giveBack(Permit permit) {
    if (permit instanceof GrpcPermit p) {
      p.releaseUnused();
    } else if (permit instanceof LocalPermit p) {
      p.releaseUnused();
    }
  }

  private void deliver(Runnable completion) {
    ClientRuntime.deliver(delivery, completion, "acquire", resource);
  }


  /**
   * Whether a grant reached this client later than it stays fresh: the time its call and its
   * answer spent on the way exceeds the least lately seen ({@link Transit}) by more than the
   * grant's {@code fresh_for} (and {@link #LATE_FLOOR}, below which delays are ordinary jitter).
   * Only the first grant of an acquire is judged: the answer to its confirmation is taken as
   * it comes, so a slow network costs one round trip, never a loop.
   */
  private boolean late(AcquireResponse response, long attemptStarted) {
    if (!response.hasAnsweredAfter() || confirmed) {
      return false;
    }
    long now = client.ticker().getAsLong();
    long onTheWay = now - attemptStarted - Protos.toJava(response.getAnsweredAfter()).toNanos();
    long excess = client.transit().excess(onTheWay, now);
    return response.hasFreshFor()
        && excess > Math.max(Protos.toJava(response.getFreshFor()).toNanos(), LATE_FLOOR.toNanos());
  }

  /**
   * Confirms a late grant: the acquire is sent again at once with its request id. The node hands
   * over the same permit if it is still fresh on the coordinator's clock, or forfeits it (its
   * tokens stay spent: they were the moment that passed) and keeps this acquire at the head of
   * its lane for fresh capacity (see the Coordinator's {@code fresh_for}). False when it is not
   * sent (the caller stopped waiting, the client is closing): the grant is then handled as any
   * other, given back if nobody takes it.
   */
  private boolean confirm(AcquireResponse response) {
    confirmed = true;
    if (future.isDone()) {
      return false; // nobody waits for it: given back below, as any grant that comes too late
    }
    long n = client.lateGrant();
    log.debug("a grant on '{}' reached this client late; confirming it with request id {} ({} so far)",
        resource, requestId, n);
    retries++;
    try {
      client.scheduler().execute(() -> {
        if (!future.isDone()) {
          send();
        } else {
          client.newPermit(resource, response).releaseUnused(); // the caller left meanwhile
        }
      });
      return true;
    } catch (RejectedExecutionException e) {
      return false; // closing: handed over as it is (and given back, the caller being gone)
    }
  }

  /** One Acquire RPC, or one acquire on the client's session stream. */
  private final class Attempt implements ClientResponseObserver<AcquireRequest, AcquireResponse>,
      SessionLink.Waiter {
    private final long attemptStarted = client.ticker().getAsLong();
    private final long serverTimeoutNanos;
    volatile ClientCallStreamObserver<AcquireRequest> call; // null on a session
    long giveUpAt = Long.MAX_VALUE; // session only: set before it is sent

    @Override
    public long giveUpAt() {
      return giveUpAt;
    }

    @Override
    public String resource() {
      return resource;
    }

    Attempt(long serverTimeoutNanos) {
      this.serverTimeoutNanos = serverTimeoutNanos;
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<AcquireRequest> requestStream) {
      this.call = requestStream;
    }

    @Override
    public void onNext(AcquireResponse response) {
      if (late(response, attemptStarted) && confirm(response)) {
        return;
      }
      answered = true;
      GrpcPermit permit = client.newPermit(resource, request == null ? "" : request.getModel(), response);
      client.fallback().granted(resource);
      deliver(() -> {
        if (!future.complete(permit)) {
          permit.releaseUnused();
        }
      });
    }

    @Override
    public void onError(Throwable t) {
      // A CANCELLED while the caller still waits came from a killed node (see Retrier).
      if (Retrier.isRetryable(t) && !answered && !future.isDone()) {
        unavailable(t);
        return;
      }
      answered = true;
      SluiceException mapped = Errors.map(t, "acquire", resource);
      long elapsed = client.ticker().getAsLong() - attemptStarted;
      if (mapped instanceof AcquireTimeoutException
          && serverTimeoutNanos != Long.MAX_VALUE
          && elapsed - serverTimeoutNanos > client.deadlineMargin().toNanos() / 2) {
        // The coordinator owns the timeout and answers it itself; silence well past it means the
        // coordinator is hung or unreachable, which callers must treat as unavailable, not slow.
        mapped = new SluiceUnavailableException(
            "acquire on resource '" + resource + "' failed: the coordinator did not answer within "
                + HumanDurations.formatNanos(elapsed) + " (asked to time out after "
                + HumanDurations.formatNanos(serverTimeoutNanos) + "). Check that it is"
                + " running and reachable, or use another node", t);
      }
      SluiceException failure = mapped;
      deliver(() -> future.completeExceptionally(failure));
    }

    @Override
    public void onCompleted() {
      // Unary: onNext or onError has already settled the future.
    }
  }
}
