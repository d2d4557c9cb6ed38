package dev.sluice.buffers;

import java.time.Duration;
import java.util.function.DoubleSupplier;

/** Retry delays of a buffer's items. */
public final class Backoff {

  /** How delays grow. */
  public enum Kind {
    /** {@code base * 2^(n-1)} capped at max, with equal jitter: uniform in [0.5, 1] of that. */
    EXPONENTIAL,
    /** Always {@code base}. */
    FIXED
  }

  private Backoff() {}

  /**
   * The delay before retry {@code n} (1 for the first retry).
   *
   * @param random uniform in [0, 1): the jitter (tests pass fixed values)
   */
  static Duration delay(Kind kind, Duration base, Duration max, int n, DoubleSupplier random) {
    if (kind == Kind.FIXED) {
      return base;
    }
    double ceiling = Math.min(max.toNanos(), base.toNanos() * Math.pow(2, Math.max(0, n - 1)));
    // Half fixed, half random ("equal jitter"): retries spread out, yet never come back at once.
    return Duration.ofNanos((long) (ceiling * (0.5 + 0.5 * random.getAsDouble())));
  }
}
