package dev.sluice.server.engine;

import java.time.Duration;
import java.util.List;
import java.util.Map;

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
 * @param members for a pool, the resources it grants from, in order (empty for a resource of
 *     its own): a pool has no rates of its own; {@link PoolEngine} routes its acquires
 * @param owner the limits file that manages this limit, or null for one set by hand
 * @param holds held dimensions: each caps the sum of its dimension over the permits held at
 *     once (a weighted semaphore: what a permit holds comes back when it ends, never with time);
 *     names apart from the rates', in the order given
 */
public record LimitSpec(
    String resource,
    List<RateSpec> rates,
    long concurrency,
    int maxWaiting,
    Duration leaseTtl,
    Duration jitter,
    TenantPolicy tenants,
    LearnSpec learn,
    List<String> members,
    LimitOwner owner,
    Map<String, Long> holds) {

  public LimitSpec {
    rates = List.copyOf(rates);
    // Most limits hold nothing: the shared empty map, not a map of their own (a million limits).
    holds = holds == null || holds.isEmpty() ? Map.of()
        : java.util.Collections.unmodifiableMap(new java.util.LinkedHashMap<>(holds));
    tenants = tenants == null ? TenantPolicy.NONE : tenants;
    leaseTtl = Durations.shared(leaseTtl);
    jitter = Durations.shared(jitter);
    members = members == null ? List.of() : List.copyOf(members);
  }

  /** A limit without held dimensions. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl, Duration jitter,
      TenantPolicy tenants, LearnSpec learn, List<String> members, LimitOwner owner) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, owner, Map.of());
  }

  /** A limit no limits file manages. */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl, Duration jitter,
      TenantPolicy tenants, LearnSpec learn, List<String> members) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, null);
  }

  /** A resource of its own (not a pool). */
  public LimitSpec(
      String resource, List<RateSpec> rates, long concurrency, int maxWaiting, Duration leaseTtl, Duration jitter,
      TenantPolicy tenants, LearnSpec learn) {
    this(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, List.of());
  }

  /**
   * A pool of {@code members}: acquires on it wait in every member's waiting room at once and
   * are granted by whichever member grants first. Its leases, waiting rooms and tenant policy
   * are its members' own.
   */
  public static LimitSpec pool(String name, List<String> members) {
    return new LimitSpec(name, List.of(), 0, 0, Duration.ZERO, Duration.ZERO, TenantPolicy.NONE, null, members);
  }

  /** Whether this is a pool ({@link #members()} not empty). */
  public boolean isPool() {
    return !members.isEmpty();
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
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, owner, holds);
  }

  /** This limit with another tenant policy. */
  public LimitSpec withTenants(TenantPolicy tenants) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, owner, holds);
  }

  /** This limit with other rates and learn settings (a learned change). */
  LimitSpec withRates(List<RateSpec> rates, LearnSpec learn) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, owner, holds);
  }

  /** This limit managed by {@code owner} (null: by hand). */
  public LimitSpec withOwner(LimitOwner owner) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, owner, holds);
  }

  /** This limit with other held dimensions (see {@link #holds}). */
  public LimitSpec withHolds(Map<String, Long> holds) {
    return new LimitSpec(resource, rates, concurrency, maxWaiting, leaseTtl, jitter, tenants, learn, members, owner, holds);
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
