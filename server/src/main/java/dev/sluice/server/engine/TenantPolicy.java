package dev.sluice.server.engine;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * How one limit shares its quota between tenants: weights for fair queuing, guaranteed floors,
 * and per-tenant caps inside the shared quota. Immutable; checked by {@link Validation#limit}.
 * Every tenant that is not named weighs 1, has no floor and no cap of its own.
 *
 * @param weights tenant to weight, &gt; 0 (unnamed tenants weigh 1)
 * @param floors tenant to the fraction of the binding dimension it is guaranteed while it has
 *     demand, in (0, 1]; the floors of a limit sum to at most 1
 * @param caps tenant to its own rates (its ceiling inside the shared quota); each dimension is
 *     also one of the limit's own
 */
public record TenantPolicy(
    Map<String, Double> weights, Map<String, Double> floors, Map<String, List<RateSpec>> caps) {

  /** The tenant of an acquire that names none. */
  public static final String DEFAULT_TENANT = "default";

  /** No shares, floors or caps: every tenant weighs 1. */
  public static final TenantPolicy NONE = new TenantPolicy(Map.of(), Map.of(), Map.of());

  public TenantPolicy {
    // Sorted: both stores and every listing see the tenants in the same order.
    weights = java.util.Collections.unmodifiableMap(new TreeMap<>(weights));
    floors = java.util.Collections.unmodifiableMap(new TreeMap<>(floors));
    TreeMap<String, List<RateSpec>> c = new TreeMap<>();
    caps.forEach((t, r) -> c.put(t, List.copyOf(r)));
    caps = java.util.Collections.unmodifiableMap(c);
  }

  /** The weight of {@code tenant}: its own, else 1. */
  public double weight(String tenant) {
    Double w = weights.get(tenant); // not getOrDefault: that boxes the default on every call
    return w == null ? 1.0 : w;
  }

  /** Its floor, 0 when it has none. */
  public double floor(String tenant) {
    Double f = floors.get(tenant); // not getOrDefault: that boxes the default on every call
    return f == null ? 0 : f;
  }

  /** Its own rates, empty when it has none. */
  public List<RateSpec> cap(String tenant) {
    if (caps.isEmpty()) {
      return List.of(); // the usual case, asked on every pick and grant: no tree to walk
    }
    return caps.getOrDefault(tenant, List.of());
  }

  /**
   * The name {@code tenant}'s use is counted under in stats and metrics: its own when the policy
   * names it (or it is the default), else {@code other}, so the cardinality stays bounded.
   */
  public String statsKey(String tenant) {
    return DEFAULT_TENANT.equals(tenant) || weights.containsKey(tenant) || floors.containsKey(tenant)
        || caps.containsKey(tenant) ? tenant : OTHER;
  }

  /** Where unnamed tenants are counted together. */
  public static final String OTHER = "other";

  public boolean isEmpty() {
    return weights.isEmpty() && floors.isEmpty() && caps.isEmpty();
  }
}
