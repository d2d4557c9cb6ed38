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
 */
public record LimitSpec(
    String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl) {

  public LimitSpec {
    rates = List.copyOf(rates);
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
