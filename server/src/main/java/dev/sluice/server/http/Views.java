package dev.sluice.server.http;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LearnSpec;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import dev.sluice.server.engine.TenantShares;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** The JSON documents of the HTTP port (field names are the contract docs/http-api.md documents). */
final class Views {

  static final ObjectMapper JSON = new ObjectMapper();

  private Views() {}

  /**
   * {@code {"time", "node", "total", "resources": [...], "pools": [...]}}: what /v1/resources and
   * /v1/events send. These reads need no key, so buffers (their URLs, headers, counts) stay out:
   * they are read from /v1/buffers with a key. A pool is in {@code pools} only ({@link #pool}),
   * its members in {@code resources} as any resource.
   */
  static ObjectNode sample(ResourceSampler.Sample s, String node, PoolMeters poolMeters) {
    ObjectNode o = JSON.createObjectNode();
    o.put("time", s.timeMillis());
    o.put("node", node);
    o.put("total", s.total());
    ArrayNode list = o.putArray("resources");
    for (ResourceSnapshot r : s.resources()) {
      String name = r.limit().resource();
      ObjectNode one = resource(r, s.utilization().getOrDefault(name, Map.of()), s.activity().get(name));
      TenantShares.View tenants = s.tenants().get(name);
      if (tenants != null) {
        one.set("tenants", tenants(tenants));
      }
      list.add(one);
    }
    Map<String, ResourceSnapshot> byName = new java.util.HashMap<>();
    s.resources().forEach(r -> byName.put(r.limit().resource(), r));
    ArrayNode pools = o.putArray("pools");
    for (LimitSpec p : s.pools()) {
      pools.add(pool(p, byName::get, poolMeters));
    }
    return o;
  }

  /**
   * {@code {"name", "members": [{"name", "found", "paused", "pausedForSeconds", "inFlight",
   * "waiting", "granted", "poolGranted"}]}}: a pool and the state of each member, {@code state}
   * giving a member's snapshot (null: none, e.g. deleted since, when {@code found} is false and
   * the figures are 0). {@code granted} is the member's grants to anyone; {@code poolGranted} the
   * grants of this pool by that member that this node handed over ({@link PoolMeters}).
   */
  static ObjectNode pool(
      LimitSpec pool, java.util.function.Function<String, ResourceSnapshot> state, PoolMeters poolMeters) {
    ObjectNode o = JSON.createObjectNode();
    o.put("name", pool.resource());
    ArrayNode members = o.putArray("members");
    for (String m : pool.members()) {
      ObjectNode one = members.addObject();
      ResourceSnapshot r = state.apply(m);
      one.put("name", m);
      one.put("found", r != null);
      one.put("paused", r != null && r.paused());
      one.put("pausedForSeconds", r == null || !r.paused() ? 0 : r.pausedForNanos() < 0 ? -1 : r.pausedForNanos() / 1e9);
      one.put("inFlight", r == null ? 0 : r.inFlight());
      one.put("waiting", r == null ? 0 : r.waiting().values().stream().mapToInt(Integer::intValue).sum());
      one.put("granted", r == null ? 0 : r.granted());
      one.put("poolGranted", poolMeters.granted(pool.resource(), m));
    }
    return o;
  }

  /**
   * One resource. {@code activity} (rates since the previous sample, recent throttle reports) is
   * the sampler's: null outside a sample, where the rates are null and the reports empty.
   */
  static ObjectNode resource(ResourceSnapshot r, Map<String, Double> utilization, ResourceSampler.Activity activity) {
    ObjectNode o = JSON.createObjectNode();
    o.put("name", r.limit().resource());
    o.set("limit", limit(r.limit()));
    ObjectNode available = o.putObject("available");
    r.available().forEach((k, v) -> available.put(k, round(v)));
    // What each bucket holds over its burst: 1 full, 0 empty, below 0 in debt.
    ObjectNode level = o.putObject("level");
    for (RateSpec rs : r.limit().rates()) {
      level.put(rs.name(), round(r.available().getOrDefault(rs.name(), 0.0) / Math.max(1, rs.burst())));
    }
    if (!r.limit().holds().isEmpty()) {
      // What the live permits hold of each held dimension: its cap less what is available.
      ObjectNode held = o.putObject("held");
      r.limit().holds().forEach((d, cap) -> held.put(d, round(cap - r.available().getOrDefault(d, (double) cap))));
    }
    ObjectNode util = o.putObject("utilization");
    for (RateSpec rs : r.limit().rates()) {
      util.put(rs.name(), round(utilization.getOrDefault(rs.name(), 0.0)));
    }
    o.put("inFlight", r.inFlight());
    ObjectNode waiting = o.putObject("waiting");
    for (Lane lane : Lane.values()) {
      waiting.put(lane.name().toLowerCase(Locale.ROOT), r.waiting().getOrDefault(lane, 0));
    }
    o.put("paused", r.paused());
    o.put("pausedForSeconds", r.pausedForNanos() < 0 ? -1 : r.pausedForNanos() / 1e9);
    ObjectNode pause = o.putObject("pause");
    r.pause().by().forEach(pause.putArray("by")::add);
    pause.put("adminSeconds", r.pause().adminNanos() < 0 ? -1 : r.pause().adminNanos() / 1e9);
    pause.put("upstreamSeconds", r.pause().upstreamNanos() / 1e9);
    o.put("granted", r.granted());
    o.put("timedOut", r.timedOut());
    o.put("cancelled", r.cancelled());
    o.put("givenBack", r.givenBack());
    o.put("forfeited", r.forfeited());
    o.put("expired", r.expired());
    ObjectNode rejected = o.putObject("rejected");
    r.rejected().forEach(rejected::put);
    o.put("waitP50Seconds", r.waitP50Seconds());
    o.put("waitP99Seconds", r.waitP99Seconds());
    o.put("throttleReports", r.throttleReports());
    if (r.lastThrottleAgoNanos() < 0) {
      o.putNull("lastThrottleSecondsAgo");
    } else {
      o.put("lastThrottleSecondsAgo", round(r.lastThrottleAgoNanos() / 1e9));
    }
    ArrayNode throttles = o.putArray("recentThrottles");
    ObjectNode rates = o.putObject("rates");
    if (activity == null || Double.isNaN(activity.grantedPerSecond())) {
      rates.putNull("grantedPerSecond"); // nothing to compare with yet
      rates.putNull("rejectedPerSecond");
      rates.putNull("timedOutPerSecond");
    } else {
      rates.put("grantedPerSecond", round(activity.grantedPerSecond()));
      rates.put("rejectedPerSecond", round(activity.rejectedPerSecond()));
      rates.put("timedOutPerSecond", round(activity.timedOutPerSecond()));
    }
    if (activity != null) {
      activity.throttledAtMillis().forEach(throttles::add);
    }
    return o;
  }

  /** Tenant rows a resource sends to the dashboard at most. */
  static final int DASHBOARD_TENANTS = 20;

  /**
   * A resource's tenants ({@link TenantShares}): {@code {"binding", "windowSeconds", "more",
   * "rows": [{"tenant", "weight", "floor", "cap", "waiting", "used", "recentUsed", "share",
   * "fairShare"}]}}, shares and floors as fractions (0.4 is 40 %); at most {@link
   * #DASHBOARD_TENANTS} rows (tenants with waiters first, then the largest recent shares), in
   * name order, {@code more} saying how many were left out.
   */
  static ObjectNode tenants(TenantShares.View v) {
    ObjectNode o = JSON.createObjectNode();
    o.put("binding", v.binding());
    o.put("windowSeconds", round(v.windowSeconds()));
    // A policy may name up to 1 000 tenants, and this goes out every second: the busiest rows only.
    List<TenantShares.Row> shown = v.rows();
    if (shown.size() > DASHBOARD_TENANTS) {
      shown = shown.stream()
          .sorted(java.util.Comparator.comparing((TenantShares.Row r) -> r.waiting() == 0) // waiting first
              .thenComparing(java.util.Comparator.comparingDouble(TenantShares.Row::recentShare).reversed())
              .thenComparing(java.util.Comparator.comparingInt(TenantShares.Row::waiting).reversed())
              .thenComparing(TenantShares.Row::tenant))
          .limit(DASHBOARD_TENANTS)
          .sorted(java.util.Comparator.comparing(TenantShares.Row::tenant))
          .toList();
    }
    o.put("more", v.rows().size() - shown.size());
    ArrayNode rows = o.putArray("rows");
    for (TenantShares.Row r : shown) {
      ObjectNode x = rows.addObject();
      x.put("tenant", r.tenant());
      x.put("weight", r.weight());
      x.put("floor", r.floor());
      rates(x.putArray("cap"), r.cap(), null);
      x.put("waiting", r.waiting());
      ObjectNode used = x.putObject("used");
      r.used().forEach((k, u) -> used.put(k, round(u)));
      ObjectNode recent = x.putObject("recentUsed");
      r.recentUsed().forEach((k, u) -> recent.put(k, round(u)));
      x.put("share", round(r.recentShare()));
      x.put("fairShare", round(r.fairShare()));
    }
    return o;
  }

  static ObjectNode limit(LimitSpec l) {
    ObjectNode o = JSON.createObjectNode();
    rates(o.putArray("rates"), l.rates(), l.jitter());
    o.put("jitterSeconds", l.jitter().toNanos() / 1e9);
    o.put("concurrency", l.concurrency());
    if (!l.holds().isEmpty()) {
      l.holds().forEach(o.putObject("holds")::put);
    }
    o.put("maxWaiting", l.maxWaiting());
    o.put("leaseSeconds", l.leaseTtl().toNanos() / 1e9);
    if (l.owner() != null) {
      // Which limits file manages it: a POST .../limit without ?force=true is refused (409).
      ObjectNode m = o.putObject("managedBy");
      m.put("file", l.owner().file());
      m.put("sha256", l.owner().sha256());
      m.put("overridden", l.owner().overridden());
    }
    // The tenant policy: weights, floors as fractions (0.4 is 40 %), caps as rates.
    ObjectNode shares = o.putObject("shares");
    l.tenants().weights().forEach(shares::put);
    ObjectNode floors = o.putObject("floors");
    l.tenants().floors().forEach(floors::put);
    ObjectNode caps = o.putObject("caps");
    l.tenants().caps().forEach((tenant, rates) -> rates(caps.putArray(tenant), rates, null));
    if (l.learn() != null) {
      o.set("learn", learn(l.learn()));
    }
    if (l.isPool()) {
      l.members().forEach(o.putArray("members")::add);
    }
    return o;
  }

  /** Rates as JSON; with {@code jitter} (a limit's own rates), what each really grants at. */
  private static void rates(ArrayNode out, List<RateSpec> rates, java.time.Duration jitter) {
    for (RateSpec r : rates) {
      ObjectNode x = out.addObject();
      x.put("dimension", r.name());
      x.put("amount", r.amount());
      x.put("periodSeconds", r.period().toNanos() / 1e9);
      x.put("burst", r.burst());
      x.put("perSecond", round(ResourceSampler.perSecond(r)));
      if (jitter != null) {
        // What the coordinator really grants at after the jitter's margin (RateSpec).
        x.put("effectiveAmount", round(r.effectiveAmount(jitter)));
      }
    }
  }

  /** A learned limit's provider, ceilings and last change (null {@code learnedAt}: none yet). */
  static ObjectNode learn(LearnSpec l) {
    ObjectNode o = JSON.createObjectNode();
    o.put("provider", l.provider());
    ObjectNode ceilings = o.putObject("ceilingsPerMinute");
    for (RateSpec c : l.ceilings()) {
      ceilings.put(c.name(), round((double) c.amount() * 60e9 / c.period().toNanos()));
    }
    if (l.learnedAtMillis() == 0) {
      o.putNull("learnedAt");
    } else {
      o.put("learnedAt", java.time.Instant.ofEpochMilli(l.learnedAtMillis()).toString());
    }
    o.put("was", l.was());
    o.put("summary", LearnSpec.describe(l));
    return o;
  }

  /** A grant answering a request that reached this node at {@code arrivedNanos} (System.nanoTime). */
  static ObjectNode grant(Grant g, String asked, String httpPermitId, long arrivedNanos) {
    ObjectNode o = JSON.createObjectNode();
    o.put("permitId", httpPermitId);
    o.put("resource", asked); // the name asked, as the SDKs' permits keep it
    o.put("member", g.resource()); // whose limit granted: for a pool, its member
    ObjectNode granted = o.putObject("granted");
    g.load().forEach(granted::put);
    o.put("leaseSeconds", g.leaseTtlNanos() / 1e9);
    o.put("waitedSeconds", g.waitedNanos() / 1e9);
    o.put("answeredAfterSeconds", Math.max(0, System.nanoTime() - arrivedNanos) / 1e9);
    if (g.freshNanos() >= 0) {
      o.put("freshForSeconds", g.freshNanos() / 1e9);
    } else {
      o.putNull("freshForSeconds");
    }
    return o;
  }

  /**
   * An estimate ({@code Engine#estimate}: nanoseconds, -1 paused until resumed):
   * {@code {"waitSeconds", "paused"}}, {@code waitSeconds} null when paused.
   */
  static ObjectNode estimate(long nanos) {
    ObjectNode o = JSON.createObjectNode();
    if (nanos < 0) {
      o.putNull("waitSeconds");
    } else {
      o.put("waitSeconds", nanos / 1e9);
    }
    o.put("paused", nanos < 0);
    return o;
  }

  static ObjectNode error(String code, int status, String message) {
    ObjectNode o = JSON.createObjectNode();
    ObjectNode e = o.putObject("error");
    e.put("code", code);
    e.put("status", status);
    e.put("message", message);
    return o;
  }

  private static double round(double v) {
    return Math.round(v * 1000) / 1000.0;
  }
}
