package dev.sluice.server.engine;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.LongSupplier;

/**
 * Each tenant's recent share of a resource against what its weight entitles it to, for {@code
 * sluice stats --by tenant} and the dashboard. The engine keeps per-tenant use as counters
 * ({@link ResourceSnapshot#tenants}); this turns them into recent figures the way {@link
 * WaitStats} makes its percentiles recent: readings are taken when stats are read, a window lasts
 * {@link WaitStats#WINDOW_NANOS} and "recent" is the current window plus the previous one, so 1
 * to 2 minutes. Before a resource's first turnover it is since the first reading, counted from
 * zero (the counters start with the resource's live state).
 *
 * <p>The recent share is measured on the binding dimension: the one whose recent use was the
 * largest part of its rate, the one the fair scheduler's costs follow. The fair share is the
 * tenant's weight over the weights of the tenants that used the resource recently or wait now;
 * {@code other} (every unnamed tenant together) counts as one tenant of weight 1, so several
 * unnamed tenants may together use more than its fair share and still be treated fairly.
 *
 * <p>One instance is shared by the Admin API and the dashboard's sampler, so both read the same
 * windows. Thread-safe; memory is one small map per resource with tenants, and a resource not
 * read for three windows is forgotten.
 */
public final class TenantShares {

  /**
   * One tenant's row.
   *
   * @param tenant its name, {@code default}, or {@code other}
   * @param weight its weight (1 unless the policy names it)
   * @param floor its floor as a fraction, 0 without one
   * @param cap its own rates, empty without a cap
   * @param waiting its acquires waiting now
   * @param used units it used per dimension, a counter
   * @param recentUsed what it used in the window, per dimension
   * @param recentShare its part of the binding dimension's use in the window, 0 to 1
   * @param fairShare its weight over the weights of the tenants active in the window
   */
  public record Row(
      String tenant,
      double weight,
      double floor,
      List<RateSpec> cap,
      int waiting,
      Map<String, Double> used,
      Map<String, Double> recentUsed,
      double recentShare,
      double fairShare) {}

  /**
   * The tenants of one resource.
   *
   * @param rows in name order: every tenant the policy names, {@code default}, and those seen
   *     ({@code other} once an unnamed tenant was)
   * @param binding the dimension the shares are measured on; empty when nothing was used recently
   * @param windowSeconds how far back "recent" reaches
   */
  public record View(List<Row> rows, String binding, double windowSeconds) {}

  private final LongSupplier nanos;
  private final long createdAt;
  private final Map<String, Window> windows = new HashMap<>();
  private long sweptAt;

  /** @param nanos a monotonic clock (the engine's ticker; tests pass a fake one) */
  public TenantShares(LongSupplier nanos) {
    this.nanos = nanos;
    this.createdAt = nanos.getAsLong();
    this.sweptAt = createdAt;
  }

  /** Whether tenants share {@code s}: its limit has a policy, or a tenant other than the default used it. */
  public static boolean hasTenants(ResourceSnapshot s) {
    return !s.limit().tenants().isEmpty() || !s.tenants().isEmpty();
  }

  /** The tenants of {@code s} now (a reading: it may turn the resource's window over). */
  public synchronized View of(ResourceSnapshot s) {
    long now = nanos.getAsLong();
    sweep(now);
    String resource = s.limit().resource();
    Map<String, Map<String, Double>> reading = new HashMap<>();
    s.tenants().forEach((t, u) -> reading.put(t, u.used()));
    Window w = windows.computeIfAbsent(resource, k -> new Window(createdAt));
    w.read(reading, now);
    Map<String, Map<String, Double>> recent = new LinkedHashMap<>();
    TenantPolicy policy = s.limit().tenants();
    TreeSet<String> names = new TreeSet<>(policy.weights().keySet());
    names.addAll(policy.floors().keySet());
    names.addAll(policy.caps().keySet());
    names.add(TenantPolicy.DEFAULT_TENANT);
    names.addAll(s.tenants().keySet());
    for (String t : names) {
      recent.put(t, w.since(t, reading.getOrDefault(t, Map.of()), s.limit().rates()));
    }
    String binding = binding(s.limit(), recent, (now - w.previousAt) / 1e9);
    double total = 0;
    double activeWeight = 0;
    for (String t : names) {
      total += binding.isEmpty() ? 0 : recent.get(t).getOrDefault(binding, 0.0);
      if (active(s, t, recent.get(t))) {
        activeWeight += policy.weight(t);
      }
    }
    List<Row> rows = new ArrayList<>(names.size());
    for (String t : names) {
      ResourceSnapshot.TenantUse use = s.tenants().get(t);
      Map<String, Double> used = new LinkedHashMap<>();
      for (RateSpec r : s.limit().rates()) {
        used.put(r.name(), use == null ? 0.0 : use.used().getOrDefault(r.name(), 0.0));
      }
      double mine = binding.isEmpty() ? 0 : recent.get(t).getOrDefault(binding, 0.0);
      double weight = policy.weight(t);
      boolean active = active(s, t, recent.get(t));
      rows.add(new Row(t, weight, policy.floor(t), policy.cap(t), use == null ? 0 : use.waiting(), used,
          recent.get(t), total > 0 ? Math.max(0, mine / total) : 0,
          activeWeight > 0 ? (active ? weight : 0) / activeWeight : 0));
    }
    return new View(List.copyOf(rows), binding, (now - w.previousAt) / 1e9);
  }

  /** Used something in the window, or waits now. */
  private static boolean active(ResourceSnapshot s, String tenant, Map<String, Double> recent) {
    ResourceSnapshot.TenantUse use = s.tenants().get(tenant);
    return (use != null && use.waiting() > 0) || recent.values().stream().anyMatch(v -> v > 0);
  }

  /** The dimension whose use in the window was the largest part of what its rate allowed then. */
  private static String binding(LimitSpec limit, Map<String, Map<String, Double>> recent, double seconds) {
    String best = "";
    double most = 0;
    for (RateSpec r : limit.rates()) {
      double sum = 0;
      for (Map<String, Double> u : recent.values()) {
        sum += Math.max(0, u.getOrDefault(r.name(), 0.0));
      }
      double part = sum / (r.amount() * Math.max(seconds, 1e-9) * 1e9 / r.period().toNanos());
      if (part > most) {
        most = part;
        best = r.name();
      }
    }
    return best;
  }

  private void sweep(long now) {
    if (now - sweptAt < WaitStats.WINDOW_NANOS) {
      return;
    }
    sweptAt = now;
    for (Iterator<Window> i = windows.values().iterator(); i.hasNext(); ) {
      if (now - i.next().readAt > 3 * WaitStats.WINDOW_NANOS) {
        i.remove(); // deleted, or nobody looks: start again from the next reading
      }
    }
  }

  /** How many resources have a window now (tests). */
  synchronized int windows() {
    return windows.size();
  }

  /** The counters as they stood when the previous window started, and when the current one did. */
  private static final class Window {
    /** Empty: zero, as counters stand when they start. */
    private Map<String, Map<String, Double>> previous = Map.of();
    private Map<String, Map<String, Double>> current = Map.of();
    private long previousAt;
    private long currentAt;
    private long readAt;

    Window(long start) {
      previousAt = start;
      currentAt = start;
    }

    void read(Map<String, Map<String, Double>> reading, long now) {
      readAt = now;
      if (now - currentAt >= WaitStats.WINDOW_NANOS) {
        // Turn over: what the previous window started from is dropped.
        previous = current;
        previousAt = currentAt;
        current = reading;
        currentAt = now;
      }
    }

    /** What {@code tenant} used since the previous window started, per dimension. */
    Map<String, Double> since(String tenant, Map<String, Double> now, List<RateSpec> dims) {
      Map<String, Double> before = previous.getOrDefault(tenant, Map.of());
      Map<String, Double> out = new LinkedHashMap<>();
      for (RateSpec r : dims) {
        double v = now.getOrDefault(r.name(), 0.0);
        double b = before.getOrDefault(r.name(), 0.0);
        out.put(r.name(), v >= b ? v - b : v); // below: the counter restarted from zero
      }
      return out;
    }
  }
}
