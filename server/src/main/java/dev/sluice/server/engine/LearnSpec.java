package dev.sluice.server.engine;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * How a limit follows the provider's own rate-limit headers, and where it stands.
 *
 * @param provider whose headers: one of {@link #PROVIDERS}
 * @param ceilings per dimension, the most learning may set (burst unused, 0); each names a rate
 *     dimension of the limit
 * @param learnedAtMillis when a report last changed the rates, Unix epoch milliseconds; 0 while
 *     none has (the starting limit is in place)
 * @param was the rates before that change, in the form {@code limit set} takes; empty if none
 */
public record LearnSpec(String provider, List<RateSpec> ceilings, long learnedAtMillis, String was) {

  /** The providers whose headers Sluice reads. */
  public static final Set<String> PROVIDERS = Set.of("openai", "azure", "anthropic");

  public LearnSpec {
    ceilings = List.copyOf(ceilings);
    was = was == null ? "" : was;
  }

  /** The ceiling of a dimension, or null. */
  public RateSpec ceiling(String dimension) {
    for (RateSpec c : ceilings) {
      if (c.name().equals(dimension)) {
        return c;
      }
    }
    return null;
  }

  /**
   * The rate a provider's per-minute {@code limit} on {@code dimension} gives: that amount per
   * minute, never above the ceiling, and a burst of half the provider's one-second sub-window
   * (OpenAI enforces a per-minute limit over ~1 s windows; the other half absorbs the time
   * between a grant and the call's arrival upstream), at least 1.
   */
  RateSpec learned(String dimension, long limit) {
    long amount = limit;
    RateSpec c = ceiling(dimension);
    if (c != null) {
      long perMinute = (long) Math.floor((double) c.amount() * Duration.ofMinutes(1).toNanos() / c.period().toNanos());
      amount = Math.min(amount, Math.max(1, perMinute));
    }
    return new RateSpec(dimension, amount, Duration.ofMinutes(1), Math.max(1, amount / 120));
  }

  /**
   * The limit with its rates set from the provider's per-minute {@code limits}, or null when
   * that changes nothing (so nodes that hear the same headers write nothing and never flap).
   * Dimensions the limit lacks, and values out of range, are ignored.
   */
  /** The one line a learned change logs (a change by hand logs through LimitChanges). */
  static void logged(LimitSpec before, LimitSpec after) {
    org.slf4j.LoggerFactory.getLogger(LearnSpec.class).info("limit {} changed by learning from {} headers: {} → {}",
        after.resource(), after.learn().provider(), MemoryEngine.describe(before), MemoryEngine.describe(after));
  }

  static LimitSpec apply(LimitSpec spec, Map<String, Long> limits, long nowMillis) {
    LearnSpec learn = spec.learn();
    if (learn == null || limits.isEmpty()) {
      return null;
    }
    List<RateSpec> rates = new ArrayList<>();
    boolean changed = false;
    for (RateSpec r : spec.rates()) {
      Long limit = limits.get(r.name());
      if (limit == null || limit < 1 || limit > Validation.MAX_UNITS) {
        rates.add(r);
        continue;
      }
      RateSpec next = learn.learned(r.name(), limit);
      changed |= !next.equals(r);
      rates.add(next);
    }
    if (!changed) {
      return null;
    }
    LearnSpec after = new LearnSpec(learn.provider(), learn.ceilings(), nowMillis, rateForm(spec.rates()));
    return spec.withRates(rates, after);
  }

  /**
   * Where the rates come from, for logs and {@code limit get}: {@code learned from openai report
   * at 2026-12-05T06:00:00Z, was requests=60/min:1}, or that none has come yet.
   */
  public static String describe(LearnSpec l) {
    String ceilings = l.ceilings().isEmpty() ? "" : ", ceiling " + rateForm(l.ceilings()).replace(":0", "");
    if (l.learnedAtMillis() == 0) {
      return "(learns from " + l.provider() + ": no " + l.provider()
          + " limit headers reported yet, the starting limit is in place" + ceilings + ")";
    }
    return "(learned from " + l.provider() + " report at " + java.time.Instant.ofEpochMilli(l.learnedAtMillis())
        + ", was " + l.was() + ceilings + ")";
  }

  /** Rates as {@code limit set --rate} takes them: {@code requests=500/60s:4 tokens=...}. */
  public static String rateForm(List<RateSpec> rates) {
    StringBuilder b = new StringBuilder();
    for (RateSpec r : rates) {
      if (b.length() > 0) {
        b.append(' ');
      }
      b.append(r.name()).append('=').append(r.amount()).append('/').append(period(r.period()))
          .append(':').append(r.burst());
    }
    return b.toString();
  }

  private static String period(Duration d) {
    if (d.equals(Duration.ofMinutes(1))) {
      return "min";
    }
    if (d.equals(Duration.ofSeconds(1))) {
      return "s";
    }
    return d.toMillis() % 1000 == 0 ? d.toSeconds() + "s" : d.toMillis() + "ms";
  }

  /**
   * Checks learn settings against the limit's rates; the message names the fix.
   *
   * @throws EngineException INVALID for an unknown provider, or a ceiling on a dimension the
   *     limit lacks, given twice, or out of range
   */
  static LearnSpec check(LearnSpec in, String resource, List<RateSpec> rates) {
    String provider = in.provider() == null ? "" : in.provider();
    if (!PROVIDERS.contains(provider)) {
      throw EngineException.invalid(
          "learn provider '" + Validation.shown(provider, 40) + "' is unknown: use --learn openai,"
              + " --learn azure or --learn anthropic");
    }
    if (rates.isEmpty()) {
      throw EngineException.invalid(
          "limit for '" + resource + "' learns from " + provider + " but has no rate to learn: add"
              + " --rate requests=N/min (or leave --rate out for the conservative start)");
    }
    List<RateSpec> ceilings = new ArrayList<>();
    for (RateSpec c : in.ceilings()) {
      boolean known = rates.stream().anyMatch(r -> r.name().equals(c.name()));
      if (!known) {
        throw EngineException.invalid(
            "learn ceiling on '" + Validation.shown(c.name(), 64) + "', but the limit of '" + resource
                + "' has no such rate: add --rate " + c.name() + "=N/min or drop that ceiling (its rates: "
                + String.join(", ", rates.stream().map(RateSpec::name).toList()) + ")");
      }
      if (ceilings.stream().anyMatch(x -> x.name().equals(c.name()))) {
        throw EngineException.invalid(
            "learn ceiling on '" + c.name() + "' is given twice: give each dimension one ceiling");
      }
      if (c.amount() < 1 || c.amount() > Validation.MAX_UNITS || c.period() == null
          || c.period().compareTo(Validation.MIN_PERIOD) < 0 || c.period().compareTo(Validation.MAX_PERIOD) > 0) {
        throw EngineException.invalid(
            "learn ceiling on '" + c.name() + "' is out of range: use 1 to " + Validation.MAX_UNITS
                + " per 1ms to 7d, e.g. " + c.name() + "=500/min");
      }
      ceilings.add(new RateSpec(c.name(), c.amount(), c.period(), 0));
    }
    return new LearnSpec(provider, ceilings, Math.max(0, in.learnedAtMillis()), in.was());
  }
}
