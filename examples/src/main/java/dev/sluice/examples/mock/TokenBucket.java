package dev.sluice.examples.mock;

/**
 * A continuous token bucket: it refills at {@code limit / window}, holds at most {@code capacity},
 * and starts full. A request needs {@code min(amount, capacity)} in the bucket and then takes all
 * of {@code amount}, so a request bigger than the capacity (but not than the limit, which {@link
 * RateLimiter} checks first) gets in only when the bucket is full and leaves it in debt.
 *
 * <p>Refill is computed as {@code elapsed × limit / window} rather than with a precomputed rate so
 * that whole seconds of a per-minute limit refill exactly {@code limit / 60}.
 */
final class TokenBucket implements Meter {

  /**
   * Slack relative to the capacity, so that rounding never refuses a request after exactly {@link
   * #waitNanos}. It is far above double rounding (~1e-16 relative) and, for any burst under 1000 s,
   * below what one nanosecond refills, so it never admits a nanosecond early.
   */
  private static final double EPSILON = 1e-12;

  private final long limit;
  private final long windowNanos;
  private final double capacity;
  private double level;
  private long lastNanos;

  /**
   * @param fill how full to start, as {@link #fill}: 1 is full
   */
  TokenBucket(long limit, long windowNanos, double capacity, double fill, long now) {
    this.limit = limit;
    this.windowNanos = windowNanos;
    this.capacity = capacity;
    this.level = Math.max(-1, Math.min(1, fill)) * capacity;
    this.lastNanos = now;
  }

  @Override
  public long limit() {
    return limit;
  }

  double level(long now) {
    refill(now);
    return level;
  }

  private void refill(long now) {
    if (now > lastNanos) {
      level = Math.min(capacity, level + (double) (now - lastNanos) * limit / windowNanos);
      lastNanos = now;
    }
  }

  private double need(long amount) {
    return Math.min(amount, capacity);
  }

  @Override
  public boolean canAdmit(long amount, long now) {
    refill(now);
    double need = need(amount);
    return level + EPSILON * capacity >= need;
  }

  @Override
  public void take(long amount, long now) {
    refill(now);
    level -= amount;
  }

  /** Puts back what an admitted request reserved but did not use, never above the capacity. */
  void give(long amount, long now) {
    refill(now);
    level = Math.min(capacity, level + amount);
  }

  @Override
  public void takeRejected(long now) {
    refill(now);
    level = Math.max(-capacity, level - 1);
  }

  @Override
  public long waitNanos(long amount, long now) {
    if (canAdmit(amount, now)) {
      return 0;
    }
    return (long) Math.ceil((need(amount) - level) * windowNanos / limit);
  }

  @Override
  public long remaining(long now) {
    refill(now);
    long remaining = (long) Math.floor(level / capacity * limit + 1e-9);
    return Math.max(0, Math.min(limit, remaining));
  }

  @Override
  public long resetNanos(long now) {
    refill(now);
    return (long) Math.ceil((capacity - level) * windowNanos / limit);
  }

  @Override
  public double fill(long now) {
    refill(now);
    return Math.max(-1, level / capacity);
  }
}
