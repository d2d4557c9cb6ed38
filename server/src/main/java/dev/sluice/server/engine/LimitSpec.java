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
 * @param learn how the rates follow the provider's headers, or null for a limit set by hand
 */
public record LimitSpec(
    String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl,
    LearnSpec learn) {

  public LimitSpec {
    rates = List.copyOf(rates);
  }

  /** A limit set by hand, not learned. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, null);
  }

  /** This limit with other learn settings. */
  public LimitSpec withLearn(LearnSpec learn) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, learn);
  }

  /** This limit with other rates and learn settings (a learned change). */
  LimitSpec withRates(List<RateSpec> rates, LearnSpec learn) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, learn);
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
}
