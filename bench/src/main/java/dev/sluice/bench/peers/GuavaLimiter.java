package dev.sluice.bench.peers;

import static com.google.common.base.Preconditions.checkArgument;

import com.google.common.util.concurrent.RateLimiter;
import dev.sluice.bench.Limiter;

/**
 * Guava's {@link RateLimiter} in this process: the bound with no network at all.
 *
 * <p>{@link #acquire()} is {@code rateLimiter.acquire()}: Guava reserves the next free slot under
 * one lock and sleeps the caller until it (a reservation queue in time, FIFO by arrival at the
 * lock, inside this JVM only). A refused caller never exists: every call waits as long as it
 * takes. Release is a no-op.
 */
public final class GuavaLimiter implements Limiter {

  private final RateLimiter rateLimiter;

  /**
   * Creates a limiter granting {@code permitsPerSecond} permits a second, in this process only.
   *
   * @throws IllegalArgumentException if {@code permitsPerSecond} is not positive
   */
  public GuavaLimiter(long permitsPerSecond) {
    checkArgument(permitsPerSecond > 0, "permitsPerSecond must be positive: %s", permitsPerSecond);
    this.rateLimiter = RateLimiter.create(permitsPerSecond);
  }

  @Override
  public String name() {
    return "guava-inprocess";
  }

  @Override
  public String notes() {
    return "Guava RateLimiter.acquire() in the load generator's own JVM, no network: the floor"
        + " any coordinator is measured against. Waits by reserving the next slot under a lock"
        + " and sleeping until it (in-process FIFO by reservation). Cannot: coordinate across"
        + " processes, queue across processes, take several limits all-or-nothing, limit"
        + " concurrency (no release), refund or settle, pause on feedback.";
  }

  @Override
  public Object acquire() {
    rateLimiter.acquire();
    return null;
  }

  @Override
  public void release(Object permit) {
    // A rate limiter has nothing to give back.
  }

  @Override
  public void close() {
    // Nothing held.
  }
}
