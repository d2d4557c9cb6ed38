package dev.sluice.server.engine;

import java.time.Duration;
import java.util.List;

/**
 * What a resource allows. Immutable; built and checked by {@link Validation#limit}.
 *
 * @param resource the resource name
 * @param rates rate dimensions, names unique, possibly empty when {@code concurrency > 0}
 * @param concurrency permits held at once; 0 means no cap
 * @param maxWaiting size of the waiting room
 * @param leaseTtl how long a permit's lease lasts without renewal
 * @param jitter how late a granted call may reach the upstream and still fit its limit; each
 *     rate is scheduled at its {@linkplain RateSpec effective rate} for it.
 *     Zero leaves the rates as configured; null (on input only) asks {@link Validation#limit}
 *     for the default
 */
public record LimitSpec(
    String resource,
    List<RateSpec> rates,
    long concurrency,
    int maxWaiting,
    Duration leaseTtl,
    Duration jitter) {

  public LimitSpec {
    rates = List.copyOf(rates);
  }

  /** A limit without jitter: its rates scheduled exactly as configured (limits stored before jitter existed). */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, Duration.ZERO);
  }

  /** The dimension with this name, or null. */
  public RateSpec rate(String name) {
    for (RateSpec r : rates) {
      if (r.name().equals(name)) {
        return r;
      }
    }
    return null;
  }

  /** The jitter in nanoseconds, 0 when none. */
  long jitterNanos() {
    return jitter == null ? 0 : jitter.toNanos();
  }
}
