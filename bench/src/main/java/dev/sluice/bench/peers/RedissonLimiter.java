package dev.sluice.bench.peers;

import static com.google.common.base.Preconditions.checkArgument;
import static java.util.Objects.requireNonNull;

import dev.sluice.bench.Limiter;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.redisson.Redisson;
import org.redisson.api.RRateLimiter;
import org.redisson.api.RateType;
import org.redisson.api.RedissonClient;
import org.redisson.config.Config;

/**
 * Redisson's {@link RRateLimiter} on Redis: one limiter, one hot key.
 *
 * <p>{@code trySetRate(OVERALL, permitsPerSecond, 1 s)}, then {@link #acquire()} is {@code
 * rateLimiter.acquire(1)}. Each attempt is one Lua script that keeps a sliding-window log (a
 * sorted set with one member per permit granted in the last interval, timestamped by the
 * client's clock). When the window is full the script answers how long until its oldest entry
 * expires; Redisson schedules a retry on its client-side timer after that delay and the caller
 * blocks on the future. So a waiter polls: there is no queue on the server, no FIFO, and every
 * waiter wakes at the same instant to race for the freed permits.
 *
 * <p>Redisson's defaults are kept (64 pooled connections, 32 Netty threads): that is what a user
 * of {@code Redisson.create} runs.
 */
public final class RedissonLimiter implements Limiter {

  private final RedissonClient redisson;
  private final RRateLimiter rateLimiter;

  /**
   * Connects to {@code redisUri} and creates a fresh limiter of {@code permitsPerSecond} over a
   * one-second sliding window.
   *
   * @throws IllegalArgumentException if {@code permitsPerSecond} is not positive
   */
  public RedissonLimiter(String redisUri, long permitsPerSecond) {
    requireNonNull(redisUri, "redisUri");
    checkArgument(permitsPerSecond > 0, "permitsPerSecond must be positive: %s", permitsPerSecond);
    Config config = new Config();
    config.useSingleServer().setAddress(redisUri);
    this.redisson = Redisson.create(config);
    try {
      this.rateLimiter = redisson.getRateLimiter("sluice-bench:redisson:" + UUID.randomUUID());
      if (!rateLimiter.trySetRate(RateType.OVERALL, permitsPerSecond, Duration.ofSeconds(1))) {
        throw new IllegalStateException("rate already set on a fresh key: " + rateLimiter);
      }
    } catch (RuntimeException | Error e) {
      redisson.shutdown(0, 2, TimeUnit.SECONDS);
      throw e;
    }
  }

  @Override
  public String name() {
    return "redisson";
  }

  @Override
  public String notes() {
    return "Redisson 4.7 RRateLimiter, RateType.OVERALL over a 1 s sliding window (a sorted-set log"
        + " of every permit in the window, one Lua script per attempt, client clock),"
        + " acquire(1) (its own-driver row: acquireAsync(1), many in flight): when full, the script returns"
        + " the delay until its oldest entry expires"
        + " and the client re-polls after it on its timer; no server-side queue, no FIFO, all"
        + " waiters retry at once. RRateLimiter.release(n) exists (returns permits to the"
        + " window) but is a refund, not a concurrency release, so it is not called. Cannot:"
        + " limit concurrency with leases, take several limits all-or-nothing, pause on"
        + " feedback.";
  }

  @Override
  public Object acquire() {
    rateLimiter.acquire(1);
    return null;
  }

  /** {@code acquireAsync(1)}: Redisson's own non-blocking call, what a reactive service uses. */
  @Override
  public boolean async() {
    return true;
  }

  @Override
  public CompletableFuture<Object> acquireAsync() {
    return rateLimiter.acquireAsync(1).toCompletableFuture().thenApply(v -> null);
  }

  @Override
  public void release(Object permit) {
    // A rate limit: finishing the call gives nothing back.
  }

  @Override
  public void close() {
    try {
      rateLimiter.delete();
    } finally {
      redisson.shutdown(0, 2, TimeUnit.SECONDS);
    }
  }
}
