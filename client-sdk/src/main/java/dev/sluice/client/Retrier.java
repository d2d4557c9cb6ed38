package dev.sluice.client;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * Sends a unary call again when it fails with UNAVAILABLE (its node died, the connection was
 * reset, or no node is up) or with a CANCELLED the node caused (see {@link #isRetryable}), with a
 * short backoff, until the call's time budget runs out. The channel's round_robin policy picks a
 * live node for each attempt. Every other status is an answer.
 *
 * <p>Backoff: 50 ms, doubling, at most 500 ms ({@link #backoffNanos}).
 */
final class Retrier {

  static final Duration FIRST_BACKOFF = Duration.ofMillis(50);
  static final Duration MAX_BACKOFF = Duration.ofMillis(500);

  /** How a retried call ended: {@code failure} is null on success. */
  interface Callback<T> {
    void done(T response, Throwable failure, int retries);
  }

  /** Sends one attempt with the given gRPC deadline, in nanoseconds from now. */
  interface Send<T> {
    void send(long deadlineNanos, StreamObserver<T> observer);
  }

  private final ScheduledExecutorService scheduler;
  private final LongSupplier ticker;

  Retrier(ScheduledExecutorService scheduler, LongSupplier ticker) {
    this.scheduler = scheduler;
    this.ticker = ticker;
  }

  /** The pause before retry number {@code retry + 1}: 50, 100, 200, 400, 500, 500, ... ms. */
  static long backoffNanos(int retry) {
    long first = FIRST_BACKOFF.toNanos();
    long max = MAX_BACKOFF.toNanos();
    return retry >= 10 ? max : Math.min(max, first << retry);
  }

  /**
   * UNAVAILABLE, or CANCELLED: a node that is killed resets its open streams with
   * {@code RST_STREAM(CANCEL)}, which gRPC reports as CANCELLED. The SDK never cancels a call whose
   * answer it still waits for, so such a CANCELLED came from the node's side. Also UNKNOWN
   * "channel closed": grpc-netty's status for a call whose frames could not be written because
   * the connection had just closed (a killed node), seen once in a three-node kill test.
   */
  static boolean isRetryable(Throwable t) {
    Status status = Status.fromThrowable(t);
    Status.Code code = status.getCode();
    return code == Status.Code.UNAVAILABLE || code == Status.Code.CANCELLED
        || code == Status.Code.UNKNOWN && closedChannel(status.getCause() != null ? status.getCause() : t);
  }

  private static boolean closedChannel(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
      if (c instanceof java.nio.channels.ClosedChannelException) {
        return true;
      }
    }
    return false;
  }

  /**
   * Runs {@code send} until it succeeds, fails with anything but UNAVAILABLE, or
   * {@code budgetNanos} would be exceeded by the next backoff.
   *
   * @param onUnavailable run after each UNAVAILABLE (the client notes a failover)
   */
  <T> void unary(long budgetNanos, Send<T> send, Runnable onUnavailable, Callback<T> callback) {
    new Call<>(ticker.getAsLong() + budgetNanos, true, send, onUnavailable, callback).attempt();
  }

  /** One attempt with a gRPC deadline of {@code deadlineNanos}, not retried. */
  <T> void once(long deadlineNanos, Send<T> send, Callback<T> callback) {
    new Call<>(ticker.getAsLong() + deadlineNanos, false, send, () -> { }, callback).attempt();
  }

  private final class Call<T> implements StreamObserver<T> {
    private final long deadline;
    private final boolean retry;
    private final Send<T> send;
    private final Runnable onUnavailable;
    private final Callback<T> callback;
    // Attempts never overlap: the next starts after the previous one's onError.
    private volatile int retries;
    private volatile T response;

    Call(long deadline, boolean retry, Send<T> send, Runnable onUnavailable, Callback<T> callback) {
      this.deadline = deadline;
      this.retry = retry;
      this.send = send;
      this.onUnavailable = onUnavailable;
      this.callback = callback;
    }

    void attempt() {
      try {
        send.send(Math.max(1, deadline - ticker.getAsLong()), this);
      } catch (RuntimeException e) {
        callback.done(null, e, retries);
      }
    }

    @Override
    public void onNext(T value) {
      response = value;
    }

    @Override
    public void onCompleted() {
      callback.done(response, null, retries);
    }

    @Override
    public void onError(Throwable t) {
      if (retry && isRetryable(t)) {
        onUnavailable.run();
        long backoff = backoffNanos(retries);
        if (deadline - ticker.getAsLong() > backoff) {
          retries++;
          try {
            scheduler.schedule(this::attempt, backoff, TimeUnit.NANOSECONDS);
            return;
          } catch (RejectedExecutionException e) {
            // The client is closing: report this failure.
          }
        }
      }
      callback.done(null, t, retries);
    }
  }
}
