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
 * @param tenants how the quota is shared between tenants ({@link TenantPolicy#NONE}: fair
 *     shares, weight 1 each)
 */
public record LimitSpec(
    String resource,
    List<RateSpec> rates,
    long concurrency,
    int maxWaiting,
    Duration leaseTtl,
    TenantPolicy tenants) {

  public LimitSpec {
    rates = List.copyOf(rates);
    tenants = tenants == null ? TenantPolicy.NONE : tenants;
  }

  /** A limit with no tenant policy of its own. */
  public LimitSpec(String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, TenantPolicy.NONE);
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
