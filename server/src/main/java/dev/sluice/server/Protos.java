package dev.sluice.server;

import com.google.protobuf.Duration;
import dev.sluice.proto.v1.EstimateResponse;
import dev.sluice.proto.v1.Lane;
import dev.sluice.proto.v1.LearnSettings;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.TenantCap;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LearnSpec;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import dev.sluice.server.engine.TenantPolicy;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Conversions between the wire types and the engine's. */
final class Protos {

  private Protos() {}

  static Duration duration(long nanos) {
    return Duration.newBuilder()
        .setSeconds(nanos / 1_000_000_000L)
        .setNanos((int) (nanos % 1_000_000_000L))
        .build();
  }

  static Duration duration(java.time.Duration d) {
    return duration(d.toNanos());
  }

  /** Nanoseconds of a wire duration; refuses negative or absurd values with a clear message. */
  static long nanos(Duration d, String field) {
    if (d.getSeconds() < 0 || d.getNanos() < 0 || d.getNanos() >= 1_000_000_000) {
      throw new EngineException(
          EngineException.Reason.INVALID,
          field + " " + d.getSeconds() + "s " + d.getNanos() + "ns is negative or malformed: use a"
              + " non-negative duration");
    }
    if (d.getSeconds() > 366L * 24 * 3600) {
      throw new EngineException(
          EngineException.Reason.INVALID,
          field + " of " + d.getSeconds() + "s is too long: use at most a year");
    }
    return d.getSeconds() * 1_000_000_000L + d.getNanos();
  }

  /**
   * Nanoseconds of a wire duration checked against {@code bounds}, with the message the other
   * paths give ({@link Durations}).
   */
  static long nanos(Duration d, String field, Durations.Bounds bounds) {
    if (d.getNanos() <= -1_000_000_000 || d.getNanos() >= 1_000_000_000
        || (d.getSeconds() != 0 && d.getNanos() != 0 && (d.getSeconds() < 0) != (d.getNanos() < 0))) {
      throw new EngineException(EngineException.Reason.INVALID, field + " " + d.getSeconds() + "s " + d.getNanos()
          + "ns is malformed: seconds and nanos share a sign, and nanos stay under a second");
    }
    // Past ten years either way it is out of every bound, and 2^63 seconds plus nanos is past
    // what a java.time.Duration holds: refused before it is built.
    long most = Durations.LONGEST.getSeconds() + 1;
    long seconds = Math.max(-most, Math.min(d.getSeconds(), most));
    java.time.Duration value = java.time.Duration.ofSeconds(seconds, seconds == d.getSeconds() ? d.getNanos() : 0);
    try {
      return Durations.check(field, d.getSeconds() == seconds ? Durations.format(value) : d.getSeconds() + "s",
          value, bounds).toNanos();
    } catch (IllegalArgumentException e) {
      throw new EngineException(EngineException.Reason.INVALID, e.getMessage());
    }
  }

  static java.time.Duration javaDuration(Duration d, String field) {
    return java.time.Duration.ofNanos(nanos(d, field));
  }

  /** An engine estimate in nanoseconds (-1: paused until resumed) as its message. */
  static EstimateResponse estimate(long nanos) {
    return nanos < 0 ? EstimateResponse.newBuilder().setPaused(true).build()
        : EstimateResponse.newBuilder().setWait(duration(nanos)).build();
  }

  static dev.sluice.server.engine.Lane lane(Lane lane) {
    return switch (lane) {
      case LANE_INTERACTIVE -> dev.sluice.server.engine.Lane.INTERACTIVE;
      case LANE_BATCH -> dev.sluice.server.engine.Lane.BATCH;
      case LANE_DEFAULT, LANE_UNSPECIFIED -> dev.sluice.server.engine.Lane.DEFAULT;
      default ->
          throw new EngineException(
              EngineException.Reason.INVALID,
              "lane " + lane + " is unknown: use interactive, default or batch");
    };
  }

  static LimitSpec limit(Limit l) {
    Map<String, List<RateSpec>> caps = new LinkedHashMap<>();
    l.getCapsMap().forEach((tenant, cap) -> caps.put(tenant, rates(cap.getRatesList())));
    return new LimitSpec(
        l.getResource(),
        rates(l.getRatesList()),
        l.getConcurrency(),
        l.getMaxWaiting(),
        l.hasLeaseTtl() ? javaDuration(l.getLeaseTtl(), "lease_ttl") : null,
        l.hasJitter() ? javaDuration(l.getJitter(), "jitter") : null,
        new TenantPolicy(l.getSharesMap(), l.getFloorsMap(), caps),
        l.hasLearn() ? learn(l.getLearn()) : null,
        l.getMembersList()).withHolds(new java.util.TreeMap<>(l.getHoldsMap()));
  }

  private static List<RateSpec> rates(List<RateDimension> in) {
    List<RateSpec> rates = new ArrayList<>();
    for (RateDimension r : in) {
      rates.add(
          new RateSpec(
              r.getName(),
              r.getAmount(),
              r.hasPeriod() ? javaDuration(r.getPeriod(), "period of " + r.getName()) : null,
              r.getBurst()));
    }
    return rates;
  }

  /** Rates as the wire shows them; with {@code jitter} (a limit's own rates), each one's effective amount. */
  private static List<RateDimension> dimensions(List<RateSpec> in, java.time.Duration jitter) {
    List<RateDimension> out = new ArrayList<>();
    for (RateSpec r : in) {
      RateDimension.Builder d =
          RateDimension.newBuilder()
              .setName(r.name())
              .setAmount(r.amount())
              .setPeriod(duration(r.period()))
              .setBurst(r.burst());
      if (jitter != null) {
        d.setEffectiveAmount(r.effectiveAmount(jitter));
      }
      out.add(d.build());
    }
    return out;
  }

  /** Learn settings from the wire; what the server reports (when, was) is not taken as input. */
  static LearnSpec learn(LearnSettings l) {
    List<RateSpec> ceilings = new ArrayList<>();
    for (RateDimension c : l.getCeilingsList()) {
      ceilings.add(new RateSpec(c.getName(), c.getAmount(),
          c.hasPeriod() ? javaDuration(c.getPeriod(), "period of ceiling " + c.getName()) : null, 0));
    }
    return new LearnSpec(l.getProvider(), ceilings, 0, "");
  }

  static LearnSettings learn(LearnSpec l) {
    LearnSettings.Builder b = LearnSettings.newBuilder()
        .setProvider(l.provider())
        .setLearnedAtUnixMillis(l.learnedAtMillis())
        .setWas(l.was());
    for (RateSpec c : l.ceilings()) {
      b.addCeilings(RateDimension.newBuilder().setName(c.name()).setAmount(c.amount()).setPeriod(duration(c.period())));
    }
    return b.build();
  }

  static Limit limit(LimitSpec s) {
    Limit.Builder b =
        Limit.newBuilder()
            .setResource(s.resource())
            .setConcurrency(s.concurrency())
            .setMaxWaiting(s.maxWaiting())
            .setLeaseTtl(duration(s.leaseTtl()))
            .setJitter(duration(s.jitter()))
            .addAllRates(dimensions(s.rates(), s.jitter()))
            .putAllShares(s.tenants().weights())
            .putAllFloors(s.tenants().floors());
    if (s.owner() != null) {
      b.setManagedBy(dev.sluice.proto.v1.LimitOwner.newBuilder().setFile(s.owner().file())
          .setSha256(s.owner().sha256()).setOverridden(s.owner().overridden()));
    }
    s.tenants().caps().forEach(
        (tenant, rates) -> b.putCaps(tenant, TenantCap.newBuilder().addAllRates(dimensions(rates, null)).build()));
    if (s.learn() != null) {
      b.setLearn(learn(s.learn()));
    }
    b.addAllMembers(s.members());
    b.putAllHolds(s.holds());
    return b.build();
  }

  static ResourceStats stats(ResourceSnapshot s) {
    ResourceStats.Builder b =
        ResourceStats.newBuilder()
            .setResource(s.limit().resource())
            .setLimit(limit(s.limit()))
            .putAllAvailable(s.available())
            .putAllUsed(s.used())
            .setInFlight(s.inFlight())
            .setPaused(s.paused())
            .setGranted(s.granted())
            .setTimedOut(s.timedOut())
            .setCancelled(s.cancelled())
            .putAllRejected(s.rejected())
            .setWaitP50Seconds(s.waitP50Seconds())
            .setWaitP99Seconds(s.waitP99Seconds())
            .setThrottleReports(s.throttleReports());
    s.waiting().forEach((lane, n) -> b.putWaiting(lane.label(), n));
    if (s.paused() && s.pausedForNanos() >= 0) {
      b.setPausedFor(duration(s.pausedForNanos()));
    }
    return b.build();
  }

  /**
   * A resource shared between tenants: its stats with one row per tenant, and each row's wait
   * estimate per lane ({@code estimates}: tenant to lane to nanoseconds, -1 for only an event).
   */
  static ResourceStats stats(
      ResourceSnapshot s, dev.sluice.server.engine.TenantShares.View view,
      Map<String, Map<dev.sluice.server.engine.Lane, Long>> estimates) {
    ResourceStats.Builder b = stats(s).toBuilder()
        .setBindingDimension(view.binding())
        .setTenantWindowSeconds(view.windowSeconds());
    for (dev.sluice.server.engine.TenantShares.Row r : view.rows()) {
      dev.sluice.proto.v1.TenantStats.Builder t = dev.sluice.proto.v1.TenantStats.newBuilder()
          .setTenant(r.tenant())
          .setWeight(r.weight())
          .setFloor(r.floor())
          .addAllCap(dimensions(r.cap(), null))
          .setWaiting(r.waiting())
          .putAllUsed(r.used())
          .putAllRecentUsed(r.recentUsed())
          .setRecentShare(r.recentShare())
          .setFairShare(r.fairShare());
      estimates.getOrDefault(r.tenant(), Map.of()).forEach(
          (lane, nanos) -> t.putEstimatedWaitSeconds(lane.label(), nanos < 0 ? -1 : nanos / 1e9));
      b.addTenants(t);
    }
    return b.build();
  }
}
