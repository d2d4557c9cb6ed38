package dev.sluice.client;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A permit the client granted itself while degraded. With {@link FailureMode#FAIL_OPEN} it has no
 * limiter and its close and settle do nothing; with {@link FailureMode#local} closing it gives
 * the local concurrency slot back and applies the settle to the local buckets.
 */
final class LocalPermit implements Permit {

  private final String id;
  private final String resource;
  private final Load granted;
  private final Duration waited;
  private final LocalLimiter limiter; // null: FAIL_OPEN
  private final AtomicBoolean ended = new AtomicBoolean();
  private volatile Load actual;

  LocalPermit(String id, String resource, Load granted, Duration waited, LocalLimiter limiter) {
    this.id = id;
    this.resource = resource;
    this.granted = granted;
    this.waited = waited;
    this.limiter = limiter;
  }

  @Override
  public String id() {
    return id;
  }

  @Override
  public String resource() {
    return resource;
  }

  @Override
  public Load granted() {
    return granted;
  }

  @Override
  public Duration waited() {
    return waited;
  }

  @Override
  public void settle(Load actual) {
    Objects.requireNonNull(actual, "actual must not be null; to settle nothing, do not call settle");
    if (ended.get()) {
      throw new IllegalStateException("permit " + id + " on '" + resource + "' is already closed; call settle() before close()");
    }
    this.actual = actual;
  }

  @Override
  public void close() {
    if (!ended.compareAndSet(false, true) || limiter == null) {
      return;
    }
    Load settled = actual;
    if (settled != null) {
      Map<String, Long> refund = new HashMap<>();
      settled.asMap().forEach((dimension, used) -> refund.put(dimension, granted.get(dimension) - used));
      limiter.adjust(refund);
    }
    limiter.releaseSlot();
  }

  /** The caller never got this permit: give everything back. */
  void releaseUnused() {
    if (!ended.compareAndSet(false, true) || limiter == null) {
      return;
    }
    limiter.adjust(granted.asMap());
    limiter.releaseSlot();
  }

  @Override
  public String toString() {
    return "local permit " + id + " on '" + resource + "': " + granted + ", granted after "
        + HumanDurations.format(waited) + " (the coordinator was away)";
  }
}
