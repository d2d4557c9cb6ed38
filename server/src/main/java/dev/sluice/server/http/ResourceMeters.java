package dev.sluice.server.http;

import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import dev.sluice.server.price.Costs;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.DoubleAdder;

/**
 * The per-resource gauges of {@code /metrics}, refreshed from each {@link ResourceSampler}
 * sample (so they are at most a second old), for the resources the sampler watches.
 *
 * <ul>
 *   <li>{@code sluice.waiting{resource,lane}}, {@code sluice.permits.in.flight{resource}},
 *       {@code sluice.tokens.available{resource,dimension}}, {@code
 *       sluice.limit.rate.per.second{resource,dimension}}, {@code sluice.resource.paused{resource}}
 *       (1 or 0), {@code sluice.acquire.wait.p50{resource}} and {@code sluice.acquire.wait.p99{resource}}
 *       (of recent waits, in seconds, on either store: gauges, not a summary, since the
 *       engine computes them; Prometheus reserves the {@code quantile} label for summaries);
 *   <li>{@code sluice.tokens.used{resource,dimension}}: a counter of tokens taken net of refunds;
 *       its rate over {@code sluice.limit.rate.per.second} is utilization;
 *   <li>per tenant ({@code tenant}: those the limit names, {@code default}, and every other
 *       tenant together as {@code other}, so the series stay bounded): {@code
 *       sluice.tenant.waiting{resource,tenant}}, {@code
 *       sluice.tenant.tokens.used{resource,tenant,dimension}} and, on a limit that counts {@code
 *       usd}, {@code sluice.tenant.spend{resource,tenant}} in dollars
 *       ({@code sluice_tenant_spend_dollars_total});
 *   <li>on a shared store only, the outcome counters ({@code sluice.acquire.granted} ...) read
 *       from the store: they are totals over every node, so every node exports the same values
 *       (aggregate with {@code max}, not {@code sum}). The memory store counts them as they
 *       happen, with a wait-time histogram, in the engine itself.
 * </ul>
 */
public final class ResourceMeters {

  private final MeterRegistry registry;
  private final boolean outcomeCounters;
  private final MultiGauge waiting;
  private final MultiGauge inFlight;
  private final MultiGauge available;
  private final MultiGauge rate;
  private final MultiGauge paused;
  private final MultiGauge waitP50;
  private final MultiGauge waitP99;
  private final MultiGauge tenantWaiting;
  private final Map<Key, Holder> counters = new HashMap<>();

  /** @param outcomeCounters also export outcome counters from the snapshots (shared store) */
  public ResourceMeters(MeterRegistry registry, boolean outcomeCounters) {
    this.registry = registry;
    this.outcomeCounters = outcomeCounters;
    waiting = MultiGauge.builder("sluice.waiting")
        .description("Acquires in the waiting room, per lane").register(registry);
    inFlight = MultiGauge.builder("sluice.permits.in.flight")
        .description("Permits with an unexpired lease").register(registry);
    available = MultiGauge.builder("sluice.tokens.available")
        .description("Tokens in the bucket now; negative while in debt").register(registry);
    rate = MultiGauge.builder("sluice.limit.rate.per.second")
        .description("The limit's rate in tokens per second").register(registry);
    paused = MultiGauge.builder("sluice.resource.paused")
        .description("1 while grants are paused (admin or upstream feedback)").register(registry);
    waitP50 = MultiGauge.builder("sluice.acquire.wait.p50").baseUnit("seconds")
        .description("Median wait of recent grants, as sluice stats shows it").register(registry);
    waitP99 = MultiGauge.builder("sluice.acquire.wait.p99").baseUnit("seconds")
        .description("99th percentile wait of recent grants, as sluice stats shows it").register(registry);
    tenantWaiting = MultiGauge.builder("sluice.tenant.waiting")
        .description("Acquires waiting per tenant (tenants the limit names, default, and the rest as other)")
        .register(registry);
  }

  /** Sets every gauge and counter from a sample; drops those of resources no longer in it. */
  public synchronized void update(ResourceSampler.Sample sample) {
    List<MultiGauge.Row<?>> w = new ArrayList<>();
    List<MultiGauge.Row<?>> f = new ArrayList<>();
    List<MultiGauge.Row<?>> a = new ArrayList<>();
    List<MultiGauge.Row<?>> r = new ArrayList<>();
    List<MultiGauge.Row<?>> p = new ArrayList<>();
    List<MultiGauge.Row<?>> q50 = new ArrayList<>();
    List<MultiGauge.Row<?>> q99 = new ArrayList<>();
    List<MultiGauge.Row<?>> tw = new ArrayList<>();
    Set<Key> live = new HashSet<>();
    for (ResourceSnapshot s : sample.resources()) {
      String name = s.limit().resource();
      Tags tags = Tags.of("resource", name);
      for (Lane lane : Lane.values()) {
        w.add(MultiGauge.Row.of(tags.and("lane", lane.name().toLowerCase(Locale.ROOT)),
            s.waiting().getOrDefault(lane, 0)));
      }
      f.add(MultiGauge.Row.of(tags, s.inFlight()));
      p.add(MultiGauge.Row.of(tags, s.paused() ? 1 : 0));
      q50.add(MultiGauge.Row.of(tags, s.waitP50Seconds()));
      q99.add(MultiGauge.Row.of(tags, s.waitP99Seconds()));
      for (RateSpec rs : s.limit().rates()) {
        Tags dim = tags.and("dimension", rs.name());
        a.add(MultiGauge.Row.of(dim, s.available().getOrDefault(rs.name(), 0.0)));
        r.add(MultiGauge.Row.of(dim, ResourceSampler.perSecond(rs)));
        count(live, "sluice.tokens.used", dim, "Tokens taken, net of refunds",
            s.used().getOrDefault(rs.name(), 0.0));
      }
      // Per tenant: bounded by the limit's policy (unnamed tenants are counted as "other").
      for (Map.Entry<String, ResourceSnapshot.TenantUse> t : s.tenants().entrySet()) {
        Tags tenant = tags.and("tenant", t.getKey());
        tw.add(MultiGauge.Row.of(tenant, t.getValue().waiting()));
        for (Map.Entry<String, Double> u : t.getValue().used().entrySet()) {
          count(live, "sluice.tenant.tokens.used", tenant.and("dimension", u.getKey()),
              "Units a tenant used: granted, then settled or given back", u.getValue());
        }
        Double micros = t.getValue().used().get(Costs.USD);
        if (micros != null && s.limit().rate(Costs.USD) != null) {
          count(live, "sluice.tenant.spend", tenant, "dollars",
              "US dollars a tenant spent on a limit that counts usd: granted, then settled or given back",
              micros / 1e6);
        }
      }
      if (outcomeCounters) {
        count(live, "sluice.acquire.granted", tags, "Acquires granted (all nodes)", s.granted());
        count(live, "sluice.acquire.timed.out", tags, "Acquires that reached their deadline (all nodes)",
            s.timedOut());
        count(live, "sluice.acquire.cancelled", tags, "Acquires cancelled by the caller (all nodes)",
            s.cancelled());
        count(live, "sluice.acquire.given.back", tags,
            "Grants returned in full because their caller was gone (all nodes)", s.givenBack());
        count(live, "sluice.acquire.forfeited", tags,
            "Grants whose caller came back for them too late, not handed over (all nodes)", s.forfeited());
        count(live, "sluice.permits.expired", tags,
            "Permits whose lease ran out before they were released (all nodes)", s.expired());
        count(live, "sluice.upstream.throttled", tags, "Upstream throttling reports (all nodes)",
            s.throttleReports());
        for (Map.Entry<String, Long> e : s.rejected().entrySet()) {
          count(live, "sluice.acquire.rejected", tags.and("reason", e.getKey()),
              "Acquires refused (all nodes)", e.getValue());
        }
      }
    }
    waiting.register(w, true);
    inFlight.register(f, true);
    available.register(a, true);
    rate.register(r, true);
    paused.register(p, true);
    waitP50.register(q50, true);
    waitP99.register(q99, true);
    tenantWaiting.register(tw, true);
    counters.entrySet().removeIf(e -> {
      if (live.contains(e.getKey())) {
        return false;
      }
      registry.remove(e.getValue().counter);
      return true;
    });
  }

  private void count(Set<Key> live, String name, Tags tags, String help, double value) {
    count(live, name, tags, null, help, value);
  }

  private void count(Set<Key> live, String name, Tags tags, String baseUnit, String help, double value) {
    Key key = new Key(name, tags);
    live.add(key);
    Holder h = counters.computeIfAbsent(key, k -> new Holder(registry, name, tags, baseUnit, help));
    h.set(value);
  }

  private record Key(String name, Tags tags) {}

  /**
   * A counter's value as last read. A source that restarted from zero (an idle resource's state
   * let go, a store emptied) moves the base, so the exported counter never goes down.
   */
  private static final class Holder {
    final FunctionCounter counter;
    private final DoubleAdder total = new DoubleAdder();
    private double last;

    Holder(MeterRegistry registry, String name, Tags tags, String baseUnit, String help) {
      counter = FunctionCounter.builder(name, total, DoubleAdder::sum).tags(tags).baseUnit(baseUnit)
          .description(help).register(registry);
    }

    void set(double value) {
      double delta = value >= last ? value - last : value;
      last = value;
      total.add(delta);
    }
  }
}
