package dev.sluice.examples.mock;

/**
 * One project's allowance in one {@link Dimension}. Not thread-safe: {@link RateLimiter} holds its
 * lock around every call. {@code now} is the mock's ticker in nanoseconds and never goes backwards.
 */
interface Meter {

  /** The limit this meter enforces, per its dimension's window. */
  long limit();

  /** Whether a request costing {@code amount} may be admitted now. */
  boolean canAdmit(long amount, long now);

  /** Debits an admitted request. */
  void take(long amount, long now);

  /** Debits one rejected request (RPM only), never below one bucket's worth of debt. */
  void takeRejected(long now);

  /** Nanoseconds until {@link #canAdmit} would hold for {@code amount}, 0 if it holds now. */
  long waitNanos(long amount, long now);

  /** What is left, expressed against {@link #limit()} as OpenAI's headers do; 0..limit. */
  long remaining(long now);

  /** Nanoseconds until the meter is full again. */
  long resetNanos(long now);

  /** How full the meter is: 1 when full, 0 when empty, negative when in debt (at least -1). */
  double fill(long now);
}
