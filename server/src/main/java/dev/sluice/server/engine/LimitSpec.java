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
 * @param tenants how the quota is shared between tenants ({@link TenantPolicy#NONE}: fair
 *     shares, weight 1 each)
 * @param learn how the rates follow the provider's headers, or null for a limit set by hand
 */
public record LimitSpec(
    String resource,
    List<RateSpec> rates,
    long concurrency,
    int maxWaiting,
    Duration leaseTtl,
    Duration jitter,
    TenantPolicy tenants,
    LearnSpec learn) {

  public LimitSpec {
    rates = List.copyOf(rates);
    tenants = tenants == null ? TenantPolicy.NONE : tenants;
  }

  /**
   * A limit set by hand, without jitter and without a tenant policy: its rates scheduled exactly
   * as configured (limits stored before either existed).
   */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, Duration.ZERO, TenantPolicy.NONE, null);
  }

  /** A limit set by hand without a tenant policy of its own. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl, Duration jitter) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, TenantPolicy.NONE, null);
  }

  /** A limit set by hand without jitter, with a tenant policy. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl,
      TenantPolicy tenants) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, Duration.ZERO, tenants, null);
  }

  /** A limit with jitter and a tenant policy, set by hand. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl, Duration jitter,
      TenantPolicy tenants) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, null);
  }

  /** A limit that follows the provider's headers ({@code learn}), without jitter or tenant policy. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl, LearnSpec learn) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, Duration.ZERO, TenantPolicy.NONE, learn);
  }

  /** This limit with other learn settings. */
  public LimitSpec withLearn(LearnSpec learn) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn);
  }

  /** This limit with other rates and learn settings (a learned change). */
  LimitSpec withRates(List<RateSpec> rates, LearnSpec learn) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn);
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
