package dev.sluice.client;

import dev.sluice.proto.v1.EstimateResponse;
import java.time.Duration;
import java.util.Objects;
import java.util.Optional;

/**
 * The coordinator's estimate of when an acquire made now would be granted ({@link
 * SluiceClient#estimate}): from the load its tenant has queued ahead and the refill, within the
 * tenant's share and cap, and after any timed pause. An estimate, not a promise: aging, later
 * arrivals of other tenants, settles and the concurrency cap are left out. Also what an acquire
 * with {@link AcquireOptions.Builder#failIfLate()} was refused with ({@link
 * AcquireTimeoutException#estimate()}).
 */
public final class WaitEstimate {

  private static final WaitEstimate PAUSED = new WaitEstimate(null);

  private final Duration expectedWait; // null when paused until resumed

  private WaitEstimate(Duration expectedWait) {
    this.expectedWait = expectedWait;
  }

  static WaitEstimate of(EstimateResponse response) {
    return response.getPaused() ? PAUSED : new WaitEstimate(Protos.toJava(response.getWait()));
  }

  /**
   * How long from now the grant is expected: zero when at once; empty when the resource is
   * {@linkplain #paused() paused until resumed}.
   */
  public Optional<Duration> expectedWait() {
    return Optional.ofNullable(expectedWait);
  }

  /**
   * Whether the resource is paused until an admin resumes it: no wait can be estimated, only a
   * resume can help. (A pause for a while, such as after an upstream 429, is part of {@link
   * #expectedWait()}.)
   */
  public boolean paused() {
    return expectedWait == null;
  }

  /**
   * Whether an acquire with this {@code timeout} is expected to be granted in time: not paused,
   * and the expected wait at most the timeout. What {@link AcquireOptions.Builder#failIfLate()}
   * asks the coordinator to check.
   */
  public boolean fits(Duration timeout) {
    Objects.requireNonNull(timeout, "timeout");
    return expectedWait != null && expectedWait.compareTo(timeout) <= 0;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof WaitEstimate w && Objects.equals(expectedWait, w.expectedWait);
  }

  @Override
  public int hashCode() {
    return Objects.hashCode(expectedWait);
  }

  /** {@code 4.2 s}, or {@code paused until resumed}. */
  @Override
  public String toString() {
    return expectedWait == null ? "paused until resumed" : HumanDurations.format(expectedWait);
  }
}
