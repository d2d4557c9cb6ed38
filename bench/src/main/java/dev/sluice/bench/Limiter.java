package dev.sluice.bench;

import java.util.concurrent.CompletableFuture;

/**
 * One system under test, reduced to the shape every peer shares: take one permit for one call
 * of one hot key, then give it back. The load generator drives every system through this, so
 * each gets the same workload.
 *
 * <p>Systems that queue (Sluice) block in {@link #acquire()} until granted. Systems that only
 * answer yes/no (Sentinel, Bucket4j's tryConsume) are driven in the mode they document for
 * waiting, or retried with their own hint; the implementation says which in {@link #notes()}.
 */
public interface Limiter extends AutoCloseable {

  /** Short name for tables, e.g. {@code sluice-memory} or {@code bucket4j-lettuce}. */
  String name();

  /** How this system was driven and what it cannot do (no queue, no release, ...). */
  String notes();

  /**
   * Takes one permit, waiting if the system waits. Returns what {@link #release} needs, or
   * {@code null} when the system has nothing to release.
   *
   * @throws Exception if the system refused or failed; the load generator counts it as an error
   */
  Object acquire() throws Exception;

  /**
   * Whether this system's own users drive it through an asynchronous API ({@link
   * #acquireAsync()}), so it also gets a row driven that way: many acquires in flight without a
   * thread each. Systems whose API blocks (Guava, Sentinel's token client) are driven by their
   * users as the shared driver drives them: threads.
   */
  default boolean async() {
    return false;
  }

  /**
   * Starts taking one permit without blocking; completes with what {@link #release} needs (or
   * {@code null}), or exceptionally as {@link #acquire()} would throw.
   *
   * @throws UnsupportedOperationException if {@link #async()} is false
   */
  default CompletableFuture<Object> acquireAsync() throws Exception {
    throw new UnsupportedOperationException(name() + " has no asynchronous acquire: its users call acquire() in"
        + " threads");
  }

  /** Gives back what {@link #acquire()} returned (no-op for systems without release). */
  void release(Object permit) throws Exception;

  @Override
  void close() throws Exception;
}
